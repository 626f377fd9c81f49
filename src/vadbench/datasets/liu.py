"""The re-packaged layout of Liu et al., "Future Frame Prediction for Anomaly Detection - A New
Baseline", CVPR 2018 (StevenLiuWen/ano_pred_cvpr2018), read by MNAD, AMMC-Net and others::

    <root>/                       the archive's top folder (e.g. ped2/) may sit one level down
      <name>.mat                  variable ``gt``: 1 x n_test cell; entry i is a 2 x K array of
                                  [start; end] rows, 1-based inclusive anomalous intervals
      training/frames/01/000.jpg  0-based, 3-digit frame names
      testing/frames/01/000.jpg

ShanghaiTech's variant of the layout has no ``.mat``; its labels are
``testing/test_frame_mask/<video>.npy`` (0/1 per frame), read when present.

Pitfalls handled: intervals are 1-based and inclusive (sliced as [start - 1, end)); a video may
hold several intervals (K > 1); MATLAB may store the cell as n x 1 instead of 1 x n; test
videos are matched to ``gt`` entries in sorted folder order, so the counts must agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from vadbench.datasets.canonical import SourceVideos, ordered_frames
from vadbench.datasets.shanghaitech import read_frame_mask
from vadbench.errors import DatasetError


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
    """Per-frame 0/1 labels from a Liu ``gt`` file, one array per test video of ``lengths``."""
    try:
        gt = scipy.io.loadmat(mat_path)["gt"]
    except (scipy.io.matlab.MatReadError, ValueError, OSError, KeyError, TypeError) as err:
        raise DatasetError(f"{mat_path}: cannot read variable 'gt' ({err!r}); expected a Liu et al. .mat") from None
    cells = list(np.asarray(gt, dtype=object).ravel())
    if len(cells) != len(lengths):
        raise DatasetError(
            f"{mat_path}: 'gt' holds {len(cells)} entries but testing/frames holds {len(lengths)} videos"
        )
    labels = []
    for i, (cell, n) in enumerate(zip(cells, lengths)):
        try:
            intervals = np.asarray(cell, dtype=np.int64).reshape(2, -1)
        except (ValueError, TypeError):
            raise DatasetError(
                f"{mat_path}: entry {i + 1} of 'gt' is not a 2 x K array of [start; end] (got {cell!r})"
            ) from None
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
    else:
        source.labels = {video: read_frame_mask(masks / f"{video}.npy", len(paths)) for video, paths in test.items()}
    return source

