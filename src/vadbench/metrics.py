"""Frame-level AUCs of saved scores (the ``auc`` rule), computed with scikit-learn.

* micro AUC: every scored test frame of every video concatenated, one ROC (the papers'
  headline figure), on the protocol's normalised scores and on the raw errors;
* macro AUC: mean of per-video AUCs over the videos that hold both classes, with the
  skipped (single-class) videos listed, since AUC is undefined for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score


def micro_auc(scores: dict[str, np.ndarray], labels: dict[str, np.ndarray], scored: dict[str, np.ndarray]) -> float:
    """AUC over the scored frames of all videos concatenated (anomaly = positive class)."""
    videos = sorted(scores)
    s = np.concatenate([scores[v][scored[v]] for v in videos])
    y = np.concatenate([labels[v][scored[v]] for v in videos])
    return float(roc_auc_score(y, s))


def macro_auc(scores: dict[str, np.ndarray], labels: dict[str, np.ndarray],
              scored: dict[str, np.ndarray]) -> tuple[float | None, dict[str, float], list[str]]:
    """``(mean AUC, per-video AUC, skipped videos)`` over videos holding both classes."""
    per_video, skipped = {}, []
    for v in sorted(scores):
        y = labels[v][scored[v]]
        if y.min() == y.max():
            skipped.append(v)
            continue
        per_video[v] = float(roc_auc_score(y, scores[v][scored[v]]))
    mean = float(np.mean(list(per_video.values()))) if per_video else None
    return mean, per_video, skipped


def evaluate(saved: dict[str, Any]) -> dict[str, Any]:
    """All metrics of a loaded scores file (:func:`vadbench.scoring.load_scores`)."""
    scored, labels = saved["scored"], saved["label"]
    macro, per_video, skipped = macro_auc(saved["norm"], labels, scored)
    n_scored = int(sum(m.sum() for m in scored.values()))
    return {
        "micro_auc": micro_auc(saved["norm"], labels, scored),
        "micro_auc_raw": micro_auc(saved["raw"], labels, scored),
        "macro_auc": macro,
        "macro_skipped_videos": skipped,
        "per_video_auc": per_video,
        "frames_scored": n_scored,
        "frames_total": int(sum(len(l) for l in labels.values())),
        "anomalous_frames_scored": int(sum(labels[v][scored[v]].sum() for v in labels)),
        "protocol": saved["protocol"].to_dict(),
    }
