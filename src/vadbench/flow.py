"""Dense optical flow between consecutive frames, the motion input of AMMC-Net (the ``flow`` rule).

AMMC-Net (Cai et al., AAAI 2021) feeds a motion stream with the optical flow between the frames
of each clip. vadbench computes it with a classical estimator, which needs no network weights and
no GPU, once per video, and caches it next to the frame arrays:

    resources/<dataset>/<preset>/
    ├── arrays/<split>/<video>.npy   (T, H, W, C) uint8 frames (the ``resize`` rule)
    └── flow/
        ├── <split>/<video>.npy      (T-1, H, W, 2) float16: flow t maps frame t to frame t+1
        └── manifest.json            method, conventions, flows per video, checksums, the
                                     magnitude statistics per split, the arrays manifest's SHA-256

Method: DIS (Kroeger et al., ECCV 2016) at OpenCV's ``medium`` preset is the default. On the
synthetic scene of ``benchmarks/flow_methods.py`` it has the lowest mean endpoint error of all
methods (TV-L1 is better on the moving objects, worse on the static background) at about 120x
TV-L1's speed: the whole of Ped2 at 256x256 flows in well under a minute on two cores instead of
about 40 minutes (``benchmarks/RESULTS.md``). Farneback, the faster DIS presets, scikit-image's
TV-L1 and iterative Lucas-Kanade stay available as named options.

Conventions (every method returns them; scikit-image's (rows, cols) output is reordered):

- a flow field is (H, W, 2) float32 in pixels per frame;
- channel 0 is dx (horizontal, + right), channel 1 is dy (vertical, + down);
- OpenCV's sense: ``prev(y, x) ~ next(y + dy, x + dx)``.

Pitfalls handled: colour frames are reduced to Pillow's ITU-R 601 luma ("L"), the same gray the
``resize`` rule writes for one-channel presets, so the flow does not depend on the preset's
channels; flows are stored as float16 (half the disk; steps of 0.002 px at 2-4 px);
a flow of other arrays is detectable through the recorded SHA-256 of their manifest.
"""

from __future__ import annotations

import datetime
import hashlib
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from vadbench.arrays import save_array
from vadbench.errors import ConfigError, DatasetError
from vadbench.fileio import atomic_path, read_json, write_json
from vadbench.logs import get_logger

log = get_logger("flow")

Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(prev, next)`` gray uint8 (H, W) -> flow (H, W, 2) float32 in the module's convention."""

CONVENTION = "channel 0 dx (+right), channel 1 dy (+down); prev(y, x) ~ next(y + dy, x + dx)"
UNITS = "pixels per frame"
NORMALISATIONS = ("none", "frame_size", "clip")

# OpenCV's tutorial values (pyr_scale 0.5, 15 px window, 3 iterations, poly_n 5), poly_sigma 1.1
# as its documentation advises for poly_n 5, and 4 pyramid levels instead of 3 so that motions of
# several pixels are caught at 256x256 (the coarsest level is still 32 px, two windows wide).
FARNEBACK = {"pyr_scale": 0.5, "levels": 4, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.1, "flags": 0}
_HISTOGRAM_BIN = 0.01  # px: resolution of the magnitude percentile in the manifest


def _dis(preset: int) -> Estimator:
    dis = cv2.DISOpticalFlow_create(preset)  # reusable: one per video, not one per pair
    return lambda prev, next: dis.calc(prev, next, None)


def _farneback() -> Estimator:
    return lambda prev, next: cv2.calcOpticalFlowFarneback(prev, next, None, **FARNEBACK)


def _from_rows_cols(flow: np.ndarray) -> np.ndarray:
    """scikit-image's (2, H, W) = (dy, dx), same sense as OpenCV, to (H, W, 2) = (dx, dy)."""
    return np.ascontiguousarray(np.stack([flow[1], flow[0]], axis=-1), dtype=np.float32)


def _skimage(name: str) -> Estimator:
    from skimage import registration

    solver = getattr(registration, f"optical_flow_{name}")
    return lambda prev, next: _from_rows_cols(solver(prev, next))  # uint8 is scaled to [0, 1] inside


METHODS: dict[str, Callable[[], Estimator]] = {
    "dis": lambda: _dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM),
    "dis_fast": lambda: _dis(cv2.DISOPTICAL_FLOW_PRESET_FAST),
    "dis_ultrafast": lambda: _dis(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST),
    "farneback": _farneback,
    "tvl1": lambda: _skimage("tvl1"),
    "ilk": lambda: _skimage("ilk"),
}
"""Method name (the preset's ``flow.method``) -> factory of a fresh estimator."""


def make_estimator(method: str = "dis") -> Estimator:
    """A fresh estimator for ``method``; build one per video and reuse it for every pair.

    Raises:
        ConfigError: ``method`` is not in :data:`METHODS`.
    """
    if method not in METHODS:
        raise ConfigError(f"flow.method {method!r} is not supported; use one of {', '.join(METHODS)}")
    return METHODS[method]()


