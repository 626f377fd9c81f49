"""The official UCSD Anomaly Detection Dataset archive (Mahadevan, Li, Bhalodia, Vasconcelos,
"Anomaly Detection in Crowded Scenes", CVPR 2010), ``UCSD_Anomaly_Dataset.tar.gz``::

    UCSD_Anomaly_Dataset.v1p2/
      UCSDped1/ ...                     the other scene; ``scene`` picks one
      UCSDped2/
        Train/Train001/001.tif ...      1-based, 3-digit grayscale TIFFs (240x360 for Ped2)
        Test/Test001/001.tif ...
        Test/Test001_gt/001.bmp ...     pixel masks (not for every Ped1 video)
        Test/UCSDped2.m                 TestDataset{end+1}.gt_frame = [61:180];  one line per video

Pitfalls handled: the ``.m`` file is MATLAB source, parsed here rather than executed; a line may
hold several ranges (``[1:10, 40:52]``) or single frames; the variable is ``TestDataset`` in the
archive but other names (``TestVideoFile``) are accepted; macOS ``._`` files and the ``_gt``
mask folders are not videos. The pixel masks are kept in the canonical layout
(``masks/<video>/0000.bmp``) for localisation; frame labels come from the ``.m`` file, the
published frame-level ground truth (MemAE derives them from the masks instead; they can
differ at interval boundaries).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vadbench.datasets.canonical import SourceVideos, ordered_frames
from vadbench.errors import DatasetError

_GT_LINE = re.compile(r"\{\s*end\s*\+\s*1\s*\}\s*\.\s*gt_frame\s*=\s*\[([^\]]*)\]")


def parse_gt_m(m_path: Path) -> list[list[tuple[int, int]]]:
    """1-based inclusive (start, end) ranges per test video, in file order."""
    videos = []
    for lineno, line in enumerate(m_path.read_text(errors="replace").splitlines(), 1):
        line = line.split("%", 1)[0]
        match = _GT_LINE.search(line)
        if not match:
            continue
        ranges = []
        for token in re.split(r"[,\s;]+", match.group(1).strip()):
            if not token:
                continue
            bounds = token.split(":")
            try:
                numbers = [int(b) for b in bounds]
            except ValueError:
                raise DatasetError(f"{m_path}:{lineno}: cannot read range {token!r} in {line.strip()!r}") from None
            if len(numbers) == 1:
                numbers = numbers * 2
            elif len(numbers) == 3:  # MATLAB a:step:b with step 1
                numbers = [numbers[0], numbers[2]]
            ranges.append((numbers[0], numbers[-1]))
        videos.append(ranges)
    if not videos:
        raise DatasetError(f"{m_path}: no 'TestDataset{{end+1}}.gt_frame = [a:b];' lines; is this the UCSD ground truth?")
    return videos


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
            source.frames[split][video_dir.name[len(prefix):]] = ordered_frames(video_dir)
            masks = root / folder / f"{video_dir.name}_gt"
            if split == "test" and masks.is_dir():
                source.masks[video_dir.name[len(prefix):]] = ordered_frames(masks)
    m_files = sorted((root / "Test").glob("*.m"))
    if len(m_files) != 1:
        raise DatasetError(f"{root / 'Test'}: expected one {scene}.m ground-truth file, found {len(m_files)}")
    intervals = parse_gt_m(m_files[0])
    test = source.frames["test"]
    if len(intervals) != len(test):
        raise DatasetError(f"{m_files[0]}: {len(intervals)} gt_frame lines but {len(test)} Test videos in {root / 'Test'}")
    for (video, paths), ranges in zip(test.items(), intervals):
        source.labels[video] = ranges_to_label(ranges, len(paths), m_files[0], f"Test{video}")
    return source


def ranges_to_label(ranges: list[tuple[int, int]], n_frames: int, m_path: Path, video: str) -> np.ndarray:
    """(n_frames,) uint8 0/1 labels from one video's 1-based inclusive ``gt_frame`` ranges."""
    label = np.zeros(n_frames, dtype=np.uint8)
    for start, end in ranges:
        if not 1 <= start <= end <= n_frames:
            raise DatasetError(f"{m_path}: {video} has range {start}:{end}, outside its frames 1..{n_frames}")
        label[start - 1 : end] = 1
    return label
