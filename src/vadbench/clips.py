"""The cuboid (clip) index and the clip loader (the ``index`` rule and training/scoring input).

A clip is ``clip_length`` consecutive frames of one video, identified by (video, start).
MemAE uses 16-frame clips with stride 1 for both training and testing, so a video of T
frames gives T - 15 clips. The index is computed once per preset and saved, so training
and scoring agree on exactly which clips exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from vadbench.arrays import open_videos
from vadbench.errors import DatasetError
from vadbench.fileio import atomic_path, read_json
from vadbench.logs import get_logger

if TYPE_CHECKING:  # torch is imported where batches are built: the index rule needs numpy only
    import torch

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


@dataclass(frozen=True)
class FlowClips:
    """A batch of clips with the optical flow between their consecutive frames (AMMC-Net).

    ``frames``: (B, C, T, H, W) in [-1, 1], as :class:`ClipLoader` yields without flow;
    ``flows``: (B, 2, T-1, H, W), flow ``t`` from frame ``t`` to ``t+1`` (channel 0 horizontal,
    1 vertical), normalised as the preset's ``flow.normalisation`` says (:mod:`vadbench.flow`).
    Behaves like a tensor where the training loop needs it (``len``, ``.to``).
    """

    frames: torch.Tensor
    flows: torch.Tensor

    def __len__(self) -> int:
        return len(self.frames)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "FlowClips":
        return FlowClips(
            self.frames.to(device, non_blocking=non_blocking), self.flows.to(device, non_blocking=non_blocking)
        )


def make_index(lengths: dict[str, int], clip_length: int, stride: int) -> ClipIndex:
    """Every clip of ``clip_length`` frames at ``stride`` in videos of the given lengths."""
    videos = sorted(lengths)
    ids, starts = [], []
    for vid, name in enumerate(videos):
        s = np.arange(0, lengths[name] - clip_length + 1, stride, dtype=np.int32)
        if len(s) == 0:
            log.warning(
                "video %s has %d frames, fewer than one %d-frame clip: skipped", name, lengths[name], clip_length
            )
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


def build_index(
    arrays_dir: str | Path, clip_length: int, train_stride: int, test_stride: int, out_path: str | Path
) -> dict:
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


@dataclass(frozen=True)
class FlowInput:
    """Where a loader finds the optical flow of its videos (``flow`` rule output) and how to
    normalise it (the preset's ``flow`` section; :func:`vadbench.flow.normalise_flow`)."""

    flow_dir: Path
    normalisation: str
    max_displacement: float = 1.0


class ClipLoader:
    """Batches of clips gathered from memory-mapped video arrays.

    Each batch is (B, C, T, H, W) float32 in [-1, 1] (the official ``Normalize(0.5, 0.5)``);
    given ``flow``, a :class:`FlowClips` that also holds the T-1 flows between the clip's frames.
    Order is fixed unless ``shuffle_seed`` is given, in which case epoch ``e`` uses the
    permutation drawn from a generator seeded with (shuffle_seed, e): any epoch's order can be
    reproduced on its own, which is what makes a resumed training run identical to an
    uninterrupted one.
    """

    def __init__(
        self, arrays_dir: str | Path, split: str, index: ClipIndex, batch_size: int, flow: FlowInput | None = None
    ) -> None:
        self.index = index
        self.batch_size = batch_size
        self.videos = open_videos(arrays_dir, split, index.videos)
        self.flow = flow
        self.flows = open_videos(flow.flow_dir, split, index.videos) if flow is not None else None
        if self.flows is not None:
            for name, video, flows in zip(index.videos, self.videos, self.flows):
                if flows.shape != (len(video) - 1, *video.shape[1:3], 2):
                    raise DatasetError(
                        f"{flow.flow_dir / split / name}.npy holds flows of shape {flows.shape}, but the "
                        f"video has {video.shape}; rerun the flow rule (snakemake --forcerun flow)."
                    )

    def __len__(self) -> int:
        return (len(self.index) + self.batch_size - 1) // self.batch_size

    def clip(self, i: int) -> np.ndarray:
        start = self.index.starts[i]
        return self.videos[self.index.video_ids[i]][start : start + self.index.clip_length]

    def batches(self, epoch: int = 0, shuffle_seed: int | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield ``(clip_ids, clips)`` for one pass over the index."""
        import torch

        order = np.arange(len(self.index))
        if shuffle_seed is not None:
            order = np.random.default_rng([shuffle_seed, epoch]).permutation(order)
        for b in range(0, len(order), self.batch_size):
            ids = order[b : b + self.batch_size]
            stacked = np.stack([self.clip(i) for i in ids])  # (B, T, H, W, C) uint8
            clips = torch.from_numpy(stacked).permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)
            yield ids, (clips if self.flows is None else FlowClips(clips, self.clip_flows(ids)))

    def clip_flows(self, ids: np.ndarray) -> torch.Tensor:
        """(B, 2, T-1, H, W) float32 flows of clips ``ids``, normalised as ``self.flow`` says."""
        import torch

        from vadbench.flow import normalise_flow

        length = self.index.clip_length - 1
        stacked = np.stack(
            [self.flows[self.index.video_ids[i]][self.index.starts[i] : self.index.starts[i] + length] for i in ids]
        )  # (B, T-1, H, W, 2) float16
        flows = torch.from_numpy(stacked.astype(np.float32)).permute(0, 4, 1, 2, 3)
        return normalise_flow(
            flows, self.flow.normalisation, tuple(stacked.shape[2:4]), self.flow.max_displacement, axis=1
        )
