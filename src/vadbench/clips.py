"""The cuboid (clip) index and the clip loader (the ``index`` rule and training/scoring input).

A clip is ``clip_length`` consecutive frames of one video, identified by (video, start).
MemAE uses 16-frame clips with stride 1 for both training and testing, so a video of T
frames gives T - 15 clips. The index is computed once per preset and saved, so training
and scoring agree on exactly which clips exist.

Three loaders yield the same batches, bit for bit, and differ only in where they build them
(:func:`make_loader`, the preset's ``data_placement``): :class:`ClipLoader` stacks clips on one
CPU thread from the memory-mapped arrays; :class:`DeviceClipLoader` copies the split to the
training device once and gathers each batch there, so a GPU is not starved by the host;
:class:`PrefetchingClipLoader`, for a split too large for the GPU, builds the next batches on a
background thread in pinned memory. Pitfall handled: CUDA divides by a scalar through its
reciprocal, so the uint8-to-float conversion is a table lookup built on the CPU
(:func:`pixel_table`), not the same arithmetic on the device.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from vadbench.arrays import open_videos
from vadbench.errors import ConfigError, DatasetError
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
    uninterrupted one. With ``drop_last`` (the preset's key; MNAD's official training loader,
    ``DataLoader(..., shuffle=True, drop_last=True)``) the last ``len(index) % batch_size`` clips
    of each epoch's order are left out, so every batch is full; which clips those are changes
    with the epoch's permutation.

    Raises:
        ConfigError: ``drop_last`` with fewer clips than ``batch_size``: no batch at all.
    """

    def __init__(
        self,
        arrays_dir: str | Path,
        split: str,
        index: ClipIndex,
        batch_size: int,
        flow: FlowInput | None = None,
        drop_last: bool = False,
    ) -> None:
        if drop_last and len(index) < batch_size:
            raise ConfigError(
                f"preset drop_last: true with batch_size {batch_size}, but the {split} split has only {len(index)} "
                "clips, so no full batch exists; lower batch_size or set drop_last: false"
            )
        self.index = index
        self.batch_size = batch_size
        self.drop_last = drop_last
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
        """Batches per epoch."""
        if self.drop_last:
            return len(self.index) // self.batch_size
        return (len(self.index) + self.batch_size - 1) // self.batch_size

    def clip(self, i: int) -> np.ndarray:
        start = self.index.starts[i]
        return self.videos[self.index.video_ids[i]][start : start + self.index.clip_length]

    def order(self, epoch: int = 0, shuffle_seed: int | None = None) -> np.ndarray:
        """(N,) int64 clip ids in the order epoch ``epoch`` visits them; batches are its consecutive slices.

        With ``drop_last``, N is ``len(index)`` rounded down to a multiple of ``batch_size``: the
        permutation is drawn over every clip first, as PyTorch's DataLoader does, then cut.
        """
        order = np.arange(len(self.index))
        if shuffle_seed is not None:
            order = np.random.default_rng([shuffle_seed, epoch]).permutation(order)
        if self.drop_last:
            order = order[: len(order) - len(order) % self.batch_size]
        return order

    def batches(self, epoch: int = 0, shuffle_seed: int | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield ``(clip_ids, clips)`` for one pass over the index."""
        import torch

        order = self.order(epoch, shuffle_seed)
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


# ----------------------------------------------------------------------------- placement

#: Where a loader keeps the split: ``host`` gathers batches from the memory-mapped arrays (as
#: :class:`ClipLoader`); ``device`` copies the split to the training device once
#: (:class:`DeviceClipLoader`); ``auto`` is ``device`` for a CUDA job and ``host`` otherwise.
PLACEMENTS = ("auto", "device", "host")
#: The share of a CUDA device's free memory a split may take; the rest is left to the model, its
#: activations, the optimiser state and the caching allocator's slack.
DEVICE_MEMORY_SHARE = 0.5
#: Batches a :class:`PrefetchingClipLoader` holds ready ahead of the training loop.
PREFETCH_DEPTH = 2


def pixel_table() -> torch.Tensor:
    """(256,) float32: uint8 value ``v`` -> ``v / 127.5 - 1``, computed exactly as :class:`ClipLoader` does.

    Why a table and not the same arithmetic on the device: CUDA divides by a Python scalar as a
    multiplication by its float32 reciprocal, which differs from the CPU's true division in the
    last bit for 126 of the 256 values; a gather from a table built on the CPU gives the host
    loader's bits on every device.
    """
    import torch

    return torch.arange(256, dtype=torch.uint8).float().div_(127.5).sub_(1.0)


def flow_table(flow: FlowInput, frame_size: tuple[int, int]) -> torch.Tensor:
    """(2 * 65536,) float32: entry ``c * 65536 + k`` is the float16 of bit pattern ``k`` in flow
    channel ``c`` (0 horizontal, 1 vertical) after :func:`vadbench.flow.normalise_flow`, run on
    the CPU as :meth:`ClipLoader.clip_flows` runs it (see :func:`pixel_table` for why a table)."""
    import torch

    from vadbench.flow import normalise_flow

    values = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    both = torch.from_numpy(np.stack([values, values])).reshape(1, 2, 1, 1, 65536)
    return normalise_flow(both, flow.normalisation, frame_size, flow.max_displacement, axis=1).reshape(-1).clone()


def _frame_shape(loader: ClipLoader, arrays_dir: str | Path, split: str, used: np.ndarray) -> tuple[int, ...]:
    """The (H, W, C) every used video of the split shares (the ``resize`` rule decodes them so)."""
    shapes = {loader.videos[v].shape[1:] for v in used}
    if len(shapes) > 1:
        raise DatasetError(
            f"{Path(arrays_dir) / split}: videos of different frame shapes {sorted(shapes)}; the resize rule "
            "decodes every video at the preset's size, so rerun it (snakemake --forcerun resize)."
        )
    if not shapes:  # an index without clips: nothing to copy
        return loader.videos[0].shape[1:] if loader.videos else (0, 0, 0)
    return shapes.pop()


def resident_bytes(loader: ClipLoader) -> int:
    """Bytes the videos (and flows) that ``loader``'s clips use take when copied to a device."""
    used = np.unique(loader.index.video_ids)
    total = sum(loader.videos[v].nbytes for v in used)
    if loader.flows is not None:
        total += sum(loader.flows[v].nbytes for v in used)
    return int(total)


def device_room(device: torch.device) -> int | None:
    """Bytes a split may take on ``device`` (:data:`DEVICE_MEMORY_SHARE` of its free memory);
    ``None`` off CUDA: the CPU always has room, and other devices report no free memory."""
    import torch

    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free * DEVICE_MEMORY_SHARE)


