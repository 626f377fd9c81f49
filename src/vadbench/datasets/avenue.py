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
                                         frame (360 x 640, the frames' size); a frame is
                                         anomalous iff its mask has any nonzero pixel

Every video is decoded with PyAV into ``workdir/<split>/<video>/000000.jpg`` ...; video names
are kept (``"01"`` ... ``"21"``). The masks are kept as pixel ground truth
(``SourceVideos.mask_arrays``), each video's held as a memory-mapped ``workdir/masks/<video>.npy``
until they are written: all 21 videos' masks are 3.5 GB as bool, too much to hold at once.

Pitfalls handled: the folder name holds a space and the two archives unpack side by side, so
both folders are searched for by content rather than by path; ``__MACOSX`` and dot-folders
(macOS archive debris that mirrors the tree) are skipped, and so are ``._01.avi`` resource
forks; test video ``NN.avi`` pairs with ``int(NN)_label.mat`` (no zero padding); MATLAB may
store the cell as T x 1 instead of 1 x T and the masks as logical, uint8 or double; the decoded
frame count must equal the number of masks, so a truncated video or a mismatched label file
fails with both counts instead of labels shifting against frames; a label file without a test
video (an incompletely extracted ``testing_videos``) is an error too; every mask must have the
decoded frames' size, and all masks of a video one size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vadbench.datasets.canonical import SourceVideos, open_frame
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
    """Per-frame 0/1 labels (T,) uint8 from an Avenue ``volLabel`` file: 1 where a frame's mask is nonzero.

    Raises:
        DatasetError: as :func:`read_vol_masks`.
    """
    return read_vol_masks(mat_path).any(axis=(1, 2)).astype(np.uint8)


def read_vol_masks(mat_path: Path) -> np.ndarray:
    """The per-frame pixel masks of an Avenue ``volLabel`` file: (T, H, W) bool, True where anomalous.

    Raises:
        DatasetError: the file is unreadable, ``volLabel`` is missing or not a cell of masks, or
            a mask is not 2-D or not the size of the first.
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
    masks = None
    for i, mask in enumerate(vol.ravel()):
        mask = np.asarray(mask)
        if mask.dtype.kind not in "biuf":
            raise DatasetError(f"{mat_path}: cell {i + 1} of 'volLabel' is not a numeric mask (got {mask.dtype})")
        if mask.ndim != 2 or (masks is not None and mask.shape != masks.shape[1:]):
            first = f", cell 1 is {masks.shape[1]} x {masks.shape[2]}" if masks is not None else ""
            raise DatasetError(
                f"{mat_path}: cell {i + 1} of 'volLabel' has shape {mask.shape}{first}; expected one "
                "H x W mask of the frame size per frame. Re-extract ground_truth_demo.zip."
            )
        if masks is None:
            masks = np.zeros((vol.size, *mask.shape), dtype=bool)
        masks[i] = mask != 0
    return masks


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
    (workdir / "masks").mkdir(parents=True, exist_ok=True)
    for video, avi in test.items():
        masks = read_vol_masks(mats[video])
        frames = decode_video(avi, workdir / "test" / video)
        if len(frames) != len(masks):
            raise DatasetError(
                f"{avi} decodes to {len(frames)} frames but {mats[video]} holds {len(masks)} masks in "
                "'volLabel'; they must be equal. The video or the label file is truncated or from another "
                "release: re-extract Avenue_Dataset.zip and ground_truth_demo.zip."
            )
        with open_frame(frames[0]) as image:
            size = image.height, image.width
        if masks.shape[1:] != size:
            raise DatasetError(
                f"{mats[video]}: 'volLabel' masks are {masks.shape[2]}x{masks.shape[1]} pixels but {avi} decodes "
                f"to {size[1]}x{size[0]} frames; a mask must cover its frame pixel for pixel (Avenue: 640x360). "
                "The label file is from another release: re-extract ground_truth_demo.zip."
            )
        source.frames["test"][video] = frames
        source.labels[video] = masks.any(axis=(1, 2)).astype(np.uint8)
        np.save(workdir / "masks" / f"{video}.npy", masks)
        source.mask_arrays[video] = np.load(workdir / "masks" / f"{video}.npy", mmap_mode="r")
    source.mask_source = "ground_truth_demo/testing_label_mask/<n>_label.mat 'volLabel' (Avenue pixel masks)"
    return source
