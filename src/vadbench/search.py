"""The table of a configuration search, and its choice, from finished seed runs.

A search (``config/search/*.yaml``) trains seed 0 of every configuration, chooses per model the
one with the lowest final validation loss (held-out *training* videos), then trains more seeds of
the chosen one. This module reads what the runs wrote (``model.pt``: preset, loss history;
``auc.json``: test metrics; the ``train`` benchmark file: minutes) and applies that rule, so the
choice is reproducible from the files and never reads a test label: the AUC column is shown, not
used.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vadbench.errors import DatasetError


@dataclass(frozen=True)
class SearchEntry:
    """One trained seed of one configuration."""

    dataset: str
    variant: str
    seed: int
    group: str  # configurations compared with each other: the same model on the same clip length
    preset: dict[str, Any]
    val_loss: float
    micro_auc: float | None
    train_minutes: float | None


def _group(config: dict[str, Any]) -> str:
    """MNAD reconstruction (1 frame) and prediction (5 frames) are different tasks of one model."""
    return f"{config['model']} (clip {config['preset']['clip_length']})"


def read_entry(run_dir: str | Path) -> SearchEntry:
    """The entry of ``results/<dataset>/<variant>/seed<s>``: needs ``model.pt`` with a validation
    loss (a preset with ``validation_videos``); ``auc.json`` and the benchmark file are optional."""
    from vadbench.training import load_saved

    run_dir = Path(run_dir)
    if not (run_dir / "model.pt").is_file():
        raise DatasetError(f"{run_dir / 'model.pt'}: no such file; the run has not finished training (leave it out)")
    saved = load_saved(run_dir / "model.pt", what="model")
    config, history = saved["config"], saved["history"]
    if not history or "val_loss" not in history[-1]:
        raise DatasetError(
            f"{run_dir / 'model.pt'}: no validation loss in its history; a search compares presets with "
            "validation_videos > 0 (the config/search files set it)"
        )
    auc_path = run_dir / "auc.json"
    micro_auc = json.loads(auc_path.read_text())["micro_auc"] if auc_path.exists() else None
    bench = run_dir.parent.parent.parent / "benchmarks" / config["dataset"] / config["variant"] / run_dir.name
    minutes = None
    if (bench / "train.tsv").exists():
        with open(bench / "train.tsv", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        minutes = float(rows[-1]["s"]) / 60 if rows else None
    return SearchEntry(
        dataset=config["dataset"],
        variant=config["variant"],
        seed=int(config["seed"]),
        group=_group(config),
        preset={**config["preset"], "amp": saved.get("amp", config["preset"].get("amp", "none"))},  # as trained
        val_loss=float(history[-1]["val_loss"]),
        micro_auc=micro_auc,
        train_minutes=minutes,
    )


def choose(entries: list[SearchEntry], seed: int = 0) -> dict[str, str]:
    """Per group, the variant whose ``seed`` run has the lowest final validation loss."""
    best: dict[str, SearchEntry] = {}
    for e in entries:
        if e.seed == seed and not math.isnan(e.val_loss):
            if e.group not in best or e.val_loss < best[e.group].val_loss:
                best[e.group] = e
    return {g: e.variant for g, e in best.items()}


def _setting(preset: dict[str, Any]) -> str:
    h, w = preset["frame_size"]
    widths = "-".join(str(x) for x in preset["widths"])
    return f"{h}x{w}, widths {widths}, {preset['epochs']} epochs, batch {preset['batch_size']}, {preset.get('amp', 'none')}"


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} +/- {statistics.stdev(values):.4f}"


def _range(values: list[float]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo:.1f}" if round(lo, 1) == round(hi, 1) else f"{lo:.1f}-{hi:.1f}"


def search_table(entries: list[SearchEntry], seed: int = 0) -> str:
    """Markdown: one row per configuration (its seed-``seed`` validation loss decides), every seed's
    test AUC beside it, the chosen one marked."""
    chosen = choose(entries, seed)
    by_variant: dict[tuple[str, str], list[SearchEntry]] = {}
    for e in entries:
        by_variant.setdefault((e.group, e.variant), []).append(e)
    lines = [
        f"| model | configuration | setting | val loss (seed {seed}) | test micro AUC (seed {seed}) "
        "| seeds | test micro AUC (all seeds) | minutes per model | chosen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (group, variant), runs in sorted(by_variant.items()):
        runs.sort(key=lambda e: e.seed)
        first = next((e for e in runs if e.seed == seed), None)
        aucs = [e.micro_auc for e in runs if e.micro_auc is not None]
        minutes = [e.train_minutes for e in runs if e.train_minutes is not None]
        lines.append(
            "| "
            + " | ".join(
                [
                    group,
                    variant,
                    _setting(runs[0].preset),
                    f"{first.val_loss:.6f}" if first else "-",
                    f"{first.micro_auc:.4f}" if first and first.micro_auc is not None else "-",
                    ", ".join(str(e.seed) for e in runs),
                    _mean_std(aucs) if aucs else "-",
                    _range(minutes),
                    "**chosen**" if chosen.get(group) == variant else "",
                ]
            )
            + " |"
        )
    return "\n".join(lines)
