"""Frame-level metrics of per-frame scores under a :class:`~vadbench.protocol.Protocol`.

Every metric is computed on the protocol's scores (anomaly = positive class) with numpy, by
scikit-learn's algorithms for ``roc_curve``, ``roc_auc_score`` and ``average_precision_score``
(the same operations in the same order, so the same floats bit for bit; tests/test_import_weight.py
compares them with scikit-learn). Importing scikit-learn cost an ``auc`` job 1.2-1.8 s of start-up,
and its input checks made the 1000 bootstrap AUCs 4x slower than the computation itself:

* micro AUC: every scored frame of every video concatenated, one ROC (the papers' headline
  figure); also on the un-normalised scores (``micro_auc_raw``), which shows how much the
  per-video normalisation, which peeks at each test video's own range, contributes;
* macro AUC: mean of per-video AUCs over the videos that hold both classes, the skipped
  (single-class) videos listed, since AUC is undefined for them;
* EER (where the false-positive and false-negative rates cross) and AUPR (average precision);
* a 95% bootstrap interval of the micro AUC that resamples whole test videos, because frames of
  one video are strongly correlated and resampling frames would give a falsely narrow interval.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from vadbench.errors import ConfigError, DatasetError
from vadbench.protocol import Protocol

BOOTSTRAP_SAMPLES = 1000


def _threshold_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(false positives, true positives, threshold)`` at each distinct score, highest first.

    Args:
        y: (N,) 0/1 labels, 1 = anomalous.
        s: (N,) finite scores, higher = more anomalous.

    Returns:
        Three (K,) arrays for the K distinct scores: the counts (float64, as scikit-learn keeps
        them) of frames scored at or above each threshold, and the thresholds in ``s``'s dtype.

    Raises:
        DatasetError: ``y`` holds one class only.
    """
    y, s = np.asarray(y), np.asarray(s)
    order = np.argsort(s, kind="stable")[::-1]  # ties stay together; their order changes no count
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # the last frame of each run of equal scores
    tps = np.cumsum(y == 1, dtype=np.float64)[last]
    fps = 1 + last.astype(np.float64) - tps
    if len(tps) == 0 or tps[-1] == 0 or fps[-1] == 0:
        positives, negatives = (int(tps[-1]), int(fps[-1])) if len(tps) else (0, 0)
        raise DatasetError(f"{positives} anomalous and {negatives} normal frames: a ROC needs both classes")
    return fps, tps, s[last]


def roc_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of the ROC, as ``sklearn.metrics.roc_curve`` returns them.

    Collinear points are dropped (scikit-learn's ``drop_intermediate=True``); the curve starts
    at (0, 0) with threshold ``inf``.

    Args:
        y: (N,) 0/1 labels holding both classes, 1 = anomalous.
        s: (N,) finite scores, higher = more anomalous.

    Returns:
        Three (K + 1,) float64 arrays; fpr and tpr rise from 0 to 1.

    Raises:
        DatasetError: ``y`` holds one class only.
    """
    fps, tps, thresholds = _threshold_counts(y, s)
    if len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    thresholds = np.r_[np.inf, thresholds.astype(np.float64)]
    return fps / fps[-1], tps / tps[-1], thresholds


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC by the trapezoidal rule (``sklearn.metrics.roc_auc_score``); ties count half.

    Args:
        y: (N,) 0/1 labels holding both classes, 1 = anomalous.
        s: (N,) finite scores, higher = more anomalous.

    Example:
        >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    fpr, tpr, _ = roc_curve(y, s)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the precision-recall step curve (``sklearn.metrics.average_precision_score``).

    Args:
        y: (N,) 0/1 labels holding both classes, 1 = anomalous.
        s: (N,) finite scores, higher = more anomalous.
    """
    fps, tps, _ = _threshold_counts(y, s)
    precision = np.r_[(tps / (tps + fps))[::-1], 1.0]
    recall = np.r_[(tps / tps[-1])[::-1], 0.0]
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))  # max: rounding can give -0.0


