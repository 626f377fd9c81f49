"""Recompute a seed's micro AUC from its saved scores without vadbench or scikit-learn.

The AUC is the Mann-Whitney U statistic, U / (n_pos * n_neg), from mid-ranks (ties count
half), and the protocol steps are re-implemented with plain numpy. Used by the tests and, for
real runs, from the command line:

    .venv/bin/python tests/independent_auc.py results/ped2/*/seed*

prints, per seed folder, the recorded and the recomputed micro AUC and their difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata


def mann_whitney_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    ranks = rankdata(scores)  # average ranks for ties
    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def nearest_fill(raw: np.ndarray) -> np.ndarray:
    out = raw.copy()
    known = np.flatnonzero(~np.isnan(raw))
    for i in np.flatnonzero(np.isnan(raw)):
        distance = np.abs(known - i)
        out[i] = raw[known[np.argmin(distance)]]  # argmin takes the earlier frame on a tie
    return out


def micro_auc_from_scores(path: Path) -> float:
    data = np.load(path)
    protocol = json.loads(str(data["protocol"]))
    if protocol.get("smoothing_sigma", 0):
        raise NotImplementedError("this check covers protocols without smoothing")
    all_scores, all_labels = [], []
    for video in data["videos"]:
        raw, label = data[f"raw/{video}"].astype(float), data[f"label/{video}"]
        if protocol["edges"] == "pad":
            raw = nearest_fill(raw)
        keep = ~np.isnan(raw)
        values = raw[keep]
        if protocol["normalisation"] == "per_video_minmax":
            span = values.max() - values.min()
            values = (values - values.min()) / span if span > 0 else np.zeros_like(values)
        all_scores.append(values)
        all_labels.append(label[keep])
    return mann_whitney_auc(np.concatenate(all_labels), np.concatenate(all_scores))


def check_seed_dir(seed_dir: Path) -> tuple[float, float]:
    """(micro AUC recorded in auc.json, micro AUC recomputed from scores.npz)."""
    recorded = json.loads((Path(seed_dir) / "auc.json").read_text())["micro_auc"]
    return recorded, micro_auc_from_scores(Path(seed_dir) / "scores.npz")


if __name__ == "__main__":
    worst = 0.0
    for folder in sys.argv[1:]:
        recorded, recomputed = check_seed_dir(Path(folder))
        worst = max(worst, abs(recorded - recomputed))
        print(f"{folder}: recorded {recorded:.12f} recomputed {recomputed:.12f} diff {abs(recorded - recomputed):.2e}")
    print(f"largest difference {worst:.2e}")
    sys.exit(0 if worst < 1e-9 else 1)
