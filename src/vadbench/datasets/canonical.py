"""The canonical frame layout every source layout converts into (the ``frames`` rule).

::

    resources/<dataset>/frames/
      train/<video>/0000.jpg ...   0-based, zero-padded (4 digits or more), contiguous
      test/<video>/0000.jpg ...
      labels.npz                   one uint8 0/1 array per test video, keyed by video name
      masks/<video>/0000.bmp ...   pixel masks, where the source has them (UCSD)
      manifest.json                videos and frame counts per split, the source layout

Whatever a source calls its frames (``000.jpg``, ``001.tif``, ``0001.jpg``), the rest of the
pipeline sees only this layout, so a layout module's only job is to produce a
:class:`SourceVideos` of ordered frame files and per-frame labels.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from vadbench.errors import DatasetError
from vadbench.fileio import atomic_path, write_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
SPLITS = ("train", "test")


@dataclass
class SourceVideos:
    """Ordered frame files per video and split, plus 0/1 labels per test frame."""

    layout: str
    frames: dict[str, dict[str, list[Path]]] = field(default_factory=lambda: {"train": {}, "test": {}})
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, list[Path]] = field(default_factory=dict)  # optional pixel masks per test video


def ordered_frames(video_dir: Path) -> list[Path]:
    """Image files of one video in frame order, checked to be contiguous.

    Frame numbers are read from the file names (``000.jpg``, ``0001.tif``, ``img_12.png``) and
    must run without a gap from 0 or 1.

    Raises:
        DatasetError: no frames, a name without a number, a duplicate or a gap.
    """
    numbered: dict[int, Path] = {}
    for path in video_dir.iterdir():
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue  # also skips macOS "._001.tif" resource forks found in some archives
        digits = re.findall(r"\d+", path.stem)
        if not digits:
            raise DatasetError(f"{path}: frame name holds no frame number; expected names like 000.jpg")
        number = int(digits[-1])
        if number in numbered:
            raise DatasetError(f"{video_dir}: frames {numbered[number].name} and {path.name} share number {number}")
        numbered[number] = path
    if not numbered:
        raise DatasetError(f"{video_dir}: no frames ({', '.join(IMAGE_SUFFIXES)}) in this video folder")
    first, last = min(numbered), max(numbered)
    if first not in (0, 1):
        raise DatasetError(f"{video_dir}: frames start at number {first}; expected 0 or 1. Re-extract the video.")
    missing = sorted(set(range(first, last + 1)) - set(numbered))
    if missing:
        shown = ", ".join(str(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(
            f"{video_dir}: {len(missing)} frame(s) missing (number {shown}) between {numbered[first].name} "
            f"and {numbered[last].name}. Re-extract the archive or remove the video from the dataset."
        )
    return [numbered[n] for n in range(first, last + 1)]


#: What Pillow raises for a corrupt or truncated image file (besides the decompression-bomb guard).
IMAGE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error)


@contextlib.contextmanager
def open_frame(path: Path, problem: str = "unreadable image") -> Iterator[Image.Image]:
    """``Image.open(path)`` whose failures, in the block too, are one :class:`DatasetError` naming ``path``.

    A frame above Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 89 million pixels) is refused as a
    decompression bomb: decoding it would take gigabytes, and no video frame is that large.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                yield image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        raise DatasetError(
            f"{path}: frame of {pixels.group(1) if pixels else 'too many'} pixels, above the limit of "
            f"{Image.MAX_IMAGE_PIXELS} pixels (Pillow's decompression-bomb guard); no video frame is this large. "
            "Resize the source frames to the dataset's resolution or remove the file."
        ) from None
    except IMAGE_ERRORS as err:
        raise DatasetError(f"{path}: {problem} ({err}). Re-extract or re-download the dataset.") from None


def _check_readable(path: Path) -> None:
    with open_frame(path) as image:
        image.verify()


def write_canonical(source: SourceVideos, out_dir: str | Path, provenance: list | None = None) -> dict:
    """Copy frames under canonical names into ``out_dir`` and write labels and a manifest.

    Every frame is checked to be a readable image before anything is renamed into place, so
    a failure leaves no partial ``out_dir`` behind.

    Returns:
        The manifest written to ``out_dir/manifest.json``.
    """
    test_videos = set(source.frames["test"])
    if set(source.labels) != test_videos:
        raise DatasetError(
            f"labels cover videos {sorted(source.labels)} but the test split holds {sorted(test_videos)}"
        )
    manifest = {"layout": source.layout, "splits": {}}
    if provenance is not None:  # [{"source", "sha256"}, ...]: what the frames were made from
        manifest["sources"] = provenance
    with atomic_path(out_dir) as tmp:
        for split in SPLITS:
            counts = {}
            for video, paths in sorted(source.frames[split].items()):
                width = max(4, len(str(len(paths) - 1)))
                target = tmp / split / video
                target.mkdir(parents=True)
                for i, path in enumerate(paths):
                    _check_readable(path)
                    shutil.copyfile(path, target / f"{i:0{width}d}{path.suffix.lower()}")
                counts[video] = len(paths)
            manifest["splits"][split] = counts
        for video, paths in sorted(source.masks.items()):
            if len(paths) != manifest["splits"]["test"].get(video):
                raise DatasetError(
                    f"{paths[0].parent if paths else video}: {len(paths)} pixel masks for test video "
                    f"{video} of {manifest['splits']['test'].get(video)} frames; they must be equal. "
                    "Re-extract the dataset."
                )
            (tmp / "masks" / video).mkdir(parents=True)
            for i, path in enumerate(paths):
                _check_readable(path)
                shutil.copyfile(path, tmp / "masks" / video / f"{i:04d}{path.suffix.lower()}")
        for video, labels in source.labels.items():
            n = manifest["splits"]["test"][video]
            if labels.shape != (n,):
                raise DatasetError(f"test video {video}: {labels.shape[0]} labels for {n} frames")
        np.savez(tmp / "labels.npz", **{v: label.astype(np.uint8) for v, label in sorted(source.labels.items())})
        manifest["anomalous_test_frames"] = int(sum(int(label.sum()) for label in source.labels.values()))
        write_json(tmp / "manifest.json", manifest)
    return manifest


def canonical_frames(frames_dir: Path, split: str, video: str) -> list[Path]:
    """Frame files of a canonical video, in order."""
    return sorted(p for p in (Path(frames_dir) / split / video).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