class DeviceClipLoader(ClipLoader):
    """:class:`ClipLoader`'s batches, bit for bit, from a copy of the split on the training device.

    The uint8 frames of every video the index uses are copied once into one contiguous
    (F, H, W, C) tensor on ``device`` (flows: one (F', H, W, 2) float16 tensor), with per-video
    frame offsets. A batch is then one gather on the device, ``frames[offsets[video] + start +
    arange(T)]``, and one table lookup that turns the bytes into the floats ClipLoader computes
    (:func:`pixel_table`, :func:`flow_table`): no per-batch host work, copy or sync (the epoch's
    order goes to the device once per epoch).
    Epoch order and batch composition are ClipLoader's (:meth:`ClipLoader.order`), and the
    tensors have its shapes and strides, so training sees the same batches either way.
    """

    def __init__(
        self,
        arrays_dir: str | Path,
        split: str,
        index: ClipIndex,
        batch_size: int,
        flow: FlowInput | None = None,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
    ) -> None:
        import torch

        super().__init__(arrays_dir, split, index, batch_size, flow=flow, drop_last=drop_last)
        self.device = torch.device(device)
        used = np.unique(index.video_ids)
        shape = _frame_shape(self, arrays_dir, split, used)
        offsets = np.zeros(len(index.videos), np.int64)
        flow_offsets = np.zeros(len(index.videos), np.int64)
        frames_total = flows_total = 0
        for v in used:
            offsets[v], flow_offsets[v] = frames_total, flows_total
            frames_total += len(self.videos[v])
            flows_total += len(self.videos[v]) - 1
        self.frames = self._resident([self.videos[v] for v in used], (frames_total, *shape), torch.uint8)
        first = offsets[index.video_ids] + index.starts
        self._first = torch.from_numpy(first).to(self.device)  # (N,) frame of each clip's start
        self._span = torch.arange(index.clip_length, device=self.device)
        self._pixels = pixel_table().to(self.device)
        if self.flows is not None:
            self.flow_frames = self._resident(
                [self.flows[v] for v in used], (flows_total, *shape[:2], 2), torch.float16
            )
            self._first_flow = torch.from_numpy(flow_offsets[index.video_ids] + index.starts).to(self.device)
            self._flow_values = flow_table(flow, tuple(shape[:2])).to(self.device)
            self._flow_channel = torch.tensor([0, 65536], dtype=torch.int32, device=self.device)
        log.info(
            "%s: %d clips of %d videos resident on %s (%.1f MiB)",
            split,
            len(index),
            len(used),
            self.device,
            resident_bytes(self) / 2**20,
        )

    def _resident(self, arrays: list[np.ndarray], shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """The concatenation of ``arrays`` (memory-mapped, one video at a time) as one tensor on the device."""
        import torch

        out = torch.empty(shape, dtype=dtype, device=self.device)
        at = 0
        for array in arrays:
            if self.device.type == "cpu":
                out.numpy()[at : at + len(array)] = array
            else:
                out[at : at + len(array)].copy_(torch.from_numpy(np.array(array)))
            at += len(array)
        return out

    def batches(self, epoch: int = 0, shuffle_seed: int | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield ``(clip_ids, clips)`` as :meth:`ClipLoader.batches` does, the clips on the device."""
        import torch

        order = self.order(epoch, shuffle_seed)
        first = self._first[torch.from_numpy(order).to(self.device)]  # (N,) this epoch's clip starts
        frames_at = first[:, None] + self._span  # (N, T) frame of every clip, in batch order
        if self.flows is not None:
            flows_at = self._first_flow[torch.from_numpy(order).to(self.device)][:, None] + self._span[:-1]
        for b in range(0, len(order), self.batch_size):
            ids = order[b : b + self.batch_size]
            raw = self.frames[frames_at[b : b + self.batch_size]]  # (B, T, H, W, C) uint8: one gather
            clips = self._pixels.index_select(0, raw.view(-1).int()).view(raw.shape).permute(0, 4, 1, 2, 3)
            if self.flows is None:
                yield ids, clips
                continue
            raw = self.flow_frames[flows_at[b : b + self.batch_size]]  # (B, T-1, H, W, 2) float16
            codes = (raw.view(torch.int16).int() & 0xFFFF) + self._flow_channel
            flows = self._flow_values.index_select(0, codes.view(-1)).view(raw.shape)
            yield ids, FlowClips(clips, flows.permute(0, 4, 1, 2, 3))


class PrefetchingClipLoader(ClipLoader):
    """:class:`ClipLoader` whose next batches are gathered on a background thread while the
    current one trains, in pinned (page-locked) memory when the job trains on CUDA so that
    ``clips.to(device, non_blocking=True)`` overlaps the copy with compute.

    The fallback for a split too large for the device: the frames stay memory-mapped (the page
    cache holds what fits), and at most :data:`PREFETCH_DEPTH` batches wait in the queue. The
    thread ends with the pass, and also when the generator is closed or dropped midway (a
    SIGTERM stop, an exception in the loop): nothing keeps running behind the caller.
    """

    def __init__(
        self,
        arrays_dir: str | Path,
        split: str,
        index: ClipIndex,
        batch_size: int,
        flow: FlowInput | None = None,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
    ) -> None:
        import torch

        super().__init__(arrays_dir, split, index, batch_size, flow=flow, drop_last=drop_last)
        self.pin = torch.device(device).type == "cuda"

    def batches(self, epoch: int = 0, shuffle_seed: int | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield ``(clip_ids, clips)`` as :meth:`ClipLoader.batches` does, built one step ahead."""
        prepare = _pinned if self.pin else None
        return prefetched(super().batches(epoch, shuffle_seed), PREFETCH_DEPTH, prepare)


def _pinned(item: tuple[np.ndarray, Any]) -> tuple[np.ndarray, Any]:
    ids, clips = item
    if isinstance(clips, FlowClips):
        return ids, FlowClips(clips.frames.pin_memory(), clips.flows.pin_memory())
    return ids, clips.pin_memory()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def prefetched(source: Iterator[Any], depth: int, prepare: Callable[[Any], Any] | None = None) -> Iterator[Any]:
    """The items of ``source``, produced up to ``depth`` ahead on a background thread (``prepare``
    applied there); an exception in the thread is raised here. Closing or dropping the returned
    generator stops the thread and waits for it (at most the item it is building)."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(prepare(item) if prepare is not None else item):
                    return
            put(_END)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which raises it
            put(_Failed(err))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def consume() -> Iterator[Any]:
        thread = threading.Thread(target=produce, name="vadbench-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = items.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            stop.set()
            thread.join()

    return consume()


def make_loader(
    arrays_dir: str | Path,
    split: str,
    index: ClipIndex,
    batch_size: int,
    flow: FlowInput | None = None,
    device: torch.device | str = "cpu",
    placement: str = "auto",
    drop_last: bool = False,
) -> ClipLoader:
    """The loader for a job training on ``device``, as the preset's ``data_placement`` says.

    Args:
        placement: ``host``: :class:`ClipLoader`; ``device``: :class:`DeviceClipLoader` when the
            split fits (:func:`device_room`; always on the CPU), else :class:`PrefetchingClipLoader`
            (logged); ``auto``: ``device`` on CUDA, ``host`` elsewhere.
        drop_last: leave out each epoch's last incomplete batch (the preset's ``drop_last``;
            :class:`ClipLoader`).

    All three yield the same batches; only where they are built differs.

    Raises:
        ConfigError: an unknown ``placement``; ``drop_last`` with fewer clips than a batch.
    """
    import torch

    if placement not in PLACEMENTS:
        raise ConfigError(f"preset data_placement {placement!r} is not supported; use one of {', '.join(PLACEMENTS)}")
    device = torch.device(device)
    if placement == "host" or (placement == "auto" and device.type != "cuda"):
        log.info("%s: batches gathered on the host (data_placement %s, device %s)", split, placement, device)
        return ClipLoader(arrays_dir, split, index, batch_size, flow=flow, drop_last=drop_last)
    need = resident_bytes(ClipLoader(arrays_dir, split, index, batch_size, flow=flow, drop_last=drop_last))
    room = device_room(device)
    if room is None or need <= room:
        return DeviceClipLoader(arrays_dir, split, index, batch_size, flow=flow, device=device, drop_last=drop_last)
    log.warning(
        "%s: the split takes %.2f GiB, more than the %.2f GiB (%.0f%% of the free memory) it may take on %s: "
        "gathering batches on the host instead, one step ahead on a background thread, in pinned memory",
        split,
        need / 2**30,
        room / 2**30,
        DEVICE_MEMORY_SHARE * 100,
        device,
    )
    return PrefetchingClipLoader(arrays_dir, split, index, batch_size, flow=flow, device=device, drop_last=drop_last)
