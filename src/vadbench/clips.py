"""The cuboid (clip) index and the clip loader (the ``index`` rule and training/scoring input).

A clip is ``clip_length`` consecutive frames of one video, identified by (video, start).
MemAE uses 16-frame clips with stride 1 for both training and testing, so a video of T
frames gives T - 15 clips. The index is computed once per preset and saved, so training
and scoring agree on exactly which clips exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from vadbench.arrays import open_videos
from vadbench.fileio import atomic_path, read_json
from vadbench.logs import get_logger

log = get_logger("clips")


@dataclass(frozen=True)
class ClipIndex:
    """Clips of one split: ``videos[video_ids[i]]`` starting at frame ``starts[i]``."""

    videos: list[str]
    video_ids: np.ndarray  # (N,) int32
    starts: np.ndarray  # (N,) int32
    clip_length: int

    def __len__(self) -> int:
        return len(self.starts)


def make_index(lengths: dict[str, int], clip_length: int, stride: int) -> ClipIndex:
    """Every clip of ``clip_length`` frames at ``stride`` in videos of the given lengths."""
    videos = sorted(lengths)
    ids, starts = [], []
    for vid, name in enumerate(videos):
        s = np.arange(0, lengths[name] - clip_length + 1, stride, dtype=np.int32)
        if len(s) == 0:
            log.warning("video %s has %d frames, fewer than one %d-frame clip: skipped", name, lengths[name], clip_length)
        ids.append(np.full(len(s), vid, dtype=np.int32))
        starts.append(s)
    return ClipIndex(videos, np.concatenate(ids), np.concatenate(starts), clip_length)


def hold_out_videos(index: ClipIndex, n_videos: int) -> tuple[ClipIndex, ClipIndex]:
    """Split ``index`` into (clips of all but the last ``n_videos`` videos, clips of those videos).

    The held-out videos give a validation loss from training data only, so presets can be
    compared without looking at test labels.
    """
    if not 0 <= n_videos < len(index.videos):
        raise ValueError(f"cannot hold out {n_videos} of {len(index.videos)} training videos")
    cut = len(index.videos) - n_videos
    parts = []
    for keep in (index.video_ids < cut, index.video_ids >= cut):
        parts.append(ClipIndex(index.videos, index.video_ids[keep], index.starts[keep], index.clip_length))
    return parts[0], parts[1]


def build_index(arrays_dir: str | Path, clip_length: int, train_stride: int, test_stride: int, out_path: str | Path) -> dict:
    """Index train and test clips of the decoded videos and save them to ``out_path`` (.npz)."""
    splits = read_json(Path(arrays_dir) / "manifest.json")["splits"]
    indices = {
        "train": make_index(splits["train"], clip_length, train_stride),
        "test": make_index(splits["test"], clip_length, test_stride),
    }
    arrays = {"clip_length": np.int32(clip_length)}
    for split, index in indices.items():
        arrays[f"{split}_videos"] = np.array(index.videos)
        arrays[f"{split}_video_ids"] = index.video_ids
        arrays[f"{split}_starts"] = index.starts
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    counts = {split: len(index) for split, index in indices.items()}
    log.info("clips of %d frames: %s", clip_length, counts)
    return counts


def load_index(path: str | Path, split: str) -> ClipIndex:
    with np.load(path) as data:
        return ClipIndex(
            [str(v) for v in data[f"{split}_videos"]],
            data[f"{split}_video_ids"],
            data[f"{split}_starts"],
            int(data["clip_length"]),
        )


class ClipLoader:
    """Batches of clips gathered from memory-mapped video arrays.

    Each batch is (B, C, T, H, W) float32 in [-1, 1] (the official ``Normalize(0.5, 0.5)``).
    Order is fixed unless ``shuffle_seed`` is given, in which case epoch ``e`` uses the
    permutation drawn from a generator seeded with (shuffle_seed, e): any epoch's order can be
    reproduced on its own, which is what makes a resumed training run identical to an
    uninterrupted one.
    """

    def __init__(self, arrays_dir: str | Path, split: str, index: ClipIndex, batch_size: int) -> None:
        self.index = index
        self.batch_size = batch_size
        self.videos = open_videos(arrays_dir, split, index.videos)

    def __len__(self) -> int:
        return (len(self.index) + self.batch_size - 1) // self.batch_size

    def clip(self, i: int) -> np.ndarray:
        start = self.index.starts[i]
        return self.videos[self.index.video_ids[i]][start : start + self.index.clip_length]

    def batches(self, epoch: int = 0, shuffle_seed: int | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield ``(clip_ids, clips)`` for one pass over the index."""
        order = np.arange(len(self.index))
        if shuffle_seed is not None:
            order = np.random.default_rng([shuffle_seed, epoch]).permutation(order)
        for b in range(0, len(order), self.batch_size):
            ids = order[b : b + self.batch_size]
            stacked = np.stack([self.clip(i) for i in ids])  # (B, T, H, W, C) uint8
            clips = torch.from_numpy(stacked).permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)
            yield ids, clips
