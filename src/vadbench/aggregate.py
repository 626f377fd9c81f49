"""Combine per-seed AUC records into one result per (dataset, variant) (the ``aggregate`` rule)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from vadbench.fileio import read_json
from vadbench.logs import get_logger

log = get_logger("aggregate")

SUMMARISED = ("micro_auc", "micro_auc_raw", "macro_auc", "eer", "aupr", "pixel_auc", "pixel_eer", "rbdc", "tbdc")


def versions() -> dict[str, str]:
    """The vadbench, torch and Python versions a result is recorded with.

    torch's is read from its installed package metadata (the same string as ``torch.__version__``
    for a pip or conda install), so that the aggregate job does not import torch (2 s) for it.
    """
    import importlib.metadata
    import platform

    import vadbench

    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        import torch  # a build without metadata (a source tree on sys.path)

        torch_version = str(torch.__version__)
    return {"vadbench": vadbench.__version__, "torch": torch_version, "python": platform.python_version()}


def git_commit(repo_dir: str | Path = ".") -> str | None:
    """The checked-out commit (with ``-dirty`` if the tree has changes), or None outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo_dir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def mean_std(values: list[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (ddof=1; 0 for a single seed)."""
    if not values:
        return {"mean": None, "std": None}
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def trained_precision(seeds: list[int], records: list[dict[str, Any]]) -> str | None:
    """The precision the seeds were trained in (``amp: auto`` resolves per machine): one value,
    or, if seeds ran on different hardware, which seeds used which, e.g. ``"bf16 (seeds 0, 1),
    none (seed 2)"``; None if no seed recorded one (older runs)."""
    by_amp: dict[str, list[int]] = {}
    for seed, record in zip(seeds, records):
        if record.get("amp") is not None:
            by_amp.setdefault(record["amp"], []).append(seed)
    if len(by_amp) <= 1:
        return next(iter(by_amp), None)
    log.warning("seeds were trained in different precisions (amp auto on different hardware): %s", by_amp)

    def seeds_text(s: list[int]) -> str:
        return f"seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}"

    return ", ".join(f"{amp} ({seeds_text(s)})" for amp, s in sorted(by_amp.items()))


def aggregate_seeds(
    auc_paths: list[str | Path], seeds: list[int], run: dict[str, Any], versions: dict[str, str], commit: str | None
) -> dict[str, Any]:
    """One record from the per-seed ``auc.json`` files (same order as ``seeds``)."""
    records = [read_json(p) for p in auc_paths]
    protocols = {str(r["protocol"]) for r in records}
    if len(protocols) != 1:
        raise ValueError(f"seeds were scored under different protocols: {sorted(protocols)}")
    result: dict[str, Any] = {
        "dataset": run["dataset"],
        "variant": run["variant"],
        "model": run["model"],
        "seeds": list(seeds),
        "n_seeds": len(seeds),
    }
    for key in SUMMARISED:
        values = [r[key] for r in records if r.get(key) is not None]
        result[key] = mean_std(values)
    result["per_seed"] = [
        {
            "seed": s,
            **{
                k: r.get(k)
                for k in (
                    *SUMMARISED,
                    "micro_auc_ci95",
                    "macro_skipped_videos",
                    "frames_scored",
                    "per_video_auc",
                    "mlflow_run_id",
                    "amp",
                )
            },
            **({"stage1_mlflow_run_ids": r["stage1_mlflow_run_ids"]} if r.get("stage1_mlflow_run_ids") else {}),
        }
        for s, r in zip(seeds, records)
    ]
    result["protocol"] = records[0]["protocol"]
    result["amp"] = trained_precision(seeds, records)
    result["preset"] = {"name": run["preset_name"], **run["preset"]}
    result["model_params"] = run["model_params"]
    result["versions"] = versions
    result["git_commit"] = commit
    return result


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _fmt_stat(stat: dict[str, float | None]) -> str:
    return "" if stat["mean"] is None else f"{stat['mean']:.4f} +/- {stat['std']:.4f}"


def seed_table(result: dict[str, Any]) -> list[dict[str, str]]:
    """One row per seed and a mean +/- std row: the metrics and each test video's AUC."""
    videos = sorted({v for r in result["per_seed"] for v in (r.get("per_video_auc") or {})})
    rows = []
    for r in result["per_seed"]:
        ci = r.get("micro_auc_ci95") or {}
        row = {
            "seed": str(r["seed"]),
            **{k: _fmt(r.get(k)) for k in SUMMARISED},
            "micro_auc_ci95": f"{_fmt(ci.get('low'))}-{_fmt(ci.get('high'))}" if ci.get("low") is not None else "",
        }
        row.update({f"video_{v}": _fmt((r.get("per_video_auc") or {}).get(v)) for v in videos})
        rows.append(row)
    mean = {"seed": "mean +/- std", **{k: _fmt_stat(result[k]) for k in SUMMARISED}, "micro_auc_ci95": ""}
    for v in videos:
        values = [r["per_video_auc"][v] for r in result["per_seed"] if v in (r.get("per_video_auc") or {})]
        mean[f"video_{v}"] = _fmt_stat(mean_std(values))
    rows.append(mean)
    return rows