def to_gray(frame: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) RGB uint8 -> contiguous (H, W) uint8.

    RGB uses Pillow's fixed-point ITU-R 601 luma, bit for bit, so a colour preset flows the
    same gray a one-channel preset decodes.
    """
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3)):
        raise ValueError(f"expected a (H, W[, 1 or 3]) uint8 frame, got {frame.shape} {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 3:
        rgb = frame.astype(np.uint32)
        luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
        return luma.astype(np.uint8)
    return np.ascontiguousarray(frame.reshape(frame.shape[:2]))


def estimate_flow(prev: np.ndarray, next: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow (H, W, 2) float32 from ``prev`` to ``next`` (uint8 (H, W) or (H, W, C)), in pixels,
    channel 0 = dx, channel 1 = dy. Builds an estimator per call: for a video use
    :func:`make_estimator` once."""
    return make_estimator(method)(to_gray(prev), to_gray(next))


class _MagnitudeStats:
    """Max |dx|, max |dy| and a histogram of |flow| (0.01 px bins) over one split's flows, so the
    99.9th percentile needs no copy of the split in memory."""

    def __init__(self) -> None:
        self.max_dx = self.max_dy = 0.0
        self.counts = np.zeros(1, np.int64)

    def add(self, flow: np.ndarray) -> None:
        """Count one (H, W, 2) float32 flow (as estimated: float16 rounding is below a bin)."""
        dx, dy = flow[..., 0], flow[..., 1]
        self.max_dx = max(self.max_dx, float(np.abs(dx).max(initial=0.0)))
        self.max_dy = max(self.max_dy, float(np.abs(dy).max(initial=0.0)))
        counts = np.bincount((np.sqrt(dx * dx + dy * dy) / _HISTOGRAM_BIN).astype(np.intp).ravel())
        if len(counts) > len(self.counts):
            self.counts = np.pad(self.counts, (0, len(counts) - len(self.counts)))
        self.counts[: len(counts)] += counts

    def summary(self) -> dict[str, float]:
        total = int(self.counts.sum())
        k = int(np.searchsorted(np.cumsum(self.counts), 0.999 * total)) if total else -1
        return {
            "max_abs_dx": round(self.max_dx, 3),
            "max_abs_dy": round(self.max_dy, 3),
            "p99_9_magnitude": round((k + 1) * _HISTOGRAM_BIN, 2),
            "flow_pixels": total,
        }