def concat_scored(
    scores: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    scored: dict[str, np.ndarray],
    videos: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, labels)`` of the scored frames of ``videos`` (default: all, sorted), concatenated."""
    videos = sorted(scores) if videos is None else videos
    s = np.concatenate([scores[v][scored[v]] for v in videos])
    y = np.concatenate([labels[v][scored[v]] for v in videos])
    return s, y


def micro_auc(scores: dict[str, np.ndarray], labels: dict[str, np.ndarray], scored: dict[str, np.ndarray]) -> float:
    """AUC over the scored frames of all videos concatenated (anomaly = positive class)."""
    s, y = concat_scored(scores, labels, scored)
    return roc_auc(y, s)


def macro_auc(
    scores: dict[str, np.ndarray], labels: dict[str, np.ndarray], scored: dict[str, np.ndarray]
) -> tuple[float | None, dict[str, float], list[str]]:
    """``(mean AUC, per-video AUC, skipped videos)`` over videos holding both classes."""
    per_video, skipped = {}, []
    for v in sorted(scores):
        y = labels[v][scored[v]]
        if len(y) == 0 or y.min() == y.max():
            skipped.append(v)
            continue
        per_video[v] = roc_auc(y, scores[v][scored[v]])
    mean = float(np.mean(list(per_video.values()))) if per_video else None
    return mean, per_video, skipped


def equal_error_rate(y: np.ndarray, s: np.ndarray) -> float:
    """The rate where the false-positive and false-negative rates are equal, interpolated
    linearly between the two ROC points around the crossing."""
    fpr, tpr, _ = roc_curve(y, s)
    return eer_from_curve(fpr, tpr)


def eer_from_curve(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Where FPR = FNR on a ROC curve from (0, 0) to (1, 1), interpolated linearly between the
    two points around the crossing."""
    fnr = 1 - tpr
    i = int(np.argmax(fnr <= fpr))  # first point past the crossing (fnr falls, fpr rises)
    if i == 0:
        return float(fpr[0])
    d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def bootstrap_micro_auc(
    scores: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    scored: dict[str, np.ndarray],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """95% percentile interval of the micro AUC over ``samples`` resamplings of whole videos.

    Resamples that happen to hold a single class are redrawn from the same stream, so the
    interval is a deterministic function of (scores, ``samples``, ``seed``).
    """
    videos = sorted(scores)
    per_video = [concat_scored(scores, labels, scored, [v]) for v in videos]
    rng = np.random.default_rng(seed)
    aucs: list[float] = []
    attempts = 0
    while len(aucs) < samples and attempts < 20 * samples:
        attempts += 1
        pick = rng.integers(0, len(videos), len(videos))
        y = np.concatenate([per_video[i][1] for i in pick])
        if y.min() == y.max():
            continue
        aucs.append(roc_auc(y, np.concatenate([per_video[i][0] for i in pick])))
    if not aucs:
        return {"low": None, "high": None, "samples": 0, "seed": seed, "unit": "video"}
    low, high = np.percentile(aucs, [2.5, 97.5])
    return {"low": float(low), "high": float(high), "samples": len(aucs), "seed": seed, "unit": "video"}


def apply_protocol(
    raw: dict[str, np.ndarray], labels: dict[str, np.ndarray], protocol: Protocol
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(scores, scored)`` per video after :meth:`Protocol.apply`, lengths checked against labels."""
    missing = sorted(set(raw) ^ set(labels))
    if missing:
        raise DatasetError(
            f"scores and labels name different videos: only in scores {sorted(set(raw) - set(labels))}, "
            f"only in labels {sorted(set(labels) - set(raw))}"
        )
    scores, scored = {}, {}
    for v in sorted(raw):
        if len(raw[v]) != len(labels[v]):
            raise DatasetError(f"video {v}: {len(raw[v])} scores but {len(labels[v])} labels; they must be equal")
        if np.isinf(raw[v]).any():
            raise DatasetError(
                f"video {v}: infinite score at frame {int(np.flatnonzero(np.isinf(raw[v]))[0])}; "
                "scores must be finite, or NaN for a frame that was not scored"
            )
        scores[v], scored[v] = protocol.apply(raw[v])
        if not np.isfinite(scores[v][scored[v]]).all():
            raise DatasetError(
                f"video {v}: its scores span {np.nanmin(raw[v]):.3g}..{np.nanmax(raw[v]):.3g}, too wide for the "
                "protocol's smoothing and normalisation in float64; rescale the scores (e.g. divide by their maximum)"
            )
    return scores, scored


def evaluate(
    raw: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    protocol: Protocol,
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
) -> dict[str, Any]:
    """Every metric of raw per-frame scores (NaN = no clip landed) under ``protocol``.

    Args:
        raw: per video, (T,) raw errors as the ``score`` rule saves them.
        labels: per video, (T,) 0/1 frame labels.
        protocol: edges, smoothing and normalisation applied before any metric.
        bootstrap_samples: resamplings for the micro-AUC interval (0 skips it).
    """
    if not raw:
        raise DatasetError("no videos to evaluate; the score file holds none")
    if (
        isinstance(bootstrap_samples, bool)
        or not isinstance(bootstrap_samples, (int, np.integer))
        or bootstrap_samples < 0
    ):
        raise ConfigError(f"bootstrap_samples must be an integer >= 0 (0: no interval), got {bootstrap_samples!r}")
    for v, given in labels.items():
        label = np.asarray(given)
        if label.ndim != 1 or label.dtype.kind not in "biuf" or not np.isin(label, (0, 1)).all():
            raise DatasetError(
                f"video {v}: labels must be a 1-D array of 0 (normal) and 1 (anomalous), got "
                f"{label.dtype} {label.shape} holding {np.unique(label)[:5].tolist()}"
            )
    labels = {v: np.asarray(label).astype(np.uint8) for v, label in labels.items()}
    scores, scored = apply_protocol(raw, labels, protocol)
    unnormalised, _ = apply_protocol(raw, labels, replace(protocol, normalisation="none"))
    s, y = concat_scored(scores, labels, scored)
    if len(y) == 0 or y.min() == y.max():
        raise DatasetError(
            f"the scored frames hold only {'anomalous' if len(y) and y[0] else 'normal'} frames "
            f"({len(y)} frames); an AUC needs both classes. Check the label file."
        )
    macro, per_video, skipped = macro_auc(scores, labels, scored)
    result: dict[str, Any] = {
        "micro_auc": roc_auc(y, s),
        "micro_auc_ci95": bootstrap_micro_auc(scores, labels, scored, bootstrap_samples) if bootstrap_samples else None,
        "micro_auc_raw": micro_auc(unnormalised, labels, scored),
        "macro_auc": macro,
        "macro_skipped_videos": skipped,
        "eer": equal_error_rate(y, s),
        "aupr": average_precision(y, s),
        "per_video_auc": per_video,
        "videos": len(scores),
        "frames_scored": int(len(y)),
        "frames_total": int(sum(len(label) for label in labels.values())),
        "anomalous_frames_scored": int(y.sum()),
        "protocol": protocol.to_dict(),
    }
    return result
