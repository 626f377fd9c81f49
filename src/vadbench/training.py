"""Train one model for one (dataset, variant, seed) (the ``train`` rule).

Determinism: the seed fixes the initial weights and, through :class:`ClipLoader`, the clip
order of every epoch independently of the others; on CPU the same seed gives the same weights
bit for bit. A checkpoint (weights, optimiser, epoch, loss history, MLflow run id) is written
atomically after every epoch; a rerun of an interrupted job with the same run config and the
same data (the :mod:`vadbench.fingerprint` of the arrays and the clip index) resumes after the
last completed epoch and ends with the same weights as an uninterrupted run. A checkpoint of
another config or other data, or one that records no data fingerprint, is ignored (the log says
why) and training starts over; the final model.pt carries the fingerprint too, and scoring
refuses it for other data.

SIGTERM (what SLURM sends before it preempts or times out a job) or SIGINT (Ctrl-C) stops
training after the current batch: the checkpoint then also holds the position inside the epoch
and the partial loss sums, the job exits non-zero (:class:`Preempted`: 143 for SIGTERM, 130 for
SIGINT), and a rerun continues from that batch with exactly the weights an uninterrupted run
would have. A second Ctrl-C stops at once (KeyboardInterrupt). A SIGKILL loses at most the
current epoch.

One job at a time trains a checkpoint: the job holds an exclusive ``flock`` on
``<checkpoint>.lock`` (holding its pid) for its whole lifetime, released by the kernel however
it ends. A second job on the same checkpoint (a rerun while an orphan of a SIGKILLed Snakemake
still trains) waits for it and then resumes from the checkpoint it left, instead of training
the same epochs alongside it.

Checkpoints and models hold tensors and plain data only and are read with
``torch.load(weights_only=True)``: a crafted file that would run code when unpickled is refused
with a :class:`DatasetError`.

Where batches are built is the preset's ``data_placement`` (:func:`vadbench.clips.make_loader`):
on a CUDA job (``auto``) the split is copied to the GPU once and every batch is gathered there,
bit for bit the batches the host loader builds, so the placement is no part of the run identity
(:func:`run_identity`). Loss terms a model returns as tensors are summed on the device and read
once per epoch, so the loop does not wait for the device after every batch.

The loop knows nothing model-specific. A model says its loss (``training_loss``), or, when one
step updates several networks in turn (AMMC-Net's generator and discriminator), owns the step
behind :func:`training_step`: ``parameter_groups()`` names one optimiser per group and
``training_step(clips, optimizers, autocast)`` runs them; every optimiser and scheduler is in
the checkpoint. A model that reads optical flow (``uses_flow``) gets :class:`FlowClips` batches
and the flow joins the fingerprint; one that starts from trained parts (AMMC-Net's stage 2
from its stage-1 streams, ``init_from``) gets them through ``load_streams``.

Raising ``epochs`` of a preset whose learning rate is constant (every preset here: Adam at a
fixed rate, as in the official MemAE code) continues a finished checkpoint instead of starting
over: epoch k sees the same weights and clip order either way, so the result equals a fresh run
of the longer schedule, and the epochs already paid for are kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from vadbench.aggregate import versions
from vadbench.clips import ClipLoader, FlowInput, hold_out_videos, load_index, make_loader
from vadbench.config import EXECUTION_KEYS
from vadbench.errors import ConfigError, DatasetError
from vadbench.fileio import atomic_path, open_lock_file, write_lock_owner
from vadbench.fingerprint import data_fingerprint, describe, difference
from vadbench.host import use_host
from vadbench.logs import get_logger
from vadbench.models import build_model
from vadbench.precision import resolve_amp

log = get_logger("training")


def make_optimizer(params, preset: dict[str, Any], lr_scale: float = 1.0) -> torch.optim.Optimizer:
    name, lr = preset.get("optimizer", "adam"), preset["lr"] * lr_scale
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=preset.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=preset.get("weight_decay", 0.0))
    raise ConfigError(f"preset optimizer {name!r} is not supported; use adam or sgd")


def make_optimizers(model: torch.nn.Module, preset: dict[str, Any]) -> dict[str, torch.optim.Optimizer]:
    """One optimiser per parameter group the model names (``parameter_groups()``: a GAN's
    generator and discriminator, each with an ``lr_scale`` of the preset's rate), else one
    (``"model"``) over all parameters."""
    if not hasattr(model, "parameter_groups"):
        return {"model": make_optimizer(model.parameters(), preset)}
    return {
        name: make_optimizer(group["params"], preset, group.get("lr_scale", 1.0))
        for name, group in model.parameter_groups().items()
    }


def batch_to(clips: Any, device: torch.device, memory_format: torch.memory_format) -> Any:
    """A batch on the model's device, in ``memory_format`` (a tensor batch; others as they are)."""
    clips = clips.to(device, non_blocking=True)
    if memory_format is not torch.contiguous_format and isinstance(clips, torch.Tensor):
        clips = clips.contiguous(memory_format=memory_format)
    return clips


def configure_backend(device: torch.device) -> None:
    """How the backend computes a training job. On the CPU: deterministic algorithms, so that a
    seed gives the same weights and a resumed run the weights of an uninterrupted one (tested).
    On CUDA: cuDNN's autotuner (``cudnn.benchmark``), which times the convolution algorithms once
    per shape and keeps the fastest; every batch of a preset has the same shape but perhaps the
    last, and GPU training was never bit-reproducible (atomic adds in the backward passes)."""
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def training_step(
    model: torch.nn.Module, clips: Any, optimizers: dict[str, torch.optim.Optimizer], autocast
) -> dict[str, float | torch.Tensor]:
    """One optimisation step on a batch; returns the loss terms (``"loss"`` among them) as floats
    or detached 0-dim tensors, which the loop sums on the device (:func:`add_terms`).

    A model with its own step (``training_step``: a GAN updates two networks in turn) owns it;
    every other model only says its loss (``training_loss``) and the loop steps its one optimiser.
    ``autocast`` is a zero-argument factory of the precision context (bf16 or nothing).
    """
    if hasattr(model, "training_step"):
        return model.training_step(clips, optimizers, autocast)
    with autocast():
        loss, parts = model.training_loss(clips)
    optimizer = optimizers["model"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return parts


def add_terms(sums: dict[str, Any], parts: dict[str, float | torch.Tensor], n: int) -> None:
    """Add ``n`` times each loss term of a batch to ``sums``, in float64.

    A term that is a tensor is summed where it lives, so the loop never waits for the device; a
    float (a model step that reads its terms itself) is summed on the host. Either way the arithmetic
    is the float64 ``value * n`` added in batch order, so the epoch means are those of summing
    ``.item()`` floats, bit for bit. Read the sums with :func:`read_terms`.
    """
    for k, v in parts.items():
        term = v.detach().double() * n if isinstance(v, torch.Tensor) else v * n
        sums[k] = sums.get(k, 0.0) + term


def read_terms(sums: dict[str, Any]) -> dict[str, float]:
    """The sums of :func:`add_terms` as floats (one wait for the device, where they live there)."""
    return {k: float(v) for k, v in sums.items()}


class Preempted(SystemExit):
    """Training stopped on SIGTERM or SIGINT after saving a resumable checkpoint; exit status
    128 + the signal number (143 for SIGTERM, 130 for SIGINT), as a shell reports it."""

    def __init__(self, checkpoint: Path, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + signum)
        self.checkpoint, self.signal = checkpoint, signal.Signals(signum)

    def __str__(self) -> str:
        return f"stopped by {self.signal.name}; resumable checkpoint saved to {self.checkpoint}"


@contextlib.contextmanager
def sigterm_flag() -> Iterator[dict[str, Any]]:
    """Yield a flag dict whose ``"stop"`` turns True on SIGTERM or SIGINT, and whose ``"signal"``
    is then that signal's number (main thread only; elsewhere a no-op). A second SIGINT raises
    KeyboardInterrupt at once, for a user who will not wait for the batch."""
    flag: dict[str, Any] = {"stop": False, "signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):  # noqa: ARG001
        if flag["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["stop"], flag["signal"] = True, signum
        log.warning("%s received: saving a checkpoint after this batch", signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def job_lock(checkpoint_path: str | Path) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``<checkpoint>.lock`` for the block; wait while another
    process holds it. The file holds the holder's pid, for the waiting job's log."""
    checkpoint_path = Path(checkpoint_path)
    lock_path = checkpoint_path.with_name(f"{checkpoint_path.name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_lock_file(
        lock_path,
        lambda symlink: DatasetError(
            f"{lock_path} is {'a symbolic link' if symlink else 'not a regular file of yours'}, not a lock file vadbench "
            "made; remove it and rerun."
        ),
    )
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            log.warning("%s is held: waiting for pid %s, which is training the same model", lock_path, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.info("pid %s is done with %s", holder, checkpoint_path)
        write_lock_owner(fd)
        yield lock_path
    finally:
        os.close(fd)


def log_epoch(tracker, record: dict[str, float]) -> None:
    """One epoch of the loss history as MLflow metrics ``train_<term>`` at step ``epoch``."""
    tracker.log_metrics({f"train_{k}": v for k, v in record.items() if k != "epoch"}, step=record["epoch"])


def make_scheduler(optimizer: torch.optim.Optimizer, preset: dict[str, Any]):
    """``None`` for a constant rate; ``cosine``: CosineAnnealingLR over the run's epochs, stepped per
    epoch (MNAD's Train.py)."""
    schedule = preset.get("lr_schedule", "constant")
    if schedule == "constant":
        return None
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=preset["epochs"], eta_min=0.0)
    raise ConfigError(f"preset lr_schedule {schedule!r} is not supported; use constant or cosine")


def _per_optimizer(states: dict[str, Any] | None, marker: str) -> dict[str, Any]:
    """The optimiser (``marker`` "param_groups") or scheduler ("last_epoch") states of a checkpoint
    by optimiser name; one written before models could own several optimisers holds a single
    state, which is the ``"model"`` optimiser's."""
    if states is None:
        return {}
    return {"model": states} if marker in states else states


def _autocast(device: torch.device, amp: str):
    """A factory of the precision context of every forward pass (called once per use)."""
    if amp == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _precision(preset: dict[str, Any], device: torch.device, resumed: dict[str, Any] | None) -> str:
    """The precision this run computes in: a resumed run keeps its checkpoint's, so that moving a
    preempted ``amp: auto`` job to a node with other hardware does not switch precision halfway."""
    amp = preset.get("amp", "none")
    here = resolve_amp(amp, device)
    saved = (resumed or {}).get("amp", here)
    if saved != here:
        log.warning(
            "the checkpoint was trained in %s; continuing in %s, not in %s as amp %s means here",
            saved,
            saved,
            here,
            amp,
        )
    log.info("precision %s (preset amp %s, device %s)", "fp32" if saved == "none" else saved, amp, device)
    return saved


def preset_layout(preset: dict[str, Any]) -> torch.memory_format:
    """The layout training keeps conv weights and batches in. With ``channels_last_3d`` oneDNN runs
    the 3D convolutions on the channels-last layout it computes in instead of reordering every
    activation there and back (most of a contiguous step's oneDNN time on the project's CPU,
    ``benchmarks/RESULTS.md``). Other kernels then round differently, so the weights are not
    those of a contiguous run: the key is part of the preset, hence of the run's identity."""
    return torch.channels_last_3d if preset.get("memory_format") == "channels_last_3d" else torch.contiguous_format


def _save(path: Path, obj: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_saved(path: str | Path, map_location: Any = "cpu", what: str = "checkpoint") -> dict[str, Any]:
    """A checkpoint or model.pt as written by :func:`train_model`, read with ``weights_only=True``.

    Raises:
        DatasetError: the file holds objects other than tensors and plain data (it could run code
            if unpickled in full), cannot be read, or is not a vadbench ``what``.
    """
    fix = "Delete it and retrain (snakemake --forcerun train)."
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        raise DatasetError(
            f"{path}: not a vadbench {what}: it contains non-tensor objects"
            f"{f' ({found.group(1)})' if found else ''}, which vadbench never saves and will not unpickle "
            f"(that could run code). {fix}"
        ) from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable vadbench {what} ({str(err).splitlines()[0]}). {fix}") from None
    if not isinstance(state, dict) or not {"state_dict", "config"} <= state.keys():
        raise DatasetError(f"{path}: not a vadbench {what} (no state_dict and config in it). {fix}")
    return state


def _fmt_seconds(s: float) -> str:
    m, s = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def _config_changes(old: dict[str, Any], new: dict[str, Any], limit: int = 6) -> str:
    from vadbench.config import flat_params

    a, b = flat_params(old), flat_params(new)
    changed = [
        f"{k} {a.get(k, '<unset>')} -> {b.get(k, '<unset>')}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]
    return ", ".join(changed[:limit]) + (f" and {len(changed) - limit} more" if len(changed) > limit else "")


def run_identity(run: dict[str, Any]) -> dict[str, Any]:
    """``run`` without the preset's :data:`vadbench.config.EXECUTION_KEYS` (``data_placement``
    moves the same bytes into the same batches; ``score_batch_size`` only batches the test pass):
    what a checkpoint must match. A checkpoint written under another placement or scoring batch
    (one from before ``score_batch_size`` was an execution key included) is the same run."""
    preset = run.get("preset")
    if not isinstance(preset, dict) or not preset.keys() & set(EXECUTION_KEYS):
        return run
    return {**run, "preset": {k: v for k, v in preset.items() if k not in EXECUTION_KEYS}}


def resume_mode(
    saved: dict[str, Any] | None, run: dict[str, Any], fingerprint: dict[str, Any] | None
) -> tuple[str | None, str]:
    """How a checkpoint whose state is ``saved`` can serve ``run`` on the data of ``fingerprint``.

    Run configs are compared without the preset's execution keys (:func:`run_identity`).
    Returns ``(mode, why)``. ``"same"``: identical run config and data, continue after its last
    epoch. ``"extend"``: identical but for a larger ``preset.epochs`` under a constant learning
    rate, which gives the same weights as training the longer schedule from scratch. ``None``:
    start over, and ``why`` says why. ``fingerprint=None`` compares the config only.
    """
    if not saved or "config" not in saved:
        return None, "it holds no run config"
    run = run_identity(run)
    if fingerprint is not None:
        old_fp = saved.get("fingerprint")
        if not old_fp:
            return None, "it records no data fingerprint (written by an older vadbench), so its data is unknown"
        if old_fp.get("digest") != fingerprint["digest"]:
            return None, (
                f"it was trained on other data: {describe(old_fp)}, this job's is {describe(fingerprint)} "
                f"({difference(old_fp, fingerprint)})"
            )
    old = run_identity(saved["config"])
    if old == run:
        return "same", ""
    old_preset, new_preset = old.get("preset", {}), run["preset"]
    shorter = {**old, "preset": {**old_preset, "epochs": new_preset["epochs"]}}
    if shorter == run:
        if new_preset.get("lr_schedule", "constant") != "constant":
            return (
                None,
                f"preset.epochs changed under lr_schedule {new_preset['lr_schedule']}, so it is no prefix of this run",
            )
        if saved.get("epoch", -1) + 1 > new_preset["epochs"]:
            return (
                None,
                f"it was trained for {saved['epoch'] + 1} epochs, more than the {new_preset['epochs']} asked for",
            )
        return "extend", ""
    return None, f"it was written for another run config ({_config_changes(old, run)})"


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module,
    loader: ClipLoader,
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
    autocast=contextlib.nullcontext,
) -> float:
    """Mean training loss over the held-out clips, in eval mode (BatchNorm running statistics;
    a GAN's generator objective), the batches in the layout the model trains in.

    ``autocast`` is the training step's precision context, so that the validation loss is the
    training loss's own function on other clips (as Lightning and the Hugging Face Trainer
    validate under mixed precision); in bf16 it is also 1.6x faster than fp32 on a Ped2 `cpu`
    model (``benchmarks/validation_pass.py``; about 24 s of a 20-epoch training). Scoring stays fp32 (:mod:`vadbench.scoring`)."""
    model.eval()
    sums: dict[str, Any] = {}
    seen = 0
    with contextlib.closing(loader.batches()) as batches:
        for _, clips in batches:
            with autocast():
                loss, _ = model.training_loss(batch_to(clips, device, memory_format))
            add_terms(sums, {"loss": loss}, len(clips))
            seen += len(clips)
    model.train()
    return read_terms(sums)["loss"] / seen


def train_model(
    run: dict[str, Any],
    arrays_dir: str | Path,
    index_path: str | Path,
    model_path: str | Path,
    checkpoint_path: str | Path,
    tracker=None,
    threads: int = 1,
    meta: dict[str, Any] | None = None,
    flow_dir: str | Path | None = None,
    init_from: dict[str, str | Path] | None = None,
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
        flow_dir: optical flow of the arrays (``flow`` rule), for a model that reads it
            (``uses_flow``); it joins the data fingerprint.
        init_from: trained parts a fresh run starts from, by name (AMMC-Net's stage 2: the
            ``appearance`` and ``motion`` streams of stage 1), handed to the model's
            ``load_streams``; each must have been trained on the same data. ``run`` should
            record their digests (:func:`vadbench.pipeline.train_run` adds ``run["init"]``), so
            a checkpoint made from other streams is not resumed.

    Returns:
        ``{"history": the loss history, one dict per epoch, "amp": the precision it trained in}``
        (``"none"`` is fp32; see :func:`vadbench.precision.resolve_amp`).
    """
    from vadbench.devices import job_device

    with job_lock(checkpoint_path), job_device(run["preset"].get("device", "auto")) as device:
        return _train_on(
            device,
            run,
            arrays_dir,
            index_path,
            model_path,
            checkpoint_path,
            tracker,
            threads,
            meta,
            flow_dir,
            init_from or {},
        )


def _train_on(
    device: torch.device,
    run: dict[str, Any],
    arrays_dir: str | Path,
    index_path: str | Path,
    model_path: str | Path,
    checkpoint_path: str | Path,
    tracker,
    threads: int,
    meta: dict[str, Any] | None,
    flow_dir: str | Path | None,
    init_from: dict[str, str | Path],
) -> dict[str, Any]:
    preset = run["preset"]
    fingerprint = data_fingerprint(arrays_dir, index_path, flow_dir=flow_dir)
    log.info("training data: %s", describe(fingerprint))
    use_host(threads)
    configure_backend(device)
    torch.manual_seed(run["seed"])
    np.random.seed(run["seed"])
    memory_format = preset_layout(preset)
    model = build_model(run["model"], **run["model_params"]).to(device, memory_format=memory_format)
    flow = flow_input(model, flow_dir, preset)
    optimizers = make_optimizers(model, preset)
    schedulers = {name: make_scheduler(optimizer, preset) for name, optimizer in optimizers.items()}
    train_index, val_index = hold_out_videos(load_index(index_path, "train"), preset.get("validation_videos", 0))
    placement = preset.get("data_placement", "auto")
    # drop_last (MNAD's official loader) only for training: the validation loss covers every held-out clip
    loader = make_loader(
        arrays_dir, "train", train_index, preset["batch_size"], flow, device, placement, preset.get("drop_last", False)
    )
    val_loader = (
        make_loader(arrays_dir, "train", val_index, preset["batch_size"], flow, device, placement)
        if len(val_index)
        else None
    )
    history: list[dict[str, float]] = []
    start_epoch = 0
    checkpoint_path = Path(checkpoint_path)
    mode = None
    if checkpoint_path.exists():
        state = load_saved(checkpoint_path, device)
        mode, why = resume_mode(state, run, fingerprint)
        if mode is None:
            log.warning("ignoring %s and starting over: %s", checkpoint_path, why)
        else:
            model.load_state_dict(state["state_dict"])
            for name, saved in _per_optimizer(state["optimizer"], "param_groups").items():
                optimizers[name].load_state_dict(saved)
            for name, saved in _per_optimizer(state.get("scheduler"), "last_epoch").items():
                if saved is not None:
                    schedulers[name].load_state_dict(saved)
            history, start_epoch = state["history"], state["epoch"] + 1
            partial = state.get("partial")
            log.info(
                "%s %s after epoch %d%s",
                "resuming from" if mode == "same" else "extending",
                checkpoint_path,
                start_epoch,
                f" and batch {partial['next_batch']} of epoch {partial['epoch'] + 1}" if partial else "",
            )
    if mode is None and init_from:
        log.info("starting from %s", ", ".join(f"{name} {path}" for name, path in init_from.items()))
        model.load_streams(
            **{
                f"{name}_state": _trained_part(path, name, arrays_dir, index_path, flow_dir, device)
                for name, path in init_from.items()
            }
        )
    amp = _precision(preset, device, state if mode is not None else None)
    if tracker is not None and mode != "same":
        from vadbench.config import flat_params

        tracker.log_params(flat_params(run))
        tracker.set_tags(
            {
                "device": str(device),
                "threads": threads,
                "amp": amp,
                **{f"version.{k}": v for k, v in versions().items()},
            }
        )
        for record in history:  # an extended run gets a new MLflow run: give it the earlier epochs too
            log_epoch(tracker, record)
    epochs = preset["epochs"]
    log.info(
        "training %s%s on %s: %d clips/epoch, %d epochs, device %s, %d threads",
        run["variant"],
        f" ({run['stage']})" if run.get("stage") else "",
        run["dataset"],
        len(loader.index),
        epochs,
        device,
        threads,
    )
    began = time.monotonic()
    partial = state.get("partial") if mode is not None else None
    autocast = _autocast(device, amp)

    def save_checkpoint(last_epoch: int, **extra: Any) -> None:
        _save(
            checkpoint_path,
            {
                "state_dict": model.state_dict(),
                "optimizer": {name: o.state_dict() for name, o in optimizers.items()},
                "scheduler": {name: c.state_dict() if c is not None else None for name, c in schedulers.items()},
                "epoch": last_epoch,
                "history": history,
                "config": run,
                "meta": meta or {},
                "fingerprint": fingerprint,
                "amp": amp,
                **extra,
            },
        )

    with sigterm_flag() as flag:
        for epoch in range(start_epoch, epochs):
            model.train()
            t0 = time.monotonic()
            sums: dict[str, Any] = dict(partial["sums"]) if partial else {}  # float64, on the device where it can
            seen = partial["seen"] if partial else 0
            skip = partial["next_batch"] if partial else 0
            seen_here = 0
            partial = None
            with contextlib.closing(loader.batches(epoch, shuffle_seed=run["seed"])) as batches:
                for b, (_, clips) in enumerate(batches):
                    if b < skip:  # done before a SIGTERM
                        continue
                    parts = training_step(model, batch_to(clips, device, memory_format), optimizers, autocast)
                    add_terms(sums, parts, len(clips))
                    seen += len(clips)
                    seen_here += len(clips)
                    if flag["stop"]:
                        progress = {"epoch": epoch, "next_batch": b + 1, "sums": read_terms(sums), "seen": seen}
                        save_checkpoint(epoch - 1, partial=progress)
                        raise Preempted(checkpoint_path, flag["signal"])
            record = {k: v / seen for k, v in read_terms(sums).items()}
            record["epoch"] = epoch
            record["clips_per_s"] = seen_here / (time.monotonic() - t0)
            record["lr"] = next(iter(optimizers.values())).param_groups[0]["lr"]
            for scheduler in schedulers.values():
                if scheduler is not None:
                    scheduler.step()
            if val_loader is not None:
                record["val_loss"] = validation_loss(model, val_loader, device, memory_format, autocast)
            history.append(record)
            save_checkpoint(epoch)
            if tracker is not None:
                log_epoch(tracker, record)
            elapsed = time.monotonic() - began
            done = epoch + 1 - start_epoch
            eta = elapsed / done * (epochs - epoch - 1)
            log.info(
                "epoch %d/%d loss %.5f %s| %.0f clips/s | elapsed %s | ETA %s",
                epoch + 1,
                epochs,
                record["loss"],
                "".join(f"{k} {v:.5f} " for k, v in record.items() if k not in ("loss", "epoch", "clips_per_s", "lr")),
                record["clips_per_s"],
                _fmt_seconds(elapsed),
                _fmt_seconds(eta),
            )
    model_state = {k: v.cpu() for k, v in model.state_dict().items()}
    _save(
        Path(model_path),
        {
            "state_dict": model_state,
            "config": run,
            "history": history,
            "versions": versions(),
            "meta": meta or {},
            "fingerprint": fingerprint,
            "amp": amp,
        },
    )
    return {"history": history, "amp": amp}


def flow_input(model: torch.nn.Module, flow_dir: str | Path | None, preset: dict[str, Any]) -> FlowInput | None:
    """The flow a model reads (``uses_flow``), with the preset's normalisation; ``None`` if it reads none.

    Raises:
        ConfigError: the model reads flow but the job was given none (a rule without the ``flow``
            input), or the preset has no ``flow`` section.
    """
    if not getattr(model, "uses_flow", False):
        return None
    if flow_dir is None or "flow" not in preset:
        raise ConfigError(
            f"model {type(model).__name__} reads optical flow: its preset needs a `flow` section "
            "(method, normalisation, max_displacement) and the job the flow rule's output"
        )
    return FlowInput(Path(flow_dir), preset["flow"]["normalisation"], preset["flow"].get("max_displacement", 1.0))


def _trained_part(
    path: str | Path,
    name: str,
    arrays_dir: str | Path,
    index_path: str | Path,
    flow_dir: str | Path | None,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """The weights of a trained part (a stage-1 stream), refused if it was trained on other data."""
    state = load_saved(path, device, what=f"{name} model")
    require_same_data(path, state.get("fingerprint"), arrays_dir, index_path, flow_dir)
    return state["state_dict"]


def checkpoint_meta(
    checkpoint_path: str | Path,
    run: dict[str, Any],
    arrays_dir: str | Path | None = None,
    index_path: str | Path | None = None,
    flow_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The ``meta`` of a checkpoint that a rerun of ``run`` would resume from, else ``{}``; given
    ``arrays_dir`` and ``index_path`` (and ``flow_dir``), only if it was also trained on that data."""
    path = Path(checkpoint_path)
    if not path.exists():
        return {}
    fingerprint = (
        data_fingerprint(arrays_dir, index_path, flow_dir=flow_dir)
        if arrays_dir is not None and index_path is not None
        else None
    )
    state = load_saved(path)
    return state.get("meta", {}) if resume_mode(state, run, fingerprint)[0] == "same" else {}


def load_trained(
    model_path: str | Path,
    device: torch.device = torch.device("cpu"),
    arrays_dir: str | Path | None = None,
    index_path: str | Path | None = None,
    flow_dir: str | Path | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model from ``model.pt`` on ``device`` (a job's from :func:`vadbench.devices.job_device`);
    returns ``(model in eval mode, run config)``. The weights are in the layout the run trained in
    (:func:`preset_layout`), so that batches in that layout reach oneDNN without a reorder per
    convolution (``benchmarks/score_pass.py``).

    Given ``arrays_dir`` and ``index_path``, first checks that the model was trained on that data
    (same :func:`vadbench.fingerprint.data_fingerprint`) and raises :class:`DatasetError` if not.
    """
    state = load_saved(model_path, device, what="model")
    if arrays_dir is not None and index_path is not None:
        require_same_data(model_path, state.get("fingerprint"), arrays_dir, index_path, flow_dir)
    run = state["config"]
    model = build_model(run["model"], **run["model_params"]).to(device, memory_format=preset_layout(run["preset"]))
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model, run


def require_same_data(
    model_path: str | Path,
    saved: dict[str, Any] | None,
    arrays_dir: str | Path,
    index_path: str | Path,
    flow_dir: str | Path | None = None,
) -> None:
    """Raise :class:`DatasetError` unless the fingerprint ``saved`` in ``model_path`` is that of
    ``arrays_dir`` with ``index_path`` (and ``flow_dir``)."""
    current = data_fingerprint(arrays_dir, index_path, flow_dir=flow_dir)
    if saved and saved.get("digest") == current["digest"]:
        return
    fix = (
        f"Retrain on these arrays: delete {model_path} or run `snakemake --forcerun train`; its checkpoint "
        "is not reused for other data."
    )
    if not saved:
        raise DatasetError(
            f"{model_path} records no data fingerprint (trained by an older vadbench), so it cannot be "
            f"checked against {arrays_dir} ({describe(current)}). {fix}"
        )
    raise DatasetError(
        f"{model_path} was trained on {describe(saved)}, but {arrays_dir} with {index_path} is {describe(current)} "
        f"({difference(saved, current)}): its scores would not be those of a model of this data. {fix}"
    )
