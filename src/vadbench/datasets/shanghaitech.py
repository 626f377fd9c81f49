"""ShanghaiTech Campus, from Luo, Liu and Gao, "A Revisit of Sparse Coding Based Anomaly Detection
in Stacked RNN Framework", ICCV 2017, in the layout its archive unpacks to::

    <root>/                                   may sit one level down (e.g. shanghaitech/)
      training/videos/01_001.avi ...          training videos, decoded here with PyAV
      testing/frames/01_0014/000.jpg ...      test videos, already as 0-based frame files
      testing/test_frame_mask/01_0014.npy     0/1 per test frame, one file per test video

The public download mirror is dead, so the source is always a local folder (or an archive of
it) the user obtained; a missing folder fails with instructions rather than a bare path.
Training videos are decoded into ``workdir/train/<video>/000000.jpg`` ...; video names are kept
(``"01_001"``, ``"01_0014"``).

Pitfalls handled: ``testing/test_pixel_mask`` and other extra folders are ignored; ``__MACOSX``
debris and ``._`` resource forks are skipped; a frame mask must be 1-D, hold only 0 and 1 and
have exactly one entry per frame file, and every test video must have its mask (and every mask
its test video), so labels can never shift against frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vadbench.datasets.canonical import SourceVideos, ordered_frames
from vadbench.datasets.video import decode_video
from vadbench.errors import DatasetError
from vadbench.scorefiles import load_arrays

REQUIRED = ("training/videos", "testing/frames", "testing/test_frame_mask")
MISSING_SOURCE_HELP = """\
The public ShanghaiTech Campus mirror is dead, so vadbench cannot download it. Obtain the dataset
(e.g. from the authors or a colleague), extract it, and point datasets.shanghaitech.source at the
folder (or an archive of it) with this layout:

    <folder>/                               or <folder>/shanghaitech/
      training/videos/01_001.avi ...
      testing/frames/01_0014/000.jpg ...
      testing/test_frame_mask/01_0014.npy ...
"""


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def find_root(path: Path) -> Path:
    """The folder holding ``training/`` and ``testing/``: ``path`` itself or one level below.

    Raises:
        DatasetError: a required folder is missing, with instructions to obtain the dataset.
    """
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder.\n{MISSING_SOURCE_HELP}")
    candidates = [path, *_visible_dirs(path)]
    root = next((c for c in candidates if all((c / r).is_dir() for r in REQUIRED)), None)
    if root is not None:
        return root
    # name what is missing in the folder that looks most like the dataset
    partial = max(candidates, key=lambda c: sum((c / r).is_dir() for r in REQUIRED))
    missing = [r for r in REQUIRED if not (partial / r).is_dir()]
    raise DatasetError(
        f"{partial}: not the ShanghaiTech Campus layout; missing {', '.join(r + '/' for r in missing)} "
        f"(looked in {path} and one level below).\n{MISSING_SOURCE_HELP}"
    )


def read_frame_mask(npy: Path, n_frames: int) -> np.ndarray:
    """The 0/1 labels of one test video from ``test_frame_mask/<video>.npy``, checked against its frames.

    Raises:
        DatasetError: unreadable file, not a 1-D 0/1 array, or a length other than ``n_frames``.
    """
    mask = np.asarray(load_arrays(npy))  # a pickled, oversized or truncated file is refused from its header
    if mask.ndim != 1:
        raise DatasetError(f"{npy}: frame mask has shape {mask.shape}; expected one 0/1 entry per frame (1-D)")
    if mask.dtype.kind not in "biuf":
        raise DatasetError(f"{npy}: frame mask has dtype {mask.dtype}; expected one 0/1 number per frame")
    if not np.isin(mask, (0, 1)).all():
        raise DatasetError(
            f"{npy}: frame mask holds values other than 0 and 1 (found "
            f"{np.unique(mask[~np.isin(mask, (0, 1))])[:5].tolist()}); expected 0/1 per frame. Re-extract the dataset."
        )
    if len(mask) != n_frames:
        raise DatasetError(
            f"{npy}: {len(mask)} labels but its video {npy.parent.parent / 'frames' / npy.stem} holds "
            f"{n_frames} frames; they must be equal. Re-extract the dataset (frames or mask are incomplete)."
        )
    return mask.astype(np.uint8)


def read(path: str | Path, workdir: Path) -> SourceVideos:
    """Decode the ShanghaiTech training videos into ``workdir`` and list the test frames and labels.

    Args:
        path: The extracted dataset (``shanghaitech/`` or the folder holding it).
        workdir: An existing empty scratch folder for the decoded training frames.

    Returns:
        The frames of both splits and the per-frame labels of every test video.

    Raises:
        DatasetError: a folder, video, frame or mask is missing or unreadable, or a mask's length
            differs from its video's frame count.
    """
    root = find_root(Path(path))
    workdir = Path(workdir)
    videos_dir, frames_dir, masks_dir = (root / r for r in REQUIRED)
    avis = [
        p
        for p in sorted(videos_dir.iterdir())
        if p.suffix.lower() == ".avi" and p.is_file() and not p.name.startswith(".")
    ]
    if not avis:
        raise DatasetError(f"{videos_dir}: no .avi training videos in this folder.\n{MISSING_SOURCE_HELP}")
    test_dirs = _visible_dirs(frames_dir)
    if not test_dirs:
        raise DatasetError(f"{frames_dir}: no test video folders (e.g. 01_0014/000.jpg) here.\n{MISSING_SOURCE_HELP}")
    masks = {p.stem: p for p in masks_dir.glob("*.npy") if not p.name.startswith(".")}
    videos = {d.name for d in test_dirs}
    if not_found := sorted(videos - set(masks)):
        raise DatasetError(
            f"{masks_dir}: no frame mask {', '.join(v + '.npy' for v in not_found[:5])}"
            f"{' ...' if len(not_found) > 5 else ''} for test video(s) in {frames_dir}; re-extract the dataset."
        )
    if orphans := sorted(set(masks) - videos):
        raise DatasetError(
            f"{frames_dir}: no frame folder for mask(s) {', '.join(masks[v].name for v in orphans[:5])}"
            f"{' ...' if len(orphans) > 5 else ''}; the test frames are incomplete. Re-extract the dataset."
        )

    source = SourceVideos(layout="shanghaitech")
    # the test split is checked first: it is cheap, the training decode is not
    for video_dir in test_dirs:
        frames = ordered_frames(video_dir)
        source.labels[video_dir.name] = read_frame_mask(masks[video_dir.name], len(frames))
        source.frames["test"][video_dir.name] = frames
    for avi in avis:
        source.frames["train"][avi.stem] = decode_video(avi, workdir / "train" / avi.stem)
    return source
