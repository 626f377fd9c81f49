"""CUHK Avenue, from Lu, Shi and Jia, "Abnormal Event Detection at 150 FPS in MATLAB", ICCV 2013,
as its two official archives unpack (``Avenue_Dataset.zip`` and ``ground_truth_demo.zip``
extracted into the same folder)::

    <root>/
      Avenue Dataset/                    may sit at <root> or up to 3 levels below
        training_videos/01.avi ... 16.avi
        testing_videos/01.avi ... 21.avi
      ground_truth_demo/                 found separately, also up to 3 levels below
        testing_label_mask/1_label.mat ... 21_label.mat
                                         variable ``volLabel``: 1 x T cell, one H x W mask per
                                         frame; a frame is anomalous iff its mask has any
                                         nonzero pixel

Every video is decoded with PyAV into ``workdir/<split>/<video>/000000.jpg`` ...; video names
are kept (``"01"`` ... ``"21"``).

Pitfalls handled: the folder name holds a space and the two archives unpack side by side, so
both folders are searched for by content rather than by path; ``__MACOSX`` and dot-folders
(macOS archive debris that mirrors the tree) are skipped, and so are ``._01.avi`` resource
forks; test video ``NN.avi`` pairs with ``int(NN)_label.mat`` (no zero padding); MATLAB may
store the cell as T x 1 instead of 1 x T and the masks as logical, uint8 or double; the decoded
frame count must equal the number of masks, so a truncated video or a mismatched label file
fails with both counts instead of labels shifting against frames; a label file without a test
video (an incompletely extracted ``testing_videos``) is an error too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vadbench.datasets.canonical import SourceVideos
from vadbench.datasets.video import decode_video
from vadbench.errors import DatasetError
from vadbench.scorefiles import load_mat

SEARCH_DEPTH = 3
_LAYOUT_HELP = (
    "Expected the official Avenue archives Avenue_Dataset.zip and ground_truth_demo.zip extracted "
    "into one folder: 'Avenue Dataset/training_videos/01.avi', 'Avenue Dataset/testing_videos/01.avi', "
    "'ground_truth_demo/testing_label_mask/1_label.mat'."
)


def _skipped(path: Path) -> bool:
    return path.name.startswith(".") or path.name == "__MACOSX"


def find_parent(path: Path, child: str, max_depth: int = SEARCH_DEPTH) -> Path:
    """The folder holding a subfolder named ``child``: ``path`` itself or up to ``max_depth`` below.

    The shallowest match wins.

    Raises:
        DatasetError: no such folder, or several at the shallowest depth.
    """
    level = [path]
    for _ in range(max_depth + 1):
        found = [d for d in level if (d / child).is_dir()]
        if len(found) > 1:
            raise DatasetError(
                f"{path}: several folders hold {child}/ ({', '.join(str(d) for d in found)}); "
                "keep only one copy of the dataset there."
            )
        if found:
            return found[0]
        level = [c for d in level for c in sorted(d.iterdir()) if c.is_dir() and not _skipped(c)]
    raise DatasetError(f"{path}: no {child}/ folder here or up to {max_depth} levels below. {_LAYOUT_HELP}")


def list_videos(folder: Path) -> dict[str, Path]:
    """The ``.avi`` files of ``folder`` keyed by name without suffix, in sorted order.

    Raises:
        DatasetError: the folder holds no ``.avi``.
    """
    videos = {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.suffix.lower() == ".avi" and p.is_file() and not p.name.startswith(".")
    }
    if not videos:
        raise DatasetError(f"{folder}: no .avi videos in this folder. {_LAYOUT_HELP}")
    return videos


def label_file(mask_dir: Path, video: str) -> Path:
    """The ``volLabel`` file of test video ``video`` (``"01"`` -> ``1_label.mat``).

    Raises:
        DatasetError: neither ``<int>_label.mat`` nor ``<video>_label.mat`` exists.
    """
    expected = mask_dir / f"{int(video)}_label.mat" if video.isdigit() else mask_dir / f"{video}_label.mat"
    for candidate in (expected, mask_dir / f"{video}_label.mat"):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"{expected}: missing; test video {video}.avi has no label file. Re-extract ground_truth_demo.zip "
        "next to 'Avenue Dataset', or remove the video from testing_videos."
    )


def read_vol_label(mat_path: Path) -> np.ndarray:
    """Per-frame 0/1 labels from an Avenue ``volLabel`` file: 1 where a frame's mask is nonzero.

    Raises:
        DatasetError: the file is unreadable or ``volLabel`` is missing or not a cell of masks.
    """
    vol = load_mat(
        mat_path,
        "volLabel",
        "an Avenue ground_truth_demo/testing_label_mask/<n>_label.mat; re-extract ground_truth_demo.zip",
    )
    if vol.dtype != object or vol.size == 0:
        raise DatasetError(
            f"{mat_path}: 'volLabel' is a {vol.dtype} array of shape {vol.shape}; expected a non-empty "
            "1 x T cell holding one H x W mask per frame"
        )
    labels = np.zeros(vol.size, dtype=np.uint8)
    for i, mask in enumerate(vol.ravel()):
        mask = np.asarray(mask)
        if mask.dtype.kind not in "biuf":
            raise DatasetError(f"{mat_path}: cell {i + 1} of 'volLabel' is not a numeric mask (got {mask.dtype})")
        labels[i] = bool(mask.any())
    return labels


def read(path: str | Path, workdir: Path) -> SourceVideos:
    """Decode the Avenue videos found under ``path`` into ``workdir`` and pair them with labels.

    Args:
        path: The folder both archives were extracted into.
        workdir: An existing empty scratch folder for the decoded frames.

    Returns:
        The decoded frames of both splits and the per-frame labels of every test video.

    Raises:
        DatasetError: a folder, video or label file is missing or unreadable, a label file has
            no test video, or a test video's frame count differs from its number of masks.
    """
    path, workdir = Path(path), Path(workdir)
    videos_root = find_parent(path, "training_videos")
    if not (videos_root / "testing_videos").is_dir():
        raise DatasetError(f"{videos_root}: holds training_videos/ but no testing_videos/. {_LAYOUT_HELP}")
    mask_dir = find_parent(path, "testing_label_mask") / "testing_label_mask"
    train = list_videos(videos_root / "training_videos")
    test = list_videos(videos_root / "testing_videos")

    # every label file is located before the first (slow) decode, so a missing one fails fast
    mats = {video: label_file(mask_dir, video) for video in test}
    orphans = sorted(set(mask_dir.glob("*_label.mat")) - set(mats.values()))
    if orphans:
        raise DatasetError(
            f"{mask_dir}: label file(s) {', '.join(p.name for p in orphans)} have no video in "
            f"{videos_root / 'testing_videos'}; that folder is incomplete. Re-extract Avenue_Dataset.zip."
        )

    source = SourceVideos(layout="avenue")
    for video, avi in train.items():
        source.frames["train"][video] = decode_video(avi, workdir / "train" / video)
    for video, avi in test.items():
        labels = read_vol_label(mats[video])
        frames = decode_video(avi, workdir / "test" / video)
        if len(frames) != len(labels):
            raise DatasetError(
                f"{avi} decodes to {len(frames)} frames but {mats[video]} holds {len(labels)} masks in "
                "'volLabel'; they must be equal. The video or the label file is truncated or from another "
                "release: re-extract Avenue_Dataset.zip and ground_truth_demo.zip."
            )
        source.frames["test"][video] = frames
        source.labels[video] = labels
    return source
