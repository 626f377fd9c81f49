"""The canonical frame layout every source layout converts into (the ``frames`` rule).

::

    resources/<dataset>/frames/
      train/<video>/0000.jpg ...   0-based, zero-padded (4 digits or more), contiguous
      test/<video>/0000.jpg ...
      labels.npz                   one uint8 0/1 array per test video, keyed by video name
      masks/<video>/0000.png ...   pixel masks of test videos, where the source has them (UCSD,
                                   Avenue, the synthetic scene): 1-bit PNG, one per frame,
                                   named as the frames, the frame's size, white = anomalous
      manifest.json                videos and frame counts per split, the source layout, which
                                   test videos have masks and where they came from, and
                                   where the labels came from (``label_source``, ``label_file``)

Whatever a source calls its frames (``000.jpg``, ``001.tif``, ``0001.jpg``), the rest of the
pipeline sees only this layout, so a layout module's only job is to produce a
:class:`SourceVideos` of ordered frame files, per-frame labels and, where it has them, pixel
masks; :func:`load_masks` reads the masks back.

Masks are re-encoded, not copied: sources store them as 0/255 or 0/1 BMPs (UCSD), as MATLAB
cells (Avenue) or as PNGs (the synthetic scene), and each must be decoded anyway to check that
it has its frame's size, so writing one format (1-bit PNG, nonzero = anomalous) costs little
and leaves readers one convention. A mask is never resized here: a mismatch is a wrong ground
truth file.
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
from vadbench.fileio import atomic_path, read_json, write_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
SPLITS = ("train", "test")
MASKS_DIR = "masks"


@dataclass
class SourceVideos:
    """Ordered frame files per video and split, 0/1 labels per test frame, and optional pixel masks.

    A test video's pixel masks come either as image files in frame order (``masks``: UCSD's
    ``Test001_gt/001.bmp``, the synthetic scene's PNGs) or as one (T, H, W) bool array
    (``mask_arrays``: Avenue's ``volLabel`` cells, which exist only inside a ``.mat``), never
    both; a test video with neither has no masks. ``mask_source`` says where they came from
    and is recorded in the manifest, as ``label_file`` does for the frame labels (``ped2.mat``,
    ``UCSDped2/Test/UCSDped2.m``; the reader sets it, ``label_source`` may replace it).
    """

    layout: str
    frames: dict[str, dict[str, list[Path]]] = field(default_factory=lambda: {"train": {}, "test": {}})
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, list[Path]] = field(default_factory=dict)
    mask_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    mask_source: str | None = None
    label_file: str | None = None


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


def _check_readable(path: Path) -> tuple[int, int]:
    """Verify that ``path`` is a readable image and return its (H, W)."""
    with open_frame(path) as image:
        image.verify()
        return image.height, image.width


def _mask_pixels(image: Image.Image) -> np.ndarray:
    """(H, W) bool, True where a mask image is nonzero in any colour channel (alpha ignored)."""
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")  # palette indices are not intensities: index 0 may be white
    pixels = np.asarray(image)
    if pixels.ndim == 3:
        if image.mode in ("LA", "RGBA", "La", "RGBa"):
            pixels = pixels[..., :-1]
        pixels = pixels.any(axis=2)
    return pixels != 0


def read_mask_image(path: Path) -> np.ndarray:
    """One pixel mask file as (H, W) bool, True (nonzero) where anomalous.

    Raises:
        DatasetError: naming ``path``, for an unreadable or corrupt image.
    """
    with open_frame(path, "unreadable image of a pixel mask") as image:
        image.load()
        return _mask_pixels(image)


def write_canonical(
    source: SourceVideos, out_dir: str | Path, provenance: list | None = None, label_source: str = "archive"
) -> dict:
    """Copy frames under canonical names into ``out_dir`` and write labels and a manifest.

    Every frame is checked to be a readable image before anything is renamed into place, so
    a failure leaves no partial ``out_dir`` behind. ``label_source`` (the dataset key that chose
    ``source.labels``, :mod:`vadbench.datasets.ucsd_labels`) is recorded in the manifest with
    ``source.label_file``.

    Returns:
        The manifest written to ``out_dir/manifest.json``.
    """
    test_videos = set(source.frames["test"])
    if set(source.labels) != test_videos:
        raise DatasetError(
            f"labels cover videos {sorted(source.labels)} but the test split holds {sorted(test_videos)}"
        )
    manifest = {"layout": source.layout, "splits": {}, "label_source": label_source, "label_file": source.label_file}
    if provenance is not None:  # [{"source", "sha256"}, ...]: what the frames were made from
        manifest["sources"] = provenance
    with atomic_path(out_dir) as tmp:
        sizes = {}  # test video -> (H, W) and the file of its first frame, which its masks must match
        for split in SPLITS:
            counts = {}
            for video, paths in sorted(source.frames[split].items()):
                width = max(4, len(str(len(paths) - 1)))
                target = tmp / split / video
                target.mkdir(parents=True)
                for i, path in enumerate(paths):
                    size = _check_readable(path)
                    if i == 0 and split == "test":
                        sizes[video] = size, path
                    shutil.copyfile(path, target / f"{i:0{width}d}{path.suffix.lower()}")
                counts[video] = len(paths)
            manifest["splits"][split] = counts
        manifest["masks"] = {
            "videos": _write_masks(source, tmp / MASKS_DIR, manifest["splits"]["test"], sizes),
            "source": source.mask_source,
        }
        for video, labels in source.labels.items():
            n = manifest["splits"]["test"][video]
            if labels.shape != (n,):
                raise DatasetError(f"test video {video}: {labels.shape[0]} labels for {n} frames")
        np.savez(tmp / "labels.npz", **{v: label.astype(np.uint8) for v, label in sorted(source.labels.items())})
        manifest["anomalous_test_frames"] = int(sum(int(label.sum()) for label in source.labels.values()))
        write_json(tmp / "manifest.json", manifest)
    return manifest


def _write_masks(
    source: SourceVideos, out: Path, counts: dict[str, int], sizes: dict[str, tuple[tuple[int, int], Path]]
) -> list[str]:
    """Write every test video's masks as ``out/<video>/0000.png`` ...; return the videos that have them.

    Raises:
        DatasetError: masks for a video outside the test split, given both as files and as an
            array, a count other than the video's frames, or a mask of another size than its frames.
    """
    if both := sorted(set(source.masks) & set(source.mask_arrays)):
        raise DatasetError(f"test video(s) {', '.join(both)}: pixel masks given both as files and as arrays")
    videos = sorted(set(source.masks) | set(source.mask_arrays))
    for video in videos:
        files, array = source.masks.get(video), source.mask_arrays.get(video)
        where = files[0].parent if files else f"pixel masks of test video {video} ({source.mask_source})"
        if video not in counts:
            raise DatasetError(
                f"{where}: pixel masks for video {video}, which is not a test video ({', '.join(sorted(counts))}). "
                "Remove the masks or add the video's frames."
            )
        if array is not None and array.ndim != 3:
            raise DatasetError(f"{where}: mask array of shape {array.shape}; expected (frames, height, width)")
        n = len(files) if files is not None else len(array)
        if n != counts[video]:
            raise DatasetError(
                f"{where}: {n} pixel masks for test video {video} of {counts[video]} frames; they must be "
                "equal. Re-extract the dataset."
            )
        (height, width), frame = sizes[video]
        digits = max(4, len(str(n - 1)))
        (out / video).mkdir(parents=True)
        for i in range(n):
            mask = read_mask_image(files[i]) if files is not None else np.asarray(array[i]) != 0
            if mask.shape != (height, width):
                raise DatasetError(
                    f"{files[i] if files is not None else f'{where}, frame {i}'}: pixel mask of "
                    f"{mask.shape[1]}x{mask.shape[0]} pixels but the frames of test video {video} are "
                    f"{width}x{height} ({frame}); a mask must cover its frame pixel for pixel. Re-extract the "
                    "ground truth of the same release as the frames (or, if the frames were resized before, "
                    "resize the masks the same way with nearest-neighbour interpolation)."
                )
            Image.fromarray(mask).save(out / video / f"{i:0{digits}d}.png")  # a bool array is a mode "1" image
    return videos


def has_masks(frames_dir: str | Path) -> bool:
    """Whether the canonical layout at ``frames_dir`` keeps pixel masks for any test video."""
    masks = Path(frames_dir) / MASKS_DIR
    return masks.is_dir() and any(p.is_dir() for p in masks.iterdir())


def load_masks(frames_dir: str | Path, video: str, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """The pixel masks of test video ``video`` in the canonical layout at ``frames_dir``.

    Masks are brought to the model's frame size, never the frames to the masks' size, so that
    pixel scores are compared where the model made them; nearest-neighbour interpolation keeps
    them binary.

    Args:
        frames_dir: a ``frames`` rule output (:func:`write_canonical`).
        video: test video name, as in ``labels.npz``.
        size: (H, W) to resize every mask to by nearest neighbour; ``None`` keeps the frames' size.

    Returns:
        (T, H, W) bool, True where anomalous, one mask per frame; ``None`` when the dataset keeps
        no masks for ``video`` (Ped1's videos without ``_gt`` folders, the Liu re-packages).

    Raises:
        DatasetError: naming the file: an unreadable mask, masks of differing sizes, or a count
            other than the manifest's frames of that video.
    """
    frames_dir = Path(frames_dir)
    folder = frames_dir / MASKS_DIR / video
    manifest = read_json(frames_dir / "manifest.json") if (frames_dir / "manifest.json").is_file() else {}
    rerun = f"Delete {frames_dir} and rerun the frames rule (snakemake --forcerun frames)."
    if not folder.is_dir():
        if video in (manifest.get("masks") or {}).get("videos", []):
            raise DatasetError(f"{folder}: missing, but {frames_dir / 'manifest.json'} lists masks for it. {rerun}")
        return None
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    expected = manifest.get("splits", {}).get("test", {}).get(video)
    if not paths or (expected is not None and len(paths) != expected):
        raise DatasetError(
            f"{folder}: {len(paths)} pixel masks but test video {video} has {expected} frames "
            f"({frames_dir / 'manifest.json'}). {rerun}"
        )
    masks, first = [], None
    for path in paths:
        mask = read_mask_image(path)
        first = first or mask.shape
        if mask.shape != first:
            raise DatasetError(
                f"{path}: pixel mask of {mask.shape[1]}x{mask.shape[0]} pixels, but {paths[0].name} is "
                f"{first[1]}x{first[0]}; the masks of one video share its frame size. {rerun}"
            )
        if size is not None and mask.shape != tuple(size):
            mask = np.asarray(Image.fromarray(mask).resize((size[1], size[0]), Image.Resampling.NEAREST))
        masks.append(mask)
    return np.stack(masks).astype(bool, copy=False)


def canonical_frames(frames_dir: Path, split: str, video: str) -> list[Path]:
    """Frame files of a canonical video, in order."""
    return sorted(p for p in (Path(frames_dir) / split / video).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
