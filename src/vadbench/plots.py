"""Pictures of one seed's scores (the ``plots`` rule): what an AUC cannot show.

One PNG per test video (the protocol's score per frame, unscored frames greyed, ground-truth
anomalous intervals shaded) and the micro ROC curve, all drawn with matplotlib's headless Agg
backend from exactly the scores the metrics used (:func:`vadbench.metrics.apply_protocol`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vadbench.metrics import apply_protocol, concat_scored, roc_curve  # noqa: E402
from vadbench.protocol import Protocol  # noqa: E402


def intervals(mask: np.ndarray) -> list[tuple[int, int]]:
    """0-based inclusive ``(start, end)`` runs of True in a 1-D mask."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def plot_video(
    name: str, scores: np.ndarray, scored: np.ndarray, label: np.ndarray, auc: float | None, path: Path
) -> None:
    """Score curve of one video with its anomalous frames shaded."""
    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
    frames = np.arange(len(scores))
    for i, (start, end) in enumerate(intervals(label == 1)):
        ax.axvspan(
            start - 0.5,
            end + 0.5,
            color="tab:red",
            alpha=0.2,
            lw=0,
            label="anomalous (ground truth)" if i == 0 else None,
        )
    for i, (start, end) in enumerate(intervals(~scored)):
        ax.axvspan(start - 0.5, end + 0.5, color="0.85", lw=0, label="not scored" if i == 0 else None)
    ax.plot(frames, scores, color="tab:blue", lw=1.2, label="anomaly score")
    ax.set_xlim(-0.5, len(scores) - 0.5)
    ax.set_xlabel("frame (0-based)")
    ax.set_ylabel("score")
    ax.set_title(f"video {name}" + (f": AUC {auc:.4f}" if auc is not None else ": single class, no AUC"))
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_roc(y: np.ndarray, s: np.ndarray, auc: float, title: str, path: Path) -> None:
    """The micro ROC, from the very curve the AUC integrates (:func:`vadbench.metrics.roc_curve`),
    against the chance diagonal; drawn with matplotlib alone (scikit-learn's RocCurveDisplay
    cost the job 1.2 s of imports)."""
    fpr, tpr, _ = roc_curve(y, s)
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=100)
    ax.plot(fpr, tpr, color="tab:blue", label=f"micro AUC {auc:.4f}")
    ax.plot((0, 1), (0, 1), color="k", linestyle="--", label="chance level (AUC 0.5)")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
    ax.set_xlabel("false positive rate (anomaly = positive)")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_seed(saved: dict[str, Any], metrics: dict[str, Any], out_dir: str | Path, title: str = "") -> list[Path]:
    """Write ``video_<name>.png`` per test video and ``roc.png`` into ``out_dir``; returns the paths.

    Args:
        saved: a loaded score file (:func:`vadbench.scorefiles.load_scores`).
        metrics: its metrics record (``auc.json``), for the per-video AUCs in the titles.
        out_dir: created if missing.
        title: prefix of the ROC title (dataset, variant, seed).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    protocol = Protocol.from_dict(metrics["protocol"])
    scores, scored = apply_protocol(saved["raw"], saved["label"], protocol)
    written = []
    for v in sorted(scores):
        path = out / f"video_{v}.png"
        plot_video(v, scores[v], scored[v], saved["label"][v], metrics["per_video_auc"].get(v), path)
        written.append(path)
    s, y = concat_scored(scores, saved["label"], scored)
    path = out / "roc.png"
    plot_roc(y, s, metrics["micro_auc"], f"{title} ({protocol.name} protocol)".strip(), path)
    written.append(path)
    if "memory_usage" in saved:
        path = out / "memory_usage.png"
        plot_memory_usage(saved["memory_usage"], title, path)
        written.append(path)
    return written


def plot_memory_usage(counts: np.ndarray, title: str, path: Path) -> None:
    """How many test queries chose each memory item as their nearest (MNAD): unused items are
    memory the model paid for and never reads."""
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.bar(np.arange(len(counts)), counts, color="tab:purple")
    ax.set_xlabel("memory item")
    ax.set_ylabel("test queries (top-1)")
    ax.set_xticks(np.arange(len(counts)))
    ax.set_title(f"{title}: memory usage over the test set".strip(), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
