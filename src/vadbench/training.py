"""Train one model for one (dataset, variant, seed) (the ``train`` rule).

Determinism: the seed fixes the initial weights and, through :class:`ClipLoader`, the clip
order of every epoch independently of the others; on CPU the same seed gives the same weights
bit for bit. A checkpoint (weights, optimiser, epoch, loss history, MLflow run id) is written
atomically after every epoch; a rerun of an interrupted job with the same run config resumes
after the last completed epoch and ends with the same weights as an uninterrupted run.

Raising ``epochs`` of a preset whose learning rate is constant (every preset here: Adam at a
fixed rate, as in the official MemAE code) continues a finished checkpoint instead of starting
over: epoch k sees the same weights and clip order either way, so the result equals a fresh run
of the longer schedule, and the epochs already paid for are kept.
"""

from __future__ import annotations

import contextlib
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import vadbench
from vadbench.clips import ClipLoader, hold_out_videos, load_index
from vadbench.errors import ConfigError
from vadbench.fileio import atomic_path
from vadbench.logs import get_logger
from vadbench.models import build_model

log = get_logger("training")


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def make_optimizer(params, preset: dict[str, Any]) -> torch.optim.Optimizer:
    name = preset.get("optimizer", "adam")
    if name == "adam":
        return torch.optim.Adam(params, lr=preset["lr"], weight_decay=preset.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(params, lr=preset["lr"], momentum=0.9, weight_decay=preset.get("weight_decay", 0.0))
    raise ConfigError(f"preset optimizer {name!r} is not supported; use adam or sgd")


def _autocast(device: torch.device, amp: str):
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _save(path: Path, obj: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def versions() -> dict[str, str]:
    return {"vadbench": vadbench.__version__, "torch": torch.__version__, "python": platform.python_version()}


def _fmt_seconds(s: float) -> str:
    m, s = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def resume_mode(saved: dict[str, Any] | None, run: dict[str, Any]) -> str | None:
    """How a checkpoint whose state is ``saved`` can serve ``run``.

    ``"same"``: identical run config, continue after its last epoch. ``"extend"``: identical but
    for a larger ``preset.epochs`` under a constant learning rate, which gives the same weights
    as training the longer schedule from scratch. ``None``: start over.
    """
    if not saved or "config" not in saved:
        return None
    old = saved["config"]
    if old == run:
        return "same"
    old_preset, new_preset = old.get("preset", {}), run["preset"]
    shorter = {**old, "preset": {**old_preset, "epochs": new_preset["epochs"]}}
    if (shorter == run and new_preset.get("lr_schedule", "constant") == "constant"
            and saved.get("epoch", -1) + 1 <= new_preset["epochs"]):
        return "extend"
    return None


@torch.no_grad()
def validation_loss(model: torch.nn.Module, loader: ClipLoader, device: torch.device) -> float:
    """Mean training loss over the held-out clips, in eval mode (BatchNorm running statistics)."""
    model.eval()
    total, seen = 0.0, 0
    for _, clips in loader.batches():
        loss, _ = model.training_loss(clips.to(device))
        total += loss.item() * len(clips)
        seen += len(clips)
    model.train()
    return total / seen


def train_model(
    run: dict[str, Any],
    arrays_dir: str | Path,
    index_path: str | Path,
    model_path: str | Path,
    checkpoint_path: str | Path,
    tracker=None,
    threads: int = 1,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``run["model"]`` as configured in ``run`` (see :func:`vadbench.config.run_config`).

    Args:
        run: resolved run config; saved inside the checkpoint and the final model.
        arrays_dir: decoded videos (``resize`` rule output).
        index_path: clip index (``index`` rule output).
        model_path: final ``model.pt``: ``{"state_dict", "config", "history", "versions"}``.
        checkpoint_path: per-epoch checkpoint, kept after success so a finished run can be inspected.
        tracker: a :class:`vadbench.tracking.RunLogger`-like object or ``None``.
        threads: intra-op CPU threads.
        meta: small caller data kept in the checkpoint and model (e.g. the MLflow run id).

    Returns:
        The loss history, one dict per epoch.
    """
    preset = run["preset"]
    torch.set_num_threads(threads)
    device = pick_device(preset.get("device", "auto"))
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(run["seed"])
    np.random.seed(run["seed"])
    model = build_model(run["model"], **run["model_params"]).to(device)
    optimizer = make_optimizer(model.parameters(), preset)
    train_index, val_index = hold_out_videos(load_index(index_path, "train"), preset.get("validation_videos", 0))
    loader = ClipLoader(arrays_dir, "train", train_index, preset["batch_size"])
    val_loader = ClipLoader(arrays_dir, "train", val_index, preset["batch_size"]) if len(val_index) else None
    history: list[dict[str, float]] = []
    start_epoch = 0
    checkpoint_path = Path(checkpoint_path)
    mode = None
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        mode = resume_mode(state, run)
        if mode is None:
            log.info("ignoring %s: it was written for a different run config", checkpoint_path)
        else:
            model.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            history, start_epoch = state["history"], state["epoch"] + 1
            log.info("%s %s after epoch %d", "resuming from" if mode == "same" else "extending", checkpoint_path,
                     start_epoch)
    if tracker is not None and mode != "same":
        from vadbench.config import flat_params

        tracker.log_params(flat_params(run))
        tracker.set_tags({"device": str(device), "threads": threads, **{f"version.{k}": v for k, v in versions().items()}})
        for record in history:  # an extended run gets a new MLflow run: give it the earlier epochs too
            tracker.log_metrics({f"train_{k}": v for k, v in record.items() if k != "epoch"}, step=record["epoch"])
    epochs = preset["epochs"]
    log.info("training %s on %s: %d clips/epoch, %d epochs, device %s, %d threads",
             run["variant"], run["dataset"], len(loader.index), epochs, device, threads)
    began = time.monotonic()
    for epoch in range(start_epoch, epochs):
        model.train()
        t0 = time.monotonic()
        sums: dict[str, float] = {}
        seen = 0
        for _, clips in loader.batches(epoch, shuffle_seed=run["seed"]):
            clips = clips.to(device, non_blocking=True)
            with _autocast(device, preset.get("amp", "none")):
                loss, parts = model.training_loss(clips)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * len(clips)
            seen += len(clips)
        record = {k: v / seen for k, v in sums.items()}
        record["epoch"] = epoch
        record["clips_per_s"] = seen / (time.monotonic() - t0)
        if val_loader is not None:
            record["val_loss"] = validation_loss(model, val_loader, device)
        history.append(record)
        _save(checkpoint_path, {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "epoch": epoch, "history": history, "config": run, "meta": meta or {}})
        if tracker is not None:
            tracker.log_metrics({f"train_{k}": v for k, v in record.items() if k != "epoch"}, step=epoch)
        elapsed = time.monotonic() - began
        done = epoch + 1 - start_epoch
        eta = elapsed / done * (epochs - epoch - 1)
        log.info("epoch %d/%d loss %.5f %s| %.0f clips/s | elapsed %s | ETA %s",
                 epoch + 1, epochs, record["loss"],
                 "".join(f"{k} {record[k]:.5f} " for k in ("recon", "entropy", "val_loss") if k in record),
                 record["clips_per_s"], _fmt_seconds(elapsed), _fmt_seconds(eta))
    model_state = {k: v.cpu() for k, v in model.state_dict().items()}
    _save(Path(model_path), {"state_dict": model_state, "config": run, "history": history,
                             "versions": versions(), "meta": meta or {}})
    return {"history": history}


def checkpoint_meta(checkpoint_path: str | Path, run: dict[str, Any]) -> dict[str, Any]:
    """The ``meta`` of a checkpoint that a rerun of ``run`` would resume from, else ``{}``."""
    path = Path(checkpoint_path)
    if not path.exists():
        return {}
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state.get("meta", {}) if resume_mode(state, run) == "same" else {}


def load_trained(model_path: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model from ``model.pt``; returns ``(model in eval mode, run config)``."""
    device = device or pick_device()
    state = torch.load(model_path, map_location=device, weights_only=False)
    run = state["config"]
    model = build_model(run["model"], **run["model_params"]).to(device)
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model, run
