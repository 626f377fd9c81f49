"""Combine per-seed AUC records into one result per (dataset, variant) (the ``aggregate`` rule)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from vadbench.fileio import read_json

SUMMARISED = ("micro_auc", "micro_auc_raw", "macro_auc")


def git_commit(repo_dir: str | Path = ".") -> str | None:
    """The checked-out commit (with ``-dirty`` if the tree has changes), or None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_dir,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def mean_std(values: list[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (ddof=1; 0 for a single seed)."""
    if not values:
        return {"mean": None, "std": None}
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def aggregate_seeds(auc_paths: list[str | Path], seeds: list[int], run: dict[str, Any],
                    versions: dict[str, str], commit: str | None) -> dict[str, Any]:
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
        values = [r[key] for r in records if r[key] is not None]
        result[key] = mean_std(values)
    result["per_seed"] = [
        {"seed": s, **{k: r[k] for k in (*SUMMARISED, "macro_skipped_videos", "frames_scored", "mlflow_run_id") if k in r}}
        for s, r in zip(seeds, records)
    ]
    result["protocol"] = records[0]["protocol"]
    result["preset"] = {"name": run["preset_name"], **run["preset"]}
    result["model_params"] = run["model_params"]
    result["versions"] = versions
    result["git_commit"] = commit
    return result