def _open_videos(arrays_dir: Path, manifest: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """Every array the manifest lists, memory-mapped and checked, before any flow is computed."""
    size, channels = tuple(manifest["size"]), manifest["channels"]
    videos: dict[str, dict[str, np.ndarray]] = {}
    for split, counts in manifest["splits"].items():
        videos[split] = {}
        for video, count in counts.items():
            path = arrays_dir / split / f"{video}.npy"
            expected = (count, *size, channels)
            try:
                array = np.load(path, mmap_mode="r")
            except FileNotFoundError:
                raise DatasetError(
                    f"{path} is missing ({arrays_dir / 'manifest.json'} lists {split}/{video}). "
                    "Rerun the resize rule (snakemake --forcerun resize)."
                ) from None
            except (OSError, ValueError) as err:
                raise DatasetError(
                    f"{path}: cannot open the frames array ({err}); {arrays_dir / 'manifest.json'} "
                    "lists it. Rerun the resize rule (snakemake --forcerun resize)."
                ) from None
            if array.shape != expected or array.dtype != np.uint8:
                raise DatasetError(
                    f"{path}: {array.shape} {array.dtype}, but {arrays_dir / 'manifest.json'} says "
                    f"{expected} uint8. Rerun the resize rule (snakemake --forcerun resize)."
                )
            videos[split][video] = array
    return videos


def video_flow(frames: np.ndarray, method: str = "dis") -> np.ndarray:
    """The flow of one video outside the DAG (``vadbench detect``): (T, H, W, C) uint8 -> (T-1, H, W, 2) float16."""
    return _flow_video(frames, method, _MagnitudeStats())


def _flow_video(frames: np.ndarray, method: str, stats: _MagnitudeStats) -> np.ndarray:
    """(T, H, W, C) uint8 -> (T-1, H, W, 2) float16, each frame converted to gray once."""
    estimate = make_estimator(method)
    flows = np.empty((max(len(frames) - 1, 0), *frames.shape[1:3], 2), np.float16)
    prev = to_gray(frames[0]) if len(frames) else None
    for t in range(len(flows)):
        next = to_gray(frames[t + 1])
        flow = estimate(prev, next)
        stats.add(flow)
        flows[t] = flow
        prev = next
    return flows


def flow_videos(arrays_dir: str | Path, out_dir: str | Path, method: str = "dis", threads: int = 1) -> dict:
    """Optical flow of every video of ``arrays_dir`` (``decode_videos`` output) into ``out_dir``.

    Writes ``out_dir/<split>/<video>.npy`` (T-1, H, W, 2) float16 and ``out_dir/manifest.json``,
    all at once: on any error ``out_dir`` is left as it was.

    Args:
        arrays_dir: folder with ``manifest.json`` and ``<split>/<video>.npy`` (T, H, W, C) uint8.
        out_dir: the folder to write.
        method: a key of :data:`METHODS`.
        threads: OpenCV's thread count for this call (the job's ``threads:``).

    Returns:
        The manifest written.

    Raises:
        ConfigError: unknown ``method``.
        DatasetError: an array the arrays manifest lists is missing or has another shape.
    """
    arrays_dir = Path(arrays_dir)
    make_estimator(method)  # an unknown method fails before any work
    source = read_json(arrays_dir / "manifest.json")
    videos = _open_videos(arrays_dir, source)
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        with atomic_path(out_dir) as tmp:
            info = _write_flows(videos, tmp, method)
            info = {
                "method": method,
                "library": _library(method),
                "size": source["size"],
                "convention": CONVENTION,
                "units": UNITS,
                "dtype": "float16",
                "source_manifest_sha256": _sha256(arrays_dir / "manifest.json"),
                **info,
            }
            write_json(tmp / "manifest.json", info)
    finally:
        cv2.setNumThreads(previous_threads)
    return info


def _write_flows(videos: dict[str, dict[str, np.ndarray]], out: Path, method: str) -> dict[str, Any]:
    """Flow every video into ``out``; returns the manifest's splits, arrays and magnitude parts."""
    total = sum(max(len(v) - 1, 0) for split in videos.values() for v in split.values())
    counts: dict[str, dict[str, int]] = {}
    checksums: dict[str, dict[str, Any]] = {}
    magnitude: dict[str, dict[str, float]] = {}
    done, start = 0, time.perf_counter()
    for split, split_videos in videos.items():
        (out / split).mkdir(parents=True)
        counts[split], checksums[split], stats = {}, {}, _MagnitudeStats()
        for video, frames in split_videos.items():
            flows = _flow_video(frames, method, stats)
            checksums[split][video] = save_array(out / split / f"{video}.npy", flows)
            counts[split][video] = len(flows)
            done += len(flows)
            _log_progress(f"{split}/{video}", done, total, time.perf_counter() - start)
        magnitude[split] = stats.summary()
    return {"splits": counts, "arrays": checksums, "magnitude": magnitude}


def _log_progress(what: str, done: int, total: int, seconds: float) -> None:
    rate = done / seconds if seconds > 0 else 0.0
    eta = datetime.timedelta(seconds=round((total - done) / rate)) if rate else "?"
    log.info("%s: %d/%d pairs, %.1f pairs/s, ETA %s", what, done, total, rate, eta)


def _library(method: str) -> str:
    if method in ("tvl1", "ilk"):
        import skimage

        return f"scikit-image {skimage.__version__}"
    return f"opencv {cv2.__version__}"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def normalise_flow(
    flow,
    mode: str = "clip",
    frame_size: tuple[int, int] | None = None,
    max_displacement: float | None = None,
    axis: int = -1,
):
    """Scale a flow in pixels for a network; numpy array in, numpy out, torch tensor in, torch out.

    Args:
        flow: any shape whose ``axis`` has length 2 (dx, dy): (H, W, 2) with ``axis=-1``, or a
            (B, 2, T, H, W) tensor with ``axis=1``.
        mode: ``none`` keeps pixels; ``frame_size`` divides dx by W and dy by H; ``clip`` (the
            default) clamps to +-``max_displacement`` and divides by it, into [-1, 1] like the
            tanh output of AMMC-Net's motion stream.
        frame_size: (H, W), for ``frame_size``.
        max_displacement: pixels mapped to 1, for ``clip``.
        axis: the channel axis.

    Returns:
        float32, same shape and type as ``flow``.

    Raises:
        ConfigError: unknown ``mode``, or the value it needs is missing.
    """
    flow = flow.astype(np.float32) if isinstance(flow, np.ndarray) else flow.float()
    if mode == "none":
        return flow
    if mode == "frame_size":
        if frame_size is None:
            raise ConfigError("flow.normalisation 'frame_size' needs the frame size (H, W)")
        shape = [1] * flow.ndim
        shape[axis] = 2
        divisor = np.array([frame_size[1], frame_size[0]], np.float32).reshape(shape)
        return flow / (divisor if isinstance(flow, np.ndarray) else flow.new_tensor(divisor))
    if mode == "clip":
        if not max_displacement or max_displacement <= 0:
            raise ConfigError(f"flow.max_displacement must be a positive number of pixels, got {max_displacement!r}")
        return flow.clip(-max_displacement, max_displacement) / max_displacement
    raise ConfigError(f"flow.normalisation {mode!r} is not supported; use one of {', '.join(NORMALISATIONS)}")
