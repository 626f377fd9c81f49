"""The official UCSD Anomaly Detection Dataset archive (Mahadevan, Li, Bhalodia, Vasconcelos,
"Anomaly Detection in Crowded Scenes", CVPR 2010), ``UCSD_Anomaly_Dataset.tar.gz``::

    UCSD_Anomaly_Dataset.v1p2/
      UCSDped1/ ...                     the other scene; ``scene`` picks one
      UCSDped2/
        Train/Train001/001.tif ...      1-based, 3-digit grayscale TIFFs (240x360 for Ped2)
        Test/Test001/001.tif ...
        Test/Test001_gt/001.bmp ...     pixel masks, 0/255 or 0/1 (not for every Ped1 video)
        Test/UCSDped2.m                 TestDataset{end+1}.gt_frame = [61:180];  one line per video

Pitfalls handled: the ``.m`` file is MATLAB source, parsed here rather than executed; a line may
hold several ranges (``[1:10, 40:52]``), single frames or stepped ranges (``1:2:9``, every
other frame, as MATLAB reads it); the variable is ``TestDataset`` in the
archive but other names (``TestVideoFile``) are accepted; macOS ``._`` files and the ``_gt``
mask folders are not videos. The pixel masks are kept in the canonical layout
(``masks/<video>/0000.png``, re-encoded as 1-bit PNG, nonzero = anomalous, so 0/1 and 0/255
BMPs read alike) for localisation; a video without a ``_gt`` folder simply has no masks. Frame
labels come from the ``.m`` file, the published frame-level ground truth (MemAE derives them
from the masks instead; they can differ at interval boundaries). So in this layout the dataset
keys ``label_source: archive`` and ``ucsd_official`` read the same file, the official source
itself (:mod:`vadbench.datasets.ucsd_labels` also checks Ped2's against its table).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vadbench.datasets.canonical import SourceVideos, ordered_frames
from vadbench.errors import DatasetError

_GT_LINE = re.compile(r"\{\s*end\s*\+\s*1\s*\}\s*\.\s*gt_frame\s*=\s*\[([^\]]*)\]")


def parse_gt_m(m_path: Path) -> list[list[range]]:
    """The 1-based anomalous frames of each test video, in file order, as MATLAB ranges.

    ``a:b`` is ``range(a, b + 1)``, ``a:step:b`` is ``range(a, b + 1, step)`` (``1:2:7`` is
    frames 1, 3, 5, 7, as in MATLAB) and a single number ``a`` is ``range(a, a + 1)``.

    Raises:
        DatasetError: naming ``m_path`` (and the line): unreadable, no ``gt_frame`` lines, or a
            range that is not ``a``, ``a:b`` or ``a:step:b`` of whole numbers, or that is empty.
    """
    from vadbench.scorefiles import check_size

    check_size(m_path, "UCSD ground-truth file")
    try:
        text = Path(m_path).read_text(errors="replace")
    except OSError as err:
        raise DatasetError(f"{m_path}: cannot read this ground-truth file ({err})") from None
    videos = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("%", 1)[0]
        match = _GT_LINE.search(line)
        if not match:
            continue
        videos.append(
            [
                _matlab_range(m_path, lineno, line, token)
                for token in re.split(r"[,\s;]+", match.group(1).strip())
                if token
            ]
        )
    if not videos:
        raise DatasetError(
            f"{m_path}: no 'TestDataset{{end+1}}.gt_frame = [a:b];' lines; is this the UCSD ground truth?"
        )
    return videos


def _matlab_range(m_path: Path, lineno: int, line: str, token: str) -> range:
    """One MATLAB range token (``a``, ``a:b``, ``a:step:b``) as the range of frames it lists."""
    bounds = token.split(":")
    try:
        numbers = [int(b) for b in bounds]
    except ValueError:
        numbers = []
    if not 1 <= len(numbers) <= 3:
        raise DatasetError(
            f"{m_path}:{lineno}: cannot read range {token!r} in {line.strip()!r}; expected a, a:b or "
            "a:step:b of whole frame numbers"
        )
    start, step, end = (
        (numbers[0], 1, numbers[0])
        if len(numbers) == 1
        else ((numbers[0], 1, numbers[1]) if len(numbers) == 2 else tuple(numbers))
    )
    frames = range(start, end + (1 if step > 0 else -1), step) if step else range(0)
    if not frames:
        raise DatasetError(
            f"{m_path}:{lineno}: range {token!r} lists no frame (MATLAB reads it as empty); write a:b with a <= b"
        )
    return frames


def find_scene(path: Path, scene: str) -> Path:
    """The ``UCSDpedN`` folder under ``path`` (up to two levels down)."""
    for candidate in (path / scene, *path.glob(f"*/{scene}"), *path.glob(f"*/*/{scene}")):
        if (candidate / "Train").is_dir() and (candidate / "Test").is_dir():
            return candidate
    raise DatasetError(
        f"{path}: no {scene}/Train and {scene}/Test folders here or two levels below; expected the official "
        "UCSD_Anomaly_Dataset.tar.gz layout (UCSD_Anomaly_Dataset.v1p2/UCSDped2/Train/Train001/001.tif)."
    )


def _videos(folder: Path, prefix: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and re.fullmatch(rf"{prefix}\d+", p.name))


def read(path: str | Path, workdir: Path | None = None, scene: str = "UCSDped2") -> SourceVideos:
    """List the frames, labels and pixel masks of one UCSD scene (``UCSDped1`` or ``UCSDped2``)."""
    root = find_scene(Path(path), scene)
    source = SourceVideos(layout="ucsd")
    for split, folder, prefix in (("train", "Train", "Train"), ("test", "Test", "Test")):
        for video_dir in _videos(root / folder, prefix):
            source.frames[split][video_dir.name[len(prefix) :]] = ordered_frames(video_dir)
            masks = root / folder / f"{video_dir.name}_gt"
            if split == "test" and masks.is_dir():
                source.masks[video_dir.name[len(prefix) :]] = ordered_frames(masks)
    m_files = sorted((root / "Test").glob("*.m"))
    if len(m_files) != 1:
        raise DatasetError(f"{root / 'Test'}: expected one {scene}.m ground-truth file, found {len(m_files)}")
    intervals = parse_gt_m(m_files[0])
    test = source.frames["test"]
    if len(intervals) != len(test):
        raise DatasetError(
            f"{m_files[0]}: {len(intervals)} gt_frame lines but {len(test)} Test videos in {root / 'Test'}"
        )
    for (video, paths), ranges in zip(test.items(), intervals):
        source.labels[video] = ranges_to_label(ranges, len(paths), m_files[0], f"Test{video}")
    source.label_file = f"{scene}/Test/{m_files[0].name}"
    if source.masks:
        source.mask_source = f"{scene}/Test/Test<video>_gt/<frame>.bmp (UCSD pixel masks)"
    return source


def ranges_to_label(ranges: list[range], n_frames: int, m_path: Path, video: str) -> np.ndarray:
    """(n_frames,) uint8 0/1 labels from one video's 1-based ``gt_frame`` ranges (:func:`parse_gt_m`)."""
    label = np.zeros(n_frames, dtype=np.uint8)
    for frames in ranges:
        low, high = min(frames[0], frames[-1]), max(frames[0], frames[-1])
        if not 1 <= low <= high <= n_frames:
            step = f":{frames.step}" if frames.step != 1 else ""
            raise DatasetError(
                f"{m_path}: {video} has range {frames[0]}{step}:{frames[-1]}, outside its frames 1..{n_frames}"
            )
        label[np.asarray(frames) - 1] = 1
    return label
