"""Where the anomaly is: regions of a pixel error map and the localisation criteria of the literature.

A frame-level AUC says *when* a model flags a video; these criteria say whether it points at the
right pixels. Inputs are per-pixel error maps, (T, H, W) float per test video (the model's
reconstruction or prediction error, higher is more anomalous), and the datasets' ground-truth
masks, (T, H, W) bool, resized to the map size with :func:`resize_mask` (never the maps to the
mask size: the map is what the model saw, and nearest resizing keeps the mask a 0/1 mask).

Regions (:func:`find_regions`)
    The 8-connected components of ``error >= threshold`` (after an optional Gaussian smoothing of
    ``sigma`` pixels), each with its half-open box ``[x0, x1) x [y0, y1)``, its pixel count and its
    score, the largest (smoothed) error inside it. Every component of at least ``min_area`` pixels
    is kept, not only the largest, since a frame can hold several anomalies.

Pixel-level criterion (:func:`pixel_level_roc`; Mahadevan et al., "Anomaly detection in crowded
scenes", CVPR 2010; Li, Mahadevan and Vasconcelos, "Anomaly detection and localization in crowded
scenes", TPAMI 2014), the UCSD Ped1/Ped2 localisation figure
    At a threshold ``t`` a pixel is detected when its error is ``>= t``. A frame is anomalous
    when its mask holds any pixel, normal otherwise. An anomalous frame is a true positive when
    at least ``coverage`` (40%) of its ground-truth pixels are detected; a normal frame is a false
    positive when any of its pixels is detected. TPR(t) = true-positive frames / anomalous frames,
    FPR(t) = false-positive frames / normal frames; ``auc`` is the area under TPR against FPR
    (trapezoidal, the curve closed by (0, 0) at t = +inf and (1, 1) at t = -inf), ``eer`` the
    rate where FPR = 1 - TPR, linearly interpolated as :func:`vadbench.metrics.equal_error_rate`.
    Detection outside the mask of an anomalous frame costs nothing: the criterion measures
    coverage of the anomaly, the false alarms are counted on normal frames only, as in the papers.

    How it is computed: each frame's outcome is monotone in ``t``, so it reduces to one
    *critical value*: a normal frame is a false positive iff ``t <= max(error)``; an anomalous frame
    with ``n`` mask pixels is a true positive iff ``t <=`` the ``ceil(coverage * n)``-th largest
    error inside its mask. The curve is then the ROC of those per-frame values, exact at every
    distinct one (at most one threshold per frame, no T x H x W x thresholds array).

Region- and track-based detection criteria (:func:`rbdc_tbdc`; Ramachandra and Jones, "Street
Scene: A new dataset and evaluation protocol for video anomaly detection", WACV 2020)
    Ground-truth regions are the 8-connected components of each frame's mask; ground-truth tracks
    are the 26-connected space-time components of a video's mask volume. That is a stand-in where
    a dataset gives no track ids (UCSD, Avenue masks): an object that moves by more than its own
    size between frames splits into several tracks, and two objects that touch share one. Street
    Scene's annotations, and the Avenue/ShanghaiTech tracks of Georgescu et al. (TPAMI 2021), are
    boxes with track ids; with those the criteria are the same apart from this grouping.

    At a score threshold ``s`` the detections with score ``>= s`` are kept. A ground-truth region
    is detected when a kept detection of its frame has IoU ``>= iou`` (0.1) with it; a detection
    is a false positive when its IoU with every ground-truth region of its frame is ``< iou`` (a
    detection overlapping an already detected region is neither). IoU is the *box* IoU of the
    detection's box and the ground-truth region's bounding box, as in the paper and in the
    reference implementation of Georgescu et al.: Street Scene's ground truth is boxes, and a
    pixel IoU would punish a detector for a thresholded blob that fills less of its box than the
    annotated object does. Boxes are half-open pixel boxes, area ``(x1 - x0) * (y1 - y0)``.

    RBDC(s) = detected GT regions / GT regions; TBDC(s) = GT tracks with at least
    ``track_fraction`` (10%) of their regions detected / GT tracks; FPR(s) = false-positive
    detections / scored frames (false positives per frame, not a rate in [0, 1]). Sweeping ``s``
    over every distinct detection score gives the curves, starting at (0, 0). The reported
    ``rbdc`` and ``tbdc`` are the trapezoidal areas under RBDC and TBDC against FPR over
    ``[0, max_fp_per_frame]`` (1), divided by ``max_fp_per_frame`` so that 1.0 is perfect. A curve
    that ends before ``max_fp_per_frame`` is continued flat at its last value (no lower threshold
    adds a detection); a segment that crosses it is cut there by linear interpolation.
    Differences from the reference code of Georgescu et al.: detections of equal score enter
    together (there, one at a time in an arbitrary order), and the crossing segment is
    interpolated (there, dropped and the curve continued flat); both change the area by at most
    one detection's step.

Frames outside ``scored`` (the protocol's edges, where no clip lands) are left out of every
count: their pixels, their ground-truth regions, their detections, and the frame counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from scipy import ndimage
from skimage.measure import label, regionprops

from vadbench.errors import ConfigError, DatasetError
from vadbench.metrics import eer_from_curve

#: Defaults of the papers: UCSD pixel-level coverage; Street Scene IoU, track fraction, FPR range.
COVERAGE = 0.4
IOU = 0.1
TRACK_FRACTION = 0.1
MAX_FP_PER_FRAME = 1.0

# ceil(fraction * n) of a fraction given in decimal (0.4 * 5 must be 2, not 3): a slack far below 1/n
_CEIL_SLACK = 1e-9


@dataclass(frozen=True)
class Region:
    """One connected region of an error map: its half-open box, its pixel count and its score.

    Attributes:
        x0, y0, x1, y1: the box ``[x0, x1) x [y0, y1)`` in pixels of the map (columns x, rows y).
        area: pixels in the connected region itself (at most the box's area).
        score: the largest (smoothed) error inside the region.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    area: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        """``{"x0", "y0", "x1", "y1", "area", "score"}`` as plain Python ints and a float (JSON-ready)."""
        return {k: (float(v) if k == "score" else int(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Region:
        """The region :meth:`to_dict` wrote."""
        return cls(int(d["x0"]), int(d["y0"]), int(d["x1"]), int(d["y1"]), int(d["area"]), float(d["score"]))


def find_regions(error: np.ndarray, threshold: float, min_area: int = 1, sigma: float = 0.0) -> list[Region]:
    """The 8-connected regions of ``error >= threshold``, largest score first.

    Args:
        error: (H, W) float error map of one frame (float16 accepted; compared in float64).
        threshold: a pixel is in a region when its (smoothed) error is ``>= threshold``.
        min_area: regions of fewer pixels are dropped (1 keeps all).
        sigma: Gaussian smoothing of the map in pixels before thresholding (0 = none; borders
            reflected). The score is then the maximum of the smoothed map.

    Returns:
        Every region of at least ``min_area`` pixels, sorted by score descending (ties: top-left
        first), empty when no pixel reaches ``threshold``.

    Raises:
        DatasetError: ``error`` is not a 2-D numeric array.
        ConfigError: ``threshold`` is NaN, ``min_area < 1`` or ``sigma < 0``.
    """
    error = np.asarray(error)
    if error.ndim != 2 or error.dtype.kind not in "biuf":
        raise DatasetError(f"find_regions needs one (H, W) numeric error map, got {error.dtype} {error.shape}")
    if math.isnan(threshold):
        raise ConfigError("find_regions: threshold is NaN; give a number (the error a region pixel must reach)")
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise ConfigError(f"find_regions: min_area must be an integer >= 1 (1 keeps every region), got {min_area!r}")
    if not sigma >= 0:
        raise ConfigError(f"find_regions: sigma must be >= 0 pixels (0: no smoothing), got {sigma!r}")
    values = error.astype(np.float64)
    if sigma > 0:
        values = ndimage.gaussian_filter(values, sigma, mode="reflect")
    labels = label(values >= threshold, connectivity=2)
    regions = [
        Region(
            x0=int(p.bbox[1]),
            y0=int(p.bbox[0]),
            x1=int(p.bbox[3]),
            y1=int(p.bbox[2]),
            area=int(p.num_pixels),
            score=float(p.intensity_max),
        )
        for p in regionprops(labels, intensity_image=values)
        if p.num_pixels >= min_area
    ]
    regions.sort(key=lambda r: (-r.score, r.y0, r.x0))
    return regions


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of ground-truth masks to the error maps' size.

    Masks are brought to the map size, never maps to the mask size: the map is the model's own
    resolution, and nearest sampling keeps a mask a mask (no blur, no threshold to choose). The
    sampling is centre-aligned like the frames' Pillow resize: output pixel ``i`` takes source
    pixel ``floor((i + 0.5) * H0 / H)``, computed in integers (exact; a centre falling exactly on a
    source pixel boundary takes the lower/right pixel, where Pillow's fixed point may take the other).

    Args:
        mask: (T, H0, W0) bool (or 0/1 integer) masks of one video.
        size: (H, W) of the error maps.

    Returns:
        (T, H, W) bool.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise DatasetError(f"resize_mask needs (T, H0, W0) masks of one video, got shape {mask.shape}")
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ConfigError(f"resize_mask: size must be (H, W) with H, W >= 1, got {size!r}")
    h0, w0 = mask.shape[1:]
    rows = ((2 * np.arange(h) + 1) * h0) // (2 * h)
    cols = ((2 * np.arange(w) + 1) * w0) // (2 * w)
    return mask.astype(bool)[:, rows[:, None], cols[None, :]]


# ---------------------------------------------------------------------------------------------
# pixel-level criterion


def _count_at_least(fraction: float, n: int) -> int:
    """The smallest count ``k >= 1`` with ``k / n >= fraction``."""
    return max(1, math.ceil(fraction * n - _CEIL_SLACK))


def _check_fraction(name: str, value: float) -> None:
    if not 0 < value <= 1:
        raise ConfigError(f"{name} must be a fraction in (0, 1], got {value!r}")


def _videos(
    errors: Sequence[np.ndarray] | None, masks: Sequence[np.ndarray], scored: Sequence[np.ndarray] | None
) -> list[tuple[np.ndarray | None, np.ndarray, np.ndarray]]:
    """``(error, mask, scored)`` per video, shapes checked; ``scored`` defaults to every frame."""
    if errors is not None and len(errors) != len(masks):
        raise DatasetError(f"{len(errors)} error-map videos but {len(masks)} mask videos; give one of each per video")
    if scored is not None and len(scored) != len(masks):
        raise DatasetError(f"{len(scored)} scored-frame arrays but {len(masks)} mask videos; give one per video")
    out = []
    for v, m in enumerate(masks):
        m = np.asarray(m)
        if m.ndim != 3 or m.dtype.kind not in "biu":
            raise DatasetError(f"video {v}: masks must be (T, H, W) bool, got {m.dtype} {m.shape}")
        e = None
        if errors is not None:
            e = np.asarray(errors[v])
            if e.shape != m.shape or e.dtype.kind != "f":
                raise DatasetError(
                    f"video {v}: error maps are {e.dtype} {e.shape} but masks {m.shape}; maps must be float and "
                    "the masks resized to the map size (vadbench.localization.resize_mask)"
                )
        s = np.ones(len(m), bool) if scored is None else np.asarray(scored[v])
        if s.shape != (len(m),) or s.dtype != bool:
            raise DatasetError(f"video {v}: scored must be ({len(m)},) bool, got {s.dtype} {s.shape}")
        out.append((e, m, s))
    return out


def _frame_critical_values(
    errors: Sequence[np.ndarray], masks: Sequence[np.ndarray], scored: Sequence[np.ndarray] | None, coverage: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(anomalous, normal)``: per scored frame, the largest ``t`` at which it is detected."""
    anomalous, normal = [], []
    for v, (e, m, s) in enumerate(_videos(errors, masks, scored)):
        for t in np.flatnonzero(s):
            frame = np.asarray(e[t], dtype=np.float64)
            if not np.isfinite(frame).all():
                raise DatasetError(
                    f"video {v}, frame {t}: the error map holds NaN or infinity in a scored frame; "
                    "maps must be finite wherever a frame is scored"
                )
            inside = frame[m[t].astype(bool, copy=False)]
            if inside.size == 0:
                normal.append(frame.max())
            else:
                k = _count_at_least(coverage, inside.size)
                anomalous.append(np.partition(inside, inside.size - k)[inside.size - k])
    return np.asarray(anomalous, dtype=np.float64), np.asarray(normal, dtype=np.float64)


def _rate_at(critical: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of ``critical`` values ``>= t`` for each ``t`` of ``thresholds``."""
    ordered = np.sort(critical)
    return (len(ordered) - np.searchsorted(ordered, thresholds, side="left")) / len(ordered)


def pixel_level_roc(
    errors: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    scored: Sequence[np.ndarray] | None = None,
    thresholds: Sequence[float] | np.ndarray | None = None,
    coverage: float = COVERAGE,
) -> dict[str, Any]:
    """The UCSD pixel-level ROC (module docstring): frame TPR at ``coverage`` of the mask against frame FPR.

    Args:
        errors: per video, (T, H, W) float error maps (float16 accepted).
        masks: per video, (T, H, W) bool ground truth, the same shape (see :func:`resize_mask`).
        scored: per video, (T,) bool; frames where it is False are left out (protocol edges).
        thresholds: pixel thresholds to evaluate; None: every frame's critical value plus one just
            above the largest, which is the exact curve from (0, 0) to (1, 1).
        coverage: fraction of an anomalous frame's mask that must be detected (papers: 0.4).

    Returns:
        ``auc`` and ``eer`` (None when the scored frames lack a class), ``fpr``, ``tpr`` and
        ``thresholds`` (descending; one point per threshold; empty when a class is missing),
        ``anomalous_frames``, ``normal_frames`` and ``coverage``.
    """
    _check_fraction("pixel_level_roc: coverage", coverage)
    anomalous, normal = _frame_critical_values(errors, masks, scored, coverage)
    result: dict[str, Any] = {
        "auc": None,
        "eer": None,
        "fpr": [],
        "tpr": [],
        "thresholds": [],
        "anomalous_frames": len(anomalous),
        "normal_frames": len(normal),
        "coverage": float(coverage),
    }
    if len(anomalous) == 0 or len(normal) == 0:
        return result
    if thresholds is None:
        critical = np.unique(np.concatenate([anomalous, normal]))[::-1]
        t = np.concatenate([[np.nextafter(critical[0], np.inf)], critical])
    else:
        t = np.unique(np.asarray(thresholds, dtype=np.float64))[::-1]
        if t.size == 0 or np.isnan(t).any():
            raise ConfigError(f"pixel_level_roc: thresholds must be non-empty and not NaN, got {thresholds!r}")
    fpr, tpr = _rate_at(normal, t), _rate_at(anomalous, t)
    closed_fpr = np.concatenate([[0.0], fpr, [1.0]])  # t = +inf and t = -inf
    closed_tpr = np.concatenate([[0.0], tpr, [1.0]])
    result.update(
        auc=float(np.trapezoid(closed_tpr, closed_fpr)),
        eer=eer_from_curve(closed_fpr, closed_tpr),
        fpr=fpr.tolist(),
        tpr=tpr.tolist(),
        thresholds=t.tolist(),
    )
    return result


# ---------------------------------------------------------------------------------------------
# region- and track-based criteria


def _box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(A, B) IoU of half-open boxes given as (N, 4) ``x0, y0, x1, y1``."""
    a, b = boxes_a[:, None, :], boxes_b[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _ground_truth(mask: np.ndarray, scored: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Per frame, the (G, 4) boxes of its 8-connected mask regions and their (G,) track labels
    (1..n), and the number n of tracks in the video.

    Tracks are the 26-connected components of the whole volume, so a track keeps its identity
    across frames that are not scored; regions of unscored frames are returned empty (a track
    seen only in unscored frames then holds no region and is not counted).
    """
    tracks, n_tracks = label(mask, connectivity=3, return_num=True)
    boxes, track_ids = [], []
    for t in range(len(mask)):
        if not scored[t] or not mask[t].any():
            boxes.append(np.zeros((0, 4), np.int64))
            track_ids.append(np.zeros(0, np.int64))
            continue
        regions = label(mask[t], connectivity=2)
        slices = ndimage.find_objects(regions)
        boxes.append(np.array([[sx.start, sy.start, sx.stop, sy.stop] for sy, sx in slices], np.int64))
        # every pixel of a 2-D region lies in one 3-D component: read it at the region's first pixel
        track_ids.append(np.array([tracks[t][sl][regions[sl] == k][0] for k, sl in enumerate(slices, 1)], np.int64))
    return boxes, track_ids, int(n_tracks)


def _area_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoidal area under the piecewise-linear (x, y) over [0, x_max], continued flat past its end."""
    x = np.concatenate([x, [max(x[-1], x_max)]])
    y = np.concatenate([y, [y[-1]]])
    x0, x1, y0, y1 = x[:-1], x[1:], y[:-1], y[1:]
    keep = (x1 > x0) & (x0 < x_max)
    x0, x1, y0, y1 = x0[keep], x1[keep], y0[keep], y1[keep]
    end = np.minimum(x1, x_max)
    y_end = y0 + (y1 - y0) * (end - x0) / (x1 - x0)
    return float(np.sum((end - x0) * (y0 + y_end) / 2))


def rbdc_tbdc(
    detections: Sequence[Sequence[Sequence[Region]]],
    masks: Sequence[np.ndarray],
    scored: Sequence[np.ndarray] | None = None,
    iou: float = IOU,
    track_fraction: float = TRACK_FRACTION,
    max_fp_per_frame: float = MAX_FP_PER_FRAME,
) -> dict[str, Any]:
    """Street Scene's region- and track-based detection criteria (module docstring).

    Args:
        detections: per video, per frame, the detected :class:`Region` objects with their scores
            (e.g. :func:`find_regions` of each frame's map), boxes in the masks' pixels.
        masks: per video, (T, H, W) bool ground truth.
        scored: per video, (T,) bool; frames where it is False are left out (protocol edges).
        iou: box IoU at which a detection hits a ground-truth region (paper: 0.1).
        track_fraction: fraction of a track's regions that must be detected (paper: 0.1).
        max_fp_per_frame: upper end of the false-positives-per-frame range integrated (paper: 1).

    Returns:
        ``rbdc`` and ``tbdc`` (normalised areas; None without ground-truth regions), the curves
        ``fpr``, ``rbdc_curve``, ``tbdc_curve`` and their ``thresholds`` (from just above the top
        score, the (0, 0) point, down to the lowest; empty without ground-truth regions), and the
        counts ``gt_regions``, ``gt_tracks``, ``detections``, ``false_positives``, ``frames``.
    """
    _check_fraction("rbdc_tbdc: iou", iou)
    _check_fraction("rbdc_tbdc: track_fraction", track_fraction)
    if not (max_fp_per_frame > 0 and math.isfinite(max_fp_per_frame)):
        raise ConfigError(f"rbdc_tbdc: max_fp_per_frame must be a positive number, got {max_fp_per_frame!r}")
    if len(detections) != len(masks):
        raise DatasetError(f"{len(detections)} detection videos but {len(masks)} mask videos; give one of each")
    region_best: list[np.ndarray] = []  # per GT region, the top score of a detection hitting it (-inf: none)
    region_track: list[np.ndarray] = []
    all_scores: list[float] = []
    fp_scores: list[float] = []
    frames = 0
    track_offset = 0
    for v, (_, mask, counted) in enumerate(_videos(None, masks, scored)):
        dets = detections[v]
        if len(dets) != len(mask):
            raise DatasetError(f"video {v}: detections for {len(dets)} frames but the mask has {len(mask)} frames")
        gt_boxes, gt_tracks, n_tracks = _ground_truth(mask.astype(bool, copy=False), counted)
        frames += int(counted.sum())
        for t in np.flatnonzero(counted):
            frame_dets = list(dets[t])
            boxes = np.array([[d.x0, d.y0, d.x1, d.y1] for d in frame_dets], np.int64).reshape(-1, 4)
            scores = np.array([d.score for d in frame_dets], np.float64)
            if not np.isfinite(scores).all():
                raise DatasetError(
                    f"video {v}, frame {t}: a detection's score is NaN or infinite; scores must be finite"
                )
            hits = _box_iou(boxes, gt_boxes[t]) >= iou  # (D, G)
            all_scores.extend(scores.tolist())
            fp_scores.extend(scores[~hits.any(axis=1)].tolist())
            region_best.append(np.where(hits, scores[:, None], -np.inf).max(axis=0, initial=-np.inf))
            region_track.append(gt_tracks[t] + track_offset)
        track_offset += n_tracks
    best = np.concatenate(region_best) if region_best else np.zeros(0)
    track_of = np.concatenate(region_track) if region_track else np.zeros(0, np.int64)
    result: dict[str, Any] = {
        "rbdc": None,
        "tbdc": None,
        "fpr": [],
        "rbdc_curve": [],
        "tbdc_curve": [],
        "thresholds": [],
        "gt_regions": int(len(best)),
        "gt_tracks": int(len(np.unique(track_of))),
        "detections": len(all_scores),
        "false_positives": len(fp_scores),
        "frames": frames,
        "iou": float(iou),
        "track_fraction": float(track_fraction),
        "max_fp_per_frame": float(max_fp_per_frame),
    }
    if len(best) == 0:
        return result
    # a track is detected at s iff its k-th best region value is >= s
    order = np.lexsort((-best, track_of))
    _, starts, counts = np.unique(track_of[order], return_index=True, return_counts=True)
    track_best = np.array(
        [best[order][a + _count_at_least(track_fraction, n) - 1] for a, n in zip(starts, counts)], np.float64
    )
    scores = np.unique(np.asarray(all_scores, np.float64))[::-1]
    top = scores[0] if len(scores) else 0.0
    levels = np.concatenate([[np.nextafter(top, np.inf)], scores])  # the first keeps no detection: (0, 0)
    fp_sorted = np.sort(np.asarray(fp_scores, np.float64))
    fpr = (len(fp_sorted) - np.searchsorted(fp_sorted, levels, side="left")) / frames
    rbdc_curve, tbdc_curve = _rate_at(best, levels), _rate_at(track_best, levels)
    result.update(
        rbdc=_area_to(fpr, rbdc_curve, max_fp_per_frame) / max_fp_per_frame,
        tbdc=_area_to(fpr, tbdc_curve, max_fp_per_frame) / max_fp_per_frame,
        fpr=fpr.tolist(),
        rbdc_curve=rbdc_curve.tolist(),
        tbdc_curve=tbdc_curve.tolist(),
        thresholds=levels.tolist(),
    )
    return result


def localization_metrics(
    errors: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    detections: Sequence[Sequence[Sequence[Region]]],
    scored: Sequence[np.ndarray] | None = None,
    *,
    coverage: float = COVERAGE,
    iou: float = IOU,
    track_fraction: float = TRACK_FRACTION,
    max_fp_per_frame: float = MAX_FP_PER_FRAME,
) -> dict[str, Any]:
    """The localisation numbers of a run: pixel-level AUC and EER, RBDC and TBDC, with their counts.

    Args:
        errors: per video, (T, H, W) float error maps.
        masks: per video, (T, H, W) bool ground truth at the maps' size (:func:`resize_mask`).
        detections: per video, per frame, the :class:`Region` objects found in the maps.
        scored: per video, (T,) bool frames that count (default: all).
        coverage, iou, track_fraction, max_fp_per_frame: the criteria's parameters (papers' defaults).

    Returns:
        ``pixel_auc``, ``pixel_eer``, ``rbdc``, ``tbdc`` (each None where undefined), the counts
        ``anomalous_frames``, ``normal_frames``, ``gt_regions``, ``gt_tracks``, ``detections``,
        ``false_positives``, ``frames``, and the ``criteria`` they were computed under.
    """
    pixel = pixel_level_roc(errors, masks, scored, coverage=coverage)
    region = rbdc_tbdc(detections, masks, scored, iou, track_fraction, max_fp_per_frame)
    return {
        "pixel_auc": pixel["auc"],
        "pixel_eer": pixel["eer"],
        "rbdc": region["rbdc"],
        "tbdc": region["tbdc"],
        "anomalous_frames": pixel["anomalous_frames"],
        "normal_frames": pixel["normal_frames"],
        "gt_regions": region["gt_regions"],
        "gt_tracks": region["gt_tracks"],
        "detections": region["detections"],
        "false_positives": region["false_positives"],
        "frames": region["frames"],
        "criteria": {
            "coverage": float(coverage),
            "iou": float(iou),
            "track_fraction": float(track_fraction),
            "max_fp_per_frame": float(max_fp_per_frame),
            "iou_kind": "box",
            "tracks": "26-connected space-time components of the mask",
        },
    }
