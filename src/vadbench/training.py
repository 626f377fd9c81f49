"""Train one model for one (dataset, variant, seed) (the ``train`` rule).

Determinism: the seed fixes the initial weights and, through :class:`ClipLoader`, the clip
order of every epoch independently of the others; on CPU the same seed gives the same weights
bit for bit. A checkpoint (weights, optimiser, epoch, loss history, MLflow run id) is written
atomically after every epoch; a rerun of an interrupted job with the same run config resumes
after the last completed epoch and ends with the same weights as an uninterrupted run.

SIGTERM (what SLURM sends before it preempts or times out a job) stops training after the
current batch: the checkpoint then also holds the position inside the epoch and the partial loss
sums, the job exits non-zero (:class:`Preempted`), and a rerun continues from that batch with
exactly the weights an uninterrupted run would have. A SIGKILL loses at most the current epoch.

Raising ``epochs`` of a preset whose learning rate is constant (every preset here: Adam at a
fixed rate, as in the official MemAE code) continues a finished checkpoint instead of starting
over: epoch k sees the same weights and clip order either way, so the result equals a fresh run
of the longer schedule, and the epochs already paid for are kept.
"""

from __future__ import annotations

import contextlib
import platform
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

import vadbench
from vadbench.clips import ClipLoader, hold_out_videos, load_index
from vadbench.errors import ConfigError
from vadbench.fileio import atomic_path
from vadbench.logs import get_logger
from vadbench.models import build_model

log = get_logger("training")


def make_optimizer(params, preset: dict[str, Any]) -> torch.optim.Optimizer:
    name = preset.get("optimizer", "adam")
    if name == "adam":
        return torch.optim.Adam(params, lr=preset["lr"], weight_decay=preset.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(params, lr=preset["lr"], momentum=0.9, weight_decay=preset.get("weight_decay", 0.0))
    raise ConfigError(f"preset optimizer {name!r} is not supported; use adam or sgd")


class Preempted(SystemExit):
    """Training stopped on SIGTERM after saving a resumable checkpoint; exit status 143 (128 + 15)."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(143)
        self.checkpoint = checkpoint

    def __str__(self) -> str:
        return f"stopped by SIGTERM; resumable checkpoint saved to {self.checkpoint}"


@contextlib.contextmanager
def sigterm_flag() -> Iterator[dict[str, bool]]:
    """Yield a flag dict whose ``"stop"`` turns True on SIGTERM (main thread only; elsewhere a no-op)."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):  # noqa: ARG001
        flag["stop"] = True
        log.warning("SIGTERM received: saving a checkpoint after this batch")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def make_scheduler(optimizer: torch.optim.Optimizer, preset: dict[str, Any]):
    """``None`` for a constant rate; ``cosine``: CosineAnnealingLR over the run's epochs, stepped per
    epoch (MNAD's Train.py)."""
    schedule = preset.get("lr_schedule", "constant")
    if schedule == "constant":
        return None
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=preset["epochs"], eta_min=0.0)
    raise ConfigError(f"preset lr_schedule {schedule!r} is not supported; use constant or cosine")


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
    from vadbench.devices import job_device

    with job_device(run["preset"].get("device", "auto")) as device:
        return _train_on(device, run, arrays_dir, index_path, model_path, checkpoint_path, tracker, threads, meta)


def _train_on(device: torch.device, run: dict[str, Any], arrays_dir: str | Path, index_path: str | Path,
              model_path: str | Path, checkpoint_path: str | Path, tracker, threads: int,
              meta: dict[str, Any] | None) -> dict[str, Any]:
    preset = run["preset"]
    torch.set_num_threads(threads)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(run["seed"])
    np.random.seed(run["seed"])
    model = build_model(run["model"], **run["model_params"]).to(device)
    optimizer = make_optimizer(model.parameters(), preset)
    scheduler = make_scheduler(optimizer, preset)
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
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            history, start_epoch = state["history"], state["epoch"] + 1
            partial = state.get("partial")
            log.info("%s %s after epoch %d%s", "resuming from" if mode == "same" else "extending", checkpoint_path,
                     start_epoch, f" and batch {partial['next_batch']} of epoch {partial['epoch'] + 1}" if partial else "")
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
    partial = state.get("partial") if mode is not None else None

    def save_checkpoint(last_epoch: int, **extra: Any) -> None:
        _save(checkpoint_path, {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                                "epoch": last_epoch, "history": history, "config": run, "meta": meta or {}, **extra})

    with sigterm_flag() as flag:
        for epoch in range(start_epoch, epochs):
            model.train()
            t0 = time.monotonic()
            sums: dict[str, float] = dict(partial["sums"]) if partial else {}
            seen = partial["seen"] if partial else 0
            skip = partial["next_batch"] if partial else 0
            seen_here = 0
            partial = None
            for b, (_, clips) in enumerate(loader.batches(epoch, shuffle_seed=run["seed"])):
                if b < skip:  # done before a SIGTERM
                    continue
                clips = clips.to(device, non_blocking=True)
                with _autocast(device, preset.get("amp", "none")):
                    loss, parts = model.training_loss(clips)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v * len(clips)
                seen += len(clips)
                seen_here += len(clips)
                if flag["stop"]:
                    save_checkpoint(epoch - 1, partial={"epoch": epoch, "next_batch": b + 1, "sums": sums, "seen": seen})
                    raise Preempted(checkpoint_path)
            record = {k: v / seen for k, v in sums.items()}
            record["epoch"] = epoch
            record["clips_per_s"] = seen_here / (time.monotonic() - t0)
            record["lr"] = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            if val_loader is not None:
                record["val_loss"] = validation_loss(model, val_loader, device)
            history.append(record)
            save_checkpoint(epoch)
            if tracker is not None:
                tracker.log_metrics({f"train_{k}": v for k, v in record.items() if k != "epoch"}, step=epoch)
            elapsed = time.monotonic() - began
            done = epoch + 1 - start_epoch
            eta = elapsed / done * (epochs - epoch - 1)
            log.info("epoch %d/%d loss %.5f %s| %.0f clips/s | elapsed %s | ETA %s",
                     epoch + 1, epochs, record["loss"],
                     "".join(f"{k} {v:.5f} " for k, v in record.items() if k not in ("loss", "epoch", "clips_per_s", "lr")),
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


def load_trained(model_path: str | Path, device: torch.device = torch.device("cpu")) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model from ``model.pt`` on ``device`` (a job's from :func:`vadbench.devices.job_device`);
    returns ``(model in eval mode, run config)``."""
    state = torch.load(model_path, map_location=device, weights_only=False)
    run = state["config"]
    model = build_model(run["model"], **run["model_params"]).to(device)
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model, run
