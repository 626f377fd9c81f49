"""Decode every frame once into one uint8 array per video (the ``resize`` rule).

The official codes decode a JPEG per frame per sample inside the training loop; at 16
frames a clip that is 16 decodes and resizes per sample, every epoch. vadbench decodes once,
at the preset's size and channels, into ``<out>/<split>/<video>.npy`` of shape (T, H, W, C),
which training and scoring open memory-mapped (``np.load(..., mmap_mode="r")``). The
``manifest.json`` beside them records the size and SHA-256 of every array as written and the
sources the frames came from, which :mod:`vadbench.fingerprint` turns into the data fingerprint
that checkpoints and models carry.

Resizing is the preset's ``resize_filter``, recorded in the manifest (so arrays of another
filter have another data fingerprint, and a model of one is refused for the other):

* ``pillow_bicubic_aa`` (default): Pillow's bicubic filter, which antialiases when shrinking
  (the kernel widens with the scale), like MATLAB's ``imresize`` in the MemAE preprocessing;
* ``opencv_bilinear``: ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``, bilinear without
  antialiasing, as MNAD's loader (``cv2.imread`` then ``cv2.resize`` to 256x256, utils.py).

Either way the file is decoded by Pillow and converted before resizing: grayscale is Pillow's
ITU-R 601 luma, like MATLAB's ``rgb2gray`` (MNAD never reads grayscale; OpenCV's ``BGR2GRAY`` uses
the same weights and may round differently by one level); colour is RGB, where MNAD keeps
OpenCV's BGR, a fixed channel permutation that a model trained from scratch does not notice.
Arrays decoded before the filter was recorded hold no ``resize_filter`` and were resized with
``pillow_bicubic_aa``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vadbench.datasets.canonical import SPLITS, canonical_frames, open_frame
from vadbench.errors import ConfigError, DatasetError
from vadbench.fileio import atomic_path, read_json, write_json
from vadbench.logs import get_logger

log = get_logger("arrays")


#: The preset's ``resize_filter`` values; the first is the default.
RESIZE_FILTERS = ("pillow_bicubic_aa", "opencv_bilinear")


def _check_filter(resize_filter: str) -> None:
    if resize_filter not in RESIZE_FILTERS:
        raise ConfigError(
            f"preset resize_filter {resize_filter!r} is not known; use one of {', '.join(RESIZE_FILTERS)}"
        )


def decode_frame(
    path: Path, size: tuple[int, int], channels: int, resize_filter: str = "pillow_bicubic_aa"
) -> np.ndarray:
    """One frame as (H, W, C) uint8 at ``size`` = (H, W) with 1 or 3 channels.

    Raises:
        ConfigError: an unknown ``resize_filter`` (:data:`RESIZE_FILTERS`).
        DatasetError: naming ``path``, a file that does not decode.
    """
    _check_filter(resize_filter)
    with open_frame(path, "cannot decode frame") as image:
        image = image.convert("L" if channels == 1 else "RGB")
        if image.size != (size[1], size[0]) and resize_filter == "pillow_bicubic_aa":
            image = image.resize((size[1], size[0]), Image.BICUBIC)
        array = np.asarray(image, dtype=np.uint8)
    if array.shape[:2] != tuple(size):  # opencv_bilinear: on the decoded uint8, as MNAD's loader
        import cv2  # here, not at the top: the default filter needs no OpenCV

        array = cv2.resize(array, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return array.reshape(size[0], size[1], channels)


def decode_videos(
    frames_dir: str | Path,
    out_dir: str | Path,
    size: tuple[int, int],
    channels: int,
    resize_filter: str = "pillow_bicubic_aa",
) -> dict:
    """Decode the canonical layout at ``frames_dir`` into per-video arrays under ``out_dir``,
    resized with ``resize_filter`` (module docstring), which the manifest records."""
    _check_filter(resize_filter)
    frames_dir = Path(frames_dir)
    manifest = read_json(frames_dir / "manifest.json")
    checksums: dict[str, dict[str, dict[str, Any]]] = {split: {} for split in SPLITS}
    with atomic_path(out_dir) as tmp:
        for split in SPLITS:
            (tmp / split).mkdir(parents=True)
            for video, count in manifest["splits"][split].items():
                paths = canonical_frames(frames_dir, split, video)
                if len(paths) != count:
                    raise DatasetError(
                        f"{frames_dir / split / video}: {len(paths)} frames, the manifest says {count}. "
                        "Delete the frames folder and rerun."
                    )
                video_array = np.stack([decode_frame(p, size, channels, resize_filter) for p in paths])
                checksums[split][video] = save_array(tmp / split / f"{video}.npy", video_array)
            log.info("%s: decoded %d videos", split, len(manifest["splits"][split]))
        info = {
            "size": list(size),
            "channels": channels,
            "resize_filter": resize_filter,
            "splits": manifest["splits"],
            "arrays": checksums,
            "sources": manifest.get("sources"),
        }
        write_json(tmp / "manifest.json", info)
    return info


class _HashingWriter:
    def __init__(self, stream) -> None:
        self.stream, self.digest, self.size = stream, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += memoryview(data).nbytes
        return self.stream.write(data)


def save_array(path: Path, array: np.ndarray) -> dict[str, Any]:
    """``np.save`` ``array`` to ``path``; returns ``{"bytes", "sha256"}`` of the bytes written."""
    with open(path, "wb") as f:
        writer = _HashingWriter(f)
        np.save(writer, array, allow_pickle=False)
    return {"bytes": writer.size, "sha256": writer.digest.hexdigest()}


def open_videos(arrays_dir: str | Path, split: str, names: list[str]) -> list[np.ndarray]:
    """Memory-mapped (T, H, W, C) uint8 arrays of ``names`` in ``split``."""
    return [np.load(Path(arrays_dir) / split / f"{name}.npy", mmap_mode="r") for name in names]
