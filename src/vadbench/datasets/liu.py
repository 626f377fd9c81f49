"""The re-packaged layout of Liu et al., "Future Frame Prediction for Anomaly Detection - A New
Baseline", CVPR 2018 (StevenLiuWen/ano_pred_cvpr2018), read by MNAD, AMMC-Net and others::

    <root>/                       the archive's top folder (e.g. ped2/) may sit one level down
      <name>.mat                  variable ``gt``: 1 x n_test cell; entry i is a 2 x K array of
                                  [start; end] rows, 1-based inclusive anomalous intervals
      training/frames/01/000.jpg  0-based, 3-digit frame names
      testing/frames/01/000.jpg
      testing/masks/01/000.png    optional pixel masks, one per test frame (nonzero = anomalous):
                                  vadbench's extension, written by the synthetic scene; the
                                  published archives have none, so their videos have no masks

ShanghaiTech's variant of the layout has no ``.mat``; its labels are
``testing/test_frame_mask/<video>.npy`` (0/1 per frame), read when present.

Pitfalls handled: intervals are 1-based and inclusive (sliced as [start - 1, end)); a video may
hold several intervals (K > 1); MATLAB may store the cell as n x 1 instead of 1 x n; test
videos are matched to ``gt`` entries in sorted folder order, so the counts must agree; an entry
must be 2 x K whole numbers (a transposed K x 2 or a fractional frame is refused, not read
wrongly); a v7.3 (HDF5) ``.mat`` is refused with how to re-save it; a mask folder must name a
test video (a stray one is refused rather than ignored) and hold one mask per frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vadbench.datasets.canonical import SourceVideos, ordered_frames
from vadbench.datasets.shanghaitech import read_frame_mask
from vadbench.errors import DatasetError
from vadbench.scorefiles import load_mat


def find_root(path: Path) -> Path:
    """The folder holding ``training/`` and ``testing/``: ``path`` itself or one level below."""
    for candidate in [path, *sorted(p for p in path.iterdir() if p.is_dir())]:
        if (candidate / "training" / "frames").is_dir() and (candidate / "testing" / "frames").is_dir():
            return candidate
    raise DatasetError(
        f"{path}: no training/frames and testing/frames folders here or one level below; "
        "expected the Liu et al. layout (ped2/training/frames/01/000.jpg, ped2/ped2.mat)."
    )


def parse_intervals(mat_path: Path, lengths: list[int]) -> list[np.ndarray]:
    """Per-frame 0/1 labels from a Liu ``gt`` file, one array per test video of ``lengths``.

    Raises:
        DatasetError: naming ``mat_path``: unreadable or v7.3 file, no ``gt``, a count of entries
            other than ``len(lengths)``, an entry that is not 2 x K whole numbers, or an interval
            outside its video.
    """
    gt = load_mat(mat_path, "gt", "a Liu et al. .mat whose 'gt' holds one 2 x K [start; end] array per test video")
    cells = list(np.asarray(gt, dtype=object).ravel()) if gt.dtype == object else [gt]
    if len(cells) != len(lengths):
        raise DatasetError(
            f"{mat_path}: 'gt' holds {len(cells)} entries but testing/frames holds {len(lengths)} videos"
        )
    labels = []
    for i, (cell, n) in enumerate(zip(cells, lengths)):
        intervals = _interval_array(mat_path, i, cell)
        label = np.zeros(n, dtype=np.uint8)
        for start, end in intervals.T:
            if not 1 <= start <= end <= n:
                raise DatasetError(
                    f"{mat_path}: entry {i + 1} of 'gt' has interval [{start}, {end}], outside frames 1..{n} "
                    "of that video (intervals are 1-based and inclusive)"
                )
            label[start - 1 : end] = 1
        labels.append(label)
    return labels


def _interval_array(mat_path: Path, i: int, cell: object) -> np.ndarray:
    """Entry ``i`` of ``gt`` as a (2, K) int64 array of [start; end] rows (K = 0 for a normal video)."""
    bad = f"{mat_path}: entry {i + 1} of 'gt' is not a 2 x K array of whole-number [start; end] frames"
    try:
        values = np.asarray(cell, dtype=np.float64)
    except (ValueError, TypeError):
        raise DatasetError(f"{bad} (got {repr(cell)[:60]}); save gt{{{i + 1}}} = [starts; ends] as numbers") from None
    if values.size == 0:
        return np.zeros((2, 0), dtype=np.int64)
    if values.shape == (2,):
        values = values.reshape(2, 1)
    if values.ndim != 2 or values.shape[0] != 2:
        transposed = values.ndim == 2 and values.shape[1] == 2
        raise DatasetError(
            f"{bad} (got shape {values.shape})"
            + (f"; it looks transposed, save gt{{{i + 1}}}' instead" if transposed else "")
        )
    odd = values[~np.isfinite(values) | (values != np.round(values))]
    if len(odd):
        raise DatasetError(f"{bad} (it holds {odd[:3].tolist()}); frames are 1-based whole numbers")
    return values.astype(np.int64)


def read(path: str | Path, workdir: Path | None = None) -> SourceVideos:
    """List the frames and labels of a Liu-layout dataset extracted at ``path``.

    ``workdir`` is unused: every frame is already an image file.
    """
    root = find_root(Path(path))
    mats = sorted(root.glob("*.mat"))
    masks = root / "testing" / "test_frame_mask"
    if len(mats) != 1 and not masks.is_dir():
        raise DatasetError(
            f"{root}: expected exactly one <name>.mat ground-truth file (found {len(mats)}) or, for "
            "ShanghaiTech, testing/test_frame_mask/<video>.npy"
        )
    source = SourceVideos(layout="liu")
    for split, folder in (("train", "training"), ("test", "testing")):
        for video_dir in sorted(p for p in (root / folder / "frames").iterdir() if p.is_dir()):
            source.frames[split][video_dir.name] = ordered_frames(video_dir)
    test = source.frames["test"]
    if len(mats) == 1:
        labels = parse_intervals(mats[0], [len(paths) for paths in test.values()])
        source.labels = dict(zip(test, labels))
        source.label_file = mats[0].name
    else:
        source.labels = {video: read_frame_mask(masks / f"{video}.npy", len(paths)) for video, paths in test.items()}
        source.label_file = "testing/test_frame_mask/<video>.npy"
    _read_pixel_masks(root / "testing" / "masks", source)
    return source


def _read_pixel_masks(folder: Path, source: SourceVideos) -> None:
    """Add the mask files of ``folder/<video>/`` (when the folder exists) to ``source.masks``.

    Frame counts and sizes are checked by :func:`~vadbench.datasets.canonical.write_canonical`.
    """
    if not folder.is_dir():
        return
    for video_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if video_dir.name not in source.frames["test"]:
            raise DatasetError(
                f"{video_dir}: pixel masks for video {video_dir.name}, but testing/frames has no such video. "
                "Remove the folder or restore the video's frames."
            )
        source.masks[video_dir.name] = ordered_frames(video_dir)
    if source.masks:
        source.mask_source = "testing/masks/<video>/<frame>.png (vadbench extension of the Liu et al. layout)"
