"""Anomaly maps and boxes: where in a frame the model errs (the ``maps`` rule).

For every test frame a clip scores (the protocol's frame: MemAE's centre, MNAD's and AMMC-Net's
predicted last frame) the model's per-pixel error of that frame (``error_map`` of each model):

* MemAE / AE: the channel-wise L2 norm of the reconstruction residual in [-1, 1] space, the very
  quantity whose mean over the clip is the frame score;
* MNAD, AMMC-Net: the squared error in [0, 1] space, mean over channels, the map whose mean is
  the MSE behind the PSNR of the score (MNAD's map uses the trained memory: the test-time memory
  updates of its score are not replayed);
* ``measure: ssim``: 1 - the local structural similarity (scikit-image, Gaussian window) of the
  frame and its reconstruction or prediction, for any model.

Boxes are the connected regions of the map after a Gaussian smoothing of ``smoothing_sigma``
pixels, where it passes a threshold fixed from the *training* videos only: the
``threshold_quantile`` of the smoothed map over ``train_clips`` training clips spread evenly over
the split. No test frame or label enters it. Regions smaller than ``min_area`` (a fraction of
the frame) are dropped; every other region is kept, not only the largest.

Files, under ``results/{dataset}/{variant}/seed{seed}/``::

    maps/<video>.npz    error  (T, H, W) float16, the unsmoothed map (0 where no clip scores)
                        output (T, H, W, C) uint8, the reconstruction or prediction
                        scored (T,) bool, the frames a clip scores
    maps/manifest.json  measure, threshold and the rule that fixed it, smoothing, min area,
                        frame size, frames per video
    boxes.json          per video, per frame: [{x0, y0, x1, y1, area, score}, ...], half-open
                        pixel boxes at the model's frame size, score = max smoothed error inside
    boxes.csv           the same, one row per box

A map is stored as float16 (about 3 significant digits, ample for a threshold and a heat map)
in a compressed ``.npz``; the heat maps of the videos and the viewer show it divided by twice
the threshold (the threshold sits at mid-scale).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vadbench.errors import ConfigError, DatasetError
from vadbench.fileio import atomic_path, read_json, write_csv, write_json
from vadbench.logs import get_logger
from vadbench.protocol import Protocol

log = get_logger("maps")

MEASURES = ("error", "ssim")


@dataclass(frozen=True)
class LocalizationSettings:
    """The ``localization`` config section (global, overridable per dataset).

    Attributes:
        enabled: compute maps, boxes, pixel-level metrics (where masks exist) and viewer pages.
        videos: render an annotated MP4 per test video (on for the demo; off for big datasets).
        measure: ``error`` (the model's own error, see the module docstring) or ``ssim``.
        threshold_quantile: the box threshold is this quantile of the smoothed training maps.
        train_clips: training clips the threshold is measured on, spread evenly over the split.
        min_area: smallest region kept, as a fraction of the frame's pixels.
        smoothing_sigma: Gaussian smoothing of a map before thresholding, in pixels; 0 = off.
        fps: frame rate of the annotated videos.
    """

    enabled: bool = True
    videos: bool = False
    measure: str = "error"
    threshold_quantile: float = 0.999
    train_clips: int = 64
    min_area: float = 0.002
    smoothing_sigma: float = 1.0
    fps: float = 10.0

    def __post_init__(self) -> None:
        for key in ("enabled", "videos"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"localization.{key} must be true or false, got {getattr(self, key)!r}")
        if self.measure not in MEASURES:
            raise ConfigError(f"localization.measure = {self.measure!r}; allowed: {', '.join(MEASURES)}")
        checks = {
            "threshold_quantile": (0.5, 1.0, "a number in [0.5, 1)"),
            "min_area": (0.0, 1.0, "a fraction of the frame in [0, 1)"),
            "smoothing_sigma": (0.0, 100.0, "a number of pixels in [0, 100)"),
            "fps": (0.1, 1000.0, "frames per second in [0.1, 1000)"),
        }
        for key, (low, high, what) in checks.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
                raise ConfigError(f"localization.{key} must be {what}, got {value!r}")
        if isinstance(self.train_clips, bool) or not isinstance(self.train_clips, int) or self.train_clips < 1:
            raise ConfigError(f"localization.train_clips must be an integer >= 1, got {self.train_clips!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "LocalizationSettings":
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown localization key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def smooth(error: np.ndarray, sigma: float) -> np.ndarray:
    """A map smoothed within each frame: (..., H, W) float32; ``sigma`` 0 returns it as float32."""
    error = np.asarray(error, dtype=np.float32)
    if sigma <= 0:
        return error
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(error, sigma=[0] * (error.ndim - 2) + [sigma, sigma], mode="nearest")


def ssim_map(output: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1 - local SSIM (Wang et al., 2004; scikit-image, Gaussian window sigma 1.5) of two
    (H, W, C) images in [-1, 1]: (H, W) float32, 0 where the two agree.

    SSIM is computed on intensities in [0, 1]: its luminance term assumes non-negative means,
    and on signed values an inverted patch would score as similar."""
    from skimage.metrics import structural_similarity

    _, full = structural_similarity(
        (target + 1) / 2,
        (output + 1) / 2,
        data_range=1.0,
        channel_axis=2,
        gaussian_weights=True,
        sigma=1.5,
        full=True,
    )
    return (1.0 - full.mean(axis=2)).astype(np.float32)


def clip_maps(
    model, loader, offset: int, measure: str, device, memory_format=None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(clip ids (B,), error (B, H, W) float32, output (B, H, W, C) uint8)`` per batch,
    the batches given in ``memory_format`` (the layout of the model's weights; default contiguous)."""
    import torch

    from vadbench.training import batch_to

    layout = torch.contiguous_format if memory_format is None else memory_format
    with torch.no_grad():
        for ids, clips in loader.batches():
            clips = batch_to(clips, device, layout)
            error, output = model.error_map(clips, offset)
            output = output.float().clamp(-1, 1)
            out_hwc = output.permute(0, 2, 3, 1).cpu().numpy()
            if measure == "ssim":
                frames = clips.frames if hasattr(clips, "frames") else clips
                target = frames[:, :, offset].permute(0, 2, 3, 1).float().cpu().numpy()
                error = np.stack([ssim_map(o, t) for o, t in zip(out_hwc, target)])
            else:
                error = error.float().cpu().numpy()
            yield ids, error, np.round((out_hwc + 1) * 127.5).astype(np.uint8)


def video_maps(model, loader, offset: int, measure: str, device, memory_format=None) -> list[dict[str, np.ndarray]]:
    """Every video of ``loader`` as :func:`load_map` returns it: ``{"error": (T, H, W) float16,
    "output": (T, H, W, C) uint8, "scored": (T,) bool}``, zeros where no clip scores a frame."""
    index = loader.index
    saved = [
        {
            "error": np.zeros(v.shape[:3], dtype=np.float16),
            "output": np.zeros(v.shape, dtype=np.uint8),
            "scored": np.zeros(v.shape[0], dtype=bool),
        }
        for v in loader.videos
    ]
    for ids, error, output in clip_maps(model, loader, offset, measure, device, memory_format):
        for i, e, o in zip(ids, error, output):
            video, t = saved[index.video_ids[i]], index.starts[i] + offset
            video["error"][t], video["output"][t], video["scored"][t] = e, o, True
    return saved


def spread_clips(index, n: int):
    """``n`` clips of ``index`` spread evenly over it (all of them when it holds fewer)."""
    from vadbench.clips import ClipIndex

    picks = np.unique(np.linspace(0, len(index) - 1, min(n, len(index))).round().astype(int))
    return ClipIndex(index.videos, index.video_ids[picks], index.starts[picks], index.clip_length)


def training_threshold(model, loader, offset: int, settings: LocalizationSettings, device, memory_format=None) -> float:
    """The box threshold: ``threshold_quantile`` of the smoothed maps of the loader's (training) clips."""
    values = [
        smooth(error, settings.smoothing_sigma).ravel()
        for _, error, _ in clip_maps(model, loader, offset, settings.measure, device, memory_format)
    ]
    threshold = float(np.quantile(np.concatenate(values), settings.threshold_quantile))
    if not math.isfinite(threshold) or threshold <= 0:
        threshold = float(np.finfo(np.float16).tiny)  # a model that reproduces training exactly
    return threshold


def frame_boxes(error: np.ndarray, scored: np.ndarray, threshold: float, settings: LocalizationSettings) -> list:
    """Regions of every frame of one video: list (T) of lists of :class:`vadbench.localization.Region`."""
    from vadbench.localization import find_regions

    min_pixels = max(1, int(math.ceil(settings.min_area * error.shape[1] * error.shape[2])))
    smoothed = smooth(error, settings.smoothing_sigma)
    return [find_regions(smoothed[t], threshold, min_pixels) if scored[t] else [] for t in range(len(error))]


def compute_maps(
    model_path: str | Path,
    arrays_dir: str | Path,
    index_path: str | Path,
    protocol: Protocol,
    settings: LocalizationSettings,
    out_dir: str | Path,
    boxes_path: str | Path,
    boxes_csv: str | Path,
    batch_size: int = 16,
    threads: int = 1,
    flow_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Maps, the training threshold and boxes of every test video of one trained model.

    Raises:
        DatasetError: the model was trained on other data (as in scoring), or is not a vadbench model.
    """
    from vadbench.clips import ClipLoader, load_index
    from vadbench.devices import job_device
    from vadbench.host import use_host
    from vadbench.training import flow_input, load_trained, preset_layout

    use_host(threads)
    with job_device() as device:
        model, run = load_trained(model_path, device, arrays_dir=arrays_dir, index_path=index_path, flow_dir=flow_dir)
        if not hasattr(model, "error_map"):
            raise DatasetError(f"{model_path}: model {run['model']!r} has no error map (a motion stream?)")
        flow = flow_input(model, flow_dir, run["preset"])
        offset = protocol.offset
        train = ClipLoader(
            arrays_dir,
            "train",
            spread_clips(load_index(index_path, "train"), settings.train_clips),
            batch_size,
            flow=flow,
        )
        layout = preset_layout(run["preset"])
        threshold = training_threshold(model, train, offset, settings, device, layout)
        index = load_index(index_path, "test")
        loader = ClipLoader(arrays_dir, "test", index, batch_size, flow=flow)
        shapes = [v.shape for v in loader.videos]
        saved = video_maps(model, loader, offset, settings.measure, device, layout)
        errors, outputs, scored = ([m[key] for m in saved] for key in ("error", "output", "scored"))
    boxes: dict[str, list] = {}
    rows = []
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for name, error, output, mask in zip(index.videos, errors, outputs, scored):
            with open(Path(tmp) / f"{name}.npz", "wb") as f:
                np.savez_compressed(f, error=error, output=output, scored=mask)
            regions = frame_boxes(error, mask, threshold, settings)
            boxes[name] = [[r.to_dict() for r in frame] for frame in regions]
            rows += [{"video": name, "frame": t, **r.to_dict()} for t, frame in enumerate(regions) for r in frame]
        manifest = {
            "measure": settings.measure,
            "model": run["model"],
            "threshold": threshold,
            "threshold_rule": {
                "quantile": settings.threshold_quantile,
                "of": f"smoothed maps of {len(train.index)} training clips spread evenly over the split",
            },
            "smoothing_sigma": settings.smoothing_sigma,
            "min_area": settings.min_area,
            "scored_frame_index": offset,
            "frame_size": list(shapes[0][1:3]) if shapes else [],
            "channels": shapes[0][3] if shapes else 0,
            "videos": {name: int(s[0]) for name, s in zip(index.videos, shapes)},
        }
        write_json(Path(tmp) / "manifest.json", manifest)
    write_json(boxes_path, {"threshold": threshold, "videos": boxes})
    write_csv(boxes_csv, rows, fields=["video", "frame", "x0", "y0", "x1", "y1", "area", "score"])
    log.info(
        "maps of %d test videos; threshold %.4g (%.4g quantile of %d training clips); %d boxes",
        len(index.videos),
        threshold,
        settings.threshold_quantile,
        len(train.index),
        len(rows),
    )
    return manifest


def load_map(maps_dir: str | Path, video: str) -> dict[str, np.ndarray]:
    """``{"error": (T, H, W) float16, "output": (T, H, W, C) uint8, "scored": (T,) bool}`` of one video."""
    path = Path(maps_dir) / f"{video}.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in ("error", "output", "scored")}
    except (OSError, ValueError, KeyError) as err:
        raise DatasetError(f"{path}: not a readable vadbench map file ({err}); rerun the maps rule") from None


def load_manifest(maps_dir: str | Path) -> dict[str, Any]:
    return read_json(Path(maps_dir) / "manifest.json")


#: the localisation keys of a seed's auc.json (None where the dataset keeps no pixel masks)
LOCALIZATION_KEYS = ("pixel_auc", "pixel_eer", "rbdc", "tbdc")


def localization_result(maps_dir: str | Path, boxes_path: str | Path, frames_dir: str | Path) -> dict[str, Any]:
    """Pixel-level AUC/EER (UCSD criterion), RBDC and TBDC of one seed's maps and boxes against the
    dataset's pixel masks, over the test videos that have masks (resized to the map size).

    Returns the four :data:`LOCALIZATION_KEYS` (all None when no test video has masks) and a
    ``localization`` record: threshold, measure, videos with masks, and the counts.
    """
    from vadbench.datasets.canonical import load_masks
    from vadbench.localization import Region, localization_metrics

    manifest = load_manifest(maps_dir)
    size = tuple(manifest["frame_size"])
    boxes = read_json(boxes_path)["videos"]
    errors, masks, detections, scored, with_masks = [], [], [], [], []
    for video in manifest["videos"]:
        mask = load_masks(frames_dir, video, size=size)
        if mask is None:
            continue
        saved = load_map(maps_dir, video)
        errors.append(smooth(saved["error"], manifest["smoothing_sigma"]))
        masks.append(mask)
        scored.append(saved["scored"])
        detections.append([[Region(**r) for r in frame] for frame in boxes[video]])
        with_masks.append(video)
    record = {
        "threshold": manifest["threshold"],
        "measure": manifest["measure"],
        "videos_with_masks": with_masks,
        "criterion": "UCSD pixel level: an anomalous frame is detected when >= 40% of its mask is",
    }
    if not with_masks:
        return {**dict.fromkeys(LOCALIZATION_KEYS), "localization": record}
    metrics = localization_metrics(errors, masks, detections, scored=scored)
    counts = {k: v for k, v in metrics.items() if k not in LOCALIZATION_KEYS and not isinstance(v, (list, dict))}
    return {**{k: metrics[k] for k in LOCALIZATION_KEYS}, "localization": {**record, **counts}}
