"""Per-frame anomaly errors of the test videos (the ``score`` rule).

Each test clip's error (the model's ``clip_errors``, under the protocol's ``error`` measure for
MemAE/AE) is assigned to one frame of the clip chosen by the :class:`~vadbench.protocol.Protocol`
(MemAE: the centre, index 8 of 16); frames no clip lands on stay NaN. Everything after that (edges, smoothing, normalisation) is done by
``Protocol.apply`` when the metrics are computed, so a score file can be re-evaluated under
another protocol without the model.

Saved ``.npz`` keys, for every test video ``v`` (names in ``videos``): ``raw/v`` ((T,) float64
errors, NaN where no clip landed), ``label/v`` ((T,) uint8 0/1), plus ``protocol`` (JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vadbench.clips import ClipLoader, load_index
from vadbench.errors import ConfigError
from vadbench.fileio import atomic_path
from vadbench.host import use_host
from vadbench.logs import get_logger
from vadbench.protocol import ERROR_MEASURES, Protocol, minmax
from vadbench.scorefiles import load_scores  # noqa: F401  (read score files here too, as before)

log = get_logger("scoring")


def frame_scores(clip_starts: np.ndarray, clip_errors: np.ndarray, n_frames: int, protocol: Protocol) -> np.ndarray:
    """Raw per-frame scores of one video: (n_frames,) float64, NaN where no clip lands.

    Args:
        clip_starts: (N,) first frame of each clip.
        clip_errors: (N,) error of each clip.
        n_frames: length of the video.
        protocol: decides which frame of a clip gets its error.
    """
    scores = np.full(n_frames, np.nan)
    scores[clip_starts + protocol.offset] = clip_errors
    return scores


@torch.no_grad()
def clip_errors(
    model: torch.nn.Module,
    loader: ClipLoader,
    device: torch.device,
    measure: str = "memae_l2",
    memory_format: torch.memory_format = torch.contiguous_format,
) -> np.ndarray:
    """Errors of every clip of ``loader`` in index order under ``measure`` (the protocol's
    ``error``, see :meth:`vadbench.models.memae.MemAE.clip_errors`): (N,) float64. The batches
    go in ``memory_format``, the layout of the model's weights (:func:`vadbench.training.load_trained`)."""
    from vadbench.training import batch_to

    errors = np.empty(len(loader.index))
    for ids, clips in loader.batches():
        errors[ids] = model.clip_errors(batch_to(clips, device, memory_format), measure).double().cpu().numpy()
    return errors


