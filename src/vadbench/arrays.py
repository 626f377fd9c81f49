"""Decode every frame once into one uint8 array per video (the ``resize`` rule).

The official codes decode a JPEG per frame per sample inside the training loop; at 16
frames a clip that is 16 decodes and resizes per sample, every epoch. vadbench decodes once,
at the preset's size and channels, into ``<out>/<split>/<video>.npy`` of shape (T, H, W, C),
which training and scoring open memory-mapped (``np.load(..., mmap_mode="r")``). The
``manifest.json`` beside them records the size and SHA-256 of every array as written and the
sources the frames came from, which :mod:`vadbench.fingerprint` turns into the data fingerprint
that checkpoints and models carry.

Resizing uses Pillow's bicubic filter, which antialiases when shrinking, like MATLAB's
``imresize`` in the MemAE preprocessing; grayscale is Pillow's ITU-R 601 luma, like
``rgb2gray``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vadbench.datasets.canonical import SPLITS, canonical_frames, open_frame
from vadbench.errors import DatasetError
from vadbench.fileio import atomic_path, read_json, write_json
from vadbench.logs import get_logger

log = get_logger("arrays")


def decode_frame(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One frame as (H, W, C) uint8 at ``size`` = (H, W) with 1 or 3 channels."""
    with open_frame(path, "cannot decode frame") as image:
        image = image.convert("L" if channels == 1 else "RGB")
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.BICUBIC)
        array = np.asarray(image, dtype=np.uint8)
    return array.reshape(size[0], size[1], channels)


def decode_videos(frames_dir: str | Path, out_dir: str | Path, size: tuple[int, int], channels: int) -> dict:
    """Decode the canonical layout at ``frames_dir`` into per-video arrays under ``out_dir``."""
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
                video_array = np.stack([decode_frame(p, size, channels) for p in paths])
                checksums[split][video] = save_array(tmp / split / f"{video}.npy", video_array)
            log.info("%s: decoded %d videos", split, len(manifest["splits"][split]))
        info = {
            "size": list(size),
            "channels": channels,
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