@torch.no_grad()
def mnad_clip_scores(
    model: torch.nn.Module, loader: ClipLoader, protocol: Protocol, device: torch.device
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """MNAD's test procedure (Evaluate.py), one clip at a time in video order.

    Per clip: PSNR of the predicted frame and the compactness distance D of its queries to their
    nearest items, with the memory updated by frames whose weighted error is below
    ``protocol.update_threshold``; carried across videos unless ``reset_memory_per_video``.
    Per video: S = alpha * minmax(PSNR) + (1 - alpha) * (1 - minmax(D)), a normality score;
    the returned error is 1 - S (anomaly-positive).

    Returns:
        ``(errors (N,), extra arrays to save: psnr/v, distance/v, memory_usage, memory_updates)``.
    """
    if protocol.alpha is None or protocol.update_threshold is None:
        raise ValueError("an MNAD model needs protocol.alpha and protocol.update_threshold (protocol name: mnad)")
    model.eval()
    index = loader.index
    trained = model.memory.clone()
    memory = trained.clone()
    psnr, distance = np.empty(len(index)), np.empty(len(index))
    usage = torch.zeros(trained.shape[0], dtype=torch.long)
    updates, previous_video = 0, None
    for ids, clips in loader.batches():  # index order: videos in sorted order, clips by start frame
        video = int(index.video_ids[ids[0]])
        if protocol.reset_memory_per_video and video != previous_video:
            memory = trained.clone()
        previous_video = video
        p, d, weighted, new_memory, top1 = model.test_frame(clips.to(device), memory, protocol.update_threshold)
        psnr[ids[0]], distance[ids[0]] = p, d
        usage += torch.bincount(top1.cpu(), minlength=len(usage))
        updates += int(new_memory is not memory)
        memory = new_memory
    errors = np.empty(len(index))
    extra: dict[str, np.ndarray] = {"memory_usage": usage.numpy(), "memory_updates": np.array(updates)}
    for vid, name in enumerate(index.videos):
        mine = index.video_ids == vid
        normality = protocol.alpha * minmax(psnr[mine]) + (1 - protocol.alpha) * (1 - minmax(distance[mine]))
        errors[mine] = 1 - normality
        extra[f"psnr/{name}"], extra[f"distance/{name}"] = psnr[mine], distance[mine]
    log.info(
        "MNAD test: %d of %d frames updated the memory (threshold %g, reset per video %s)",
        updates,
        len(index),
        protocol.update_threshold,
        protocol.reset_memory_per_video,
    )
    return errors, extra


def ammc_errors(
    psnr: dict[str, np.ndarray], commit: dict[str, np.ndarray], commit_weight: float, smoothing_mu: float
) -> dict[str, np.ndarray]:
    """AMMC-Net's score (eval_metric.py) as an anomaly-positive error per scored frame of each video.

    Args:
        psnr: per video, (N,) PSNR of each clip's predicted frame (only frames a clip scores).
        commit: per video, (N,) the appearance stream's commit loss of each clip: one value per
            frame (the official code stores one per batch of 16 clips, a correction recorded in
            the protocol as ``commit: per_frame``).
        commit_weight: lambda; smoothing_mu: mu (1 = no smoothing).

    Steps: min-max each term per video, then again over the concatenation of all videos (as
    the official code; after the first pass every non-constant video already spans [0, 1], so
    the second changes nothing unless every video is constant); normality
    S = (1 - lambda) PSNR_n + lambda (1 - commit_n); S'_i = (1 - mu) S_{i-1} + mu S_i, a 2-tap
    filter on the unsmoothed S (not an EMA), within each video (S'_0 = S_0; a filter run over
    the concatenation would mix the last frame of one video into the first of the next);
    error = 1 - S'. The first frames of a video that no clip scores are left to the protocol's
    ``edges`` (official: dropped, as here).
    """
    videos = list(psnr)
    terms = {}
    for name, values in (("psnr", psnr), ("commit", commit)):
        per_video = {v: minmax(np.asarray(values[v], dtype=np.float64)) for v in videos}
        joined = minmax(np.concatenate([per_video[v] for v in videos]))
        bounds = np.cumsum([0] + [len(per_video[v]) for v in videos])
        terms[name] = {v: joined[bounds[i] : bounds[i + 1]] for i, v in enumerate(videos)}
    errors = {}
    for v in videos:
        normality = (1 - commit_weight) * terms["psnr"][v] + commit_weight * (1 - terms["commit"][v])
        smoothed = normality.copy()
        smoothed[1:] = (1 - smoothing_mu) * normality[:-1] + smoothing_mu * normality[1:]
        errors[v] = 1 - smoothed
    return errors


@torch.no_grad()
def ammc_clip_scores(
    model: torch.nn.Module, loader: ClipLoader, protocol: Protocol, device: torch.device
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """AMMC-Net's test procedure: PSNR and commit of every clip (``model.test_terms``), combined
    by :func:`ammc_errors` under the protocol's ``commit_weight`` and ``smoothing_mu``.

    Returns:
        ``(errors (N,) in index order, extra arrays to save: psnr/v and commit/v per video)``, so
        that a score file can be recombined under other weights without the model.
    """
    if protocol.commit_weight is None or protocol.smoothing_mu is None:
        raise ValueError(
            "an AMMC-Net model needs protocol.commit_weight and protocol.smoothing_mu (protocol name: ammc)"
        )
    model.eval()
    index = loader.index
    psnr, commit = np.empty(len(index)), np.empty(len(index))
    for ids, clips in loader.batches():
        terms = model.test_terms(clips.to(device))
        psnr[ids] = terms["psnr"].double().cpu().numpy()
        commit[ids] = terms["commit"].double().cpu().numpy()
    mine = {name: index.video_ids == vid for vid, name in enumerate(index.videos)}
    per_video = ammc_errors(
        {v: psnr[m] for v, m in mine.items()},
        {v: commit[m] for v, m in mine.items()},
        protocol.commit_weight,
        protocol.smoothing_mu,
    )
    errors = np.empty(len(index))
    extra: dict[str, np.ndarray] = {}
    for name, m in mine.items():
        errors[m] = per_video[name]
        extra[f"psnr/{name}"], extra[f"commit/{name}"] = psnr[m], commit[m]
    return errors, extra


def recombine_ammc(
    scores: dict[str, np.ndarray], path: str | Path, commit_weight: float, smoothing_mu: float
) -> dict[str, np.ndarray]:
    """Raw per-frame scores of an AMMC-Net score file under other (lambda, mu), from the PSNR and
    commit terms it keeps (``psnr/v``, ``commit/v``): ``vadbench evaluate --commit-weight``.

    Args:
        scores: the file's raw scores per video (NaN where no clip landed), as read.
        path: the ``.npz`` they were read from.

    Raises:
        DatasetError: the file holds no AMMC-Net terms, or terms that do not fit its scores.
    """
    from vadbench.errors import DatasetError

    with np.load(path, allow_pickle=False) as data:
        missing = [v for v in scores if f"psnr/{v}" not in data.files or f"commit/{v}" not in data.files]
        if missing:
            raise DatasetError(
                f"{path}: no AMMC-Net PSNR and commit terms for video(s) {', '.join(missing[:5])}; "
                "--commit-weight and --smoothing-mu recombine only an AMMC-Net score file"
            )
        psnr = {v: np.asarray(data[f"psnr/{v}"], dtype=np.float64) for v in scores}
        commit = {v: np.asarray(data[f"commit/{v}"], dtype=np.float64) for v in scores}
    errors = ammc_errors(psnr, commit, commit_weight, smoothing_mu)
    out = {}
    for v, raw in scores.items():
        scored = ~np.isnan(raw)
        if scored.sum() != len(errors[v]):
            raise DatasetError(
                f"{path}: video {v} has {scored.sum()} scored frames but {len(errors[v])} AMMC-Net terms"
            )
        out[v] = np.full(len(raw), np.nan)
        out[v][scored] = errors[v]
    return out


def score_videos(
    model_path: str | Path,
    arrays_dir: str | Path,
    index_path: str | Path,
    labels_path: str | Path,
    protocol: Protocol,
    out_path: str | Path,
    batch_size: int = 16,
    threads: int = 1,
    flow_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Score every test video with the model in ``model_path`` and save the ``.npz``.

    ``flow_dir``: the optical flow of the arrays, for a model that reads it (AMMC-Net).

    Raises:
        DatasetError: the model was trained on other data than ``arrays_dir`` and ``index_path``
            (see :mod:`vadbench.fingerprint`), or ``model_path`` is not a vadbench model.
    """
    from vadbench.devices import job_device

    with job_device() as device:
        return _score_on(
            device, model_path, arrays_dir, index_path, labels_path, protocol, out_path, batch_size, threads, flow_dir
        )


def _score_on(
    device: torch.device,
    model_path,
    arrays_dir,
    index_path,
    labels_path,
    protocol: Protocol,
    out_path,
    batch_size: int,
    threads: int,
    flow_dir,
) -> dict[str, Any]:
    from vadbench.training import flow_input, load_trained, preset_layout

    use_host(threads)
    # refuses a model of other data (frames, clips and, for a model that reads it, flow)
    model, run = load_trained(model_path, device, arrays_dir=arrays_dir, index_path=index_path, flow_dir=flow_dir)
    flow = flow_input(model, flow_dir, run["preset"])
    if run["preset"]["clip_length"] != protocol.clip_length:
        raise ValueError(
            f"model trained on {run['preset']['clip_length']}-frame clips, protocol says {protocol.clip_length}"
        )
    index = load_index(index_path, "test")
    arrays: dict[str, Any] = {"videos": np.array(index.videos), "protocol": json.dumps(protocol.to_dict())}
    layout = preset_layout(run["preset"])
    errors, extra = model_clip_scores(model, arrays_dir, index, protocol, batch_size, device, flow, layout)
    arrays.update(extra)
    labels = np.load(labels_path)
    for vid, name in enumerate(index.videos):
        mine = index.video_ids == vid
        label = labels[name]
        raw = frame_scores(index.starts[mine], errors[mine], len(label), protocol)
        arrays.update({f"raw/{name}": raw, f"label/{name}": label})
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    log.info("scored %d clips of %d test videos", len(errors), len(index.videos))
    return {"clips": len(errors), "videos": len(index.videos)}


def model_clip_scores(
    model: torch.nn.Module,
    arrays_dir,
    index,
    protocol: Protocol,
    batch_size: int,
    device: torch.device,
    flow=None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every test clip's error under the model's own test procedure (MNAD's test-time memory,
    AMMC-Net's PSNR and commit, or a stateless ``clip_errors`` under ``protocol.error``), in index
    order, and the extra arrays that procedure saves. ``memory_format``: the layout of a stateless
    model's weights, which its batches are given in (:func:`clip_errors`).

    Raises:
        ConfigError: ``protocol.error`` set for a model with its own test procedure, or unset
            for a stateless (MemAE/AE) model.
    """
    own = "MNAD" if hasattr(model, "test_frame") else ("AMMC-Net" if hasattr(model, "test_terms") else None)
    if own is not None and protocol.error is not None:
        raise ConfigError(
            f"protocol.error = {protocol.error!r} is a MemAE/AE clip error, but this {own} model is scored by "
            f"its own test procedure; leave error out (protocol name {'mnad' if own == 'MNAD' else 'ammc'})"
        )
    if own is None and protocol.error is None:
        raise ConfigError(
            f"protocol {protocol.name!r} sets no clip error for this {type(model).__name__} model; "
            f"set protocol.error to one of {', '.join(ERROR_MEASURES)} (protocol name memae)"
        )
    if own == "MNAD":
        return mnad_clip_scores(model, ClipLoader(arrays_dir, "test", index, 1), protocol, device)
    if own == "AMMC-Net":
        return ammc_clip_scores(model, ClipLoader(arrays_dir, "test", index, batch_size, flow=flow), protocol, device)
    loader = ClipLoader(arrays_dir, "test", index, batch_size)
    return clip_errors(model, loader, device, protocol.error, memory_format), {}
