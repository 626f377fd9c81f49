"""Per-frame anomaly scores of the test videos (the ``score`` rule).

Each test clip's error (the model's ``clip_errors``) is assigned to one frame of the clip
chosen by the :class:`~vadbench.protocol.Protocol` (MemAE: the centre, index 8 of 16). Frames
no clip is assigned to are NaN in the raw scores and are marked unscored: with
``edges="drop"`` they are left out of every metric (official MemAE), with ``edges="pad"``
they take the nearest scored frame's score. Scores are anomaly-positive.

Saved ``.npz`` keys, for every test video ``v`` (names in ``videos``):
``raw/v`` (float64 errors after edge handling), ``norm/v`` (after the protocol's normalisation), ``scored/v``
(bool, frames that enter the metrics), ``label/v`` (uint8 0/1), plus ``protocol`` (JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vadbench.clips import ClipLoader, load_index
from vadbench.fileio import atomic_path
from vadbench.logs import get_logger
from vadbench.protocol import Protocol

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


def pad_nearest(scores: np.ndarray) -> np.ndarray:
    """Fill NaNs with the score of the nearest scored frame (the earlier one on a tie)."""
    valid = np.flatnonzero(~np.isnan(scores))
    if len(valid) == 0:
        return scores.copy()
    positions = np.arange(len(scores))
    right = np.clip(np.searchsorted(valid, positions), 0, len(valid) - 1)
    left = np.clip(right - 1, 0, len(valid) - 1)
    pick = np.where(np.abs(valid[left] - positions) <= np.abs(valid[right] - positions), valid[left], valid[right])
    return scores[pick]


def normalise(scores: np.ndarray, scored: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Apply the protocol's normalisation using only the scored frames' statistics."""
    if protocol.normalisation == "none":
        return scores.copy()
    values = scores[scored]
    lo, hi = values.min(), values.max()
    out = (scores - lo) / (hi - lo) if hi > lo else np.zeros_like(scores)
    return np.where(scored, out, np.nan)


def video_scores(raw: np.ndarray, protocol: Protocol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(raw after edge handling, normalised, scored mask)`` of one video under ``protocol``."""
    if protocol.edges == "pad":
        raw = pad_nearest(raw)
    scored = ~np.isnan(raw)
    return raw, normalise(raw, scored, protocol), scored


@torch.no_grad()
def clip_errors(model: torch.nn.Module, loader: ClipLoader, device: torch.device) -> np.ndarray:
    """Errors of every clip of ``loader`` in index order: (N,) float64."""
    errors = np.empty(len(loader.index))
    for ids, clips in loader.batches():
        errors[ids] = model.clip_errors(clips.to(device)).double().cpu().numpy()
    return errors


def score_videos(
    model_path: str | Path,
    arrays_dir: str | Path,
    index_path: str | Path,
    labels_path: str | Path,
    protocol: Protocol,
    out_path: str | Path,
    batch_size: int = 16,
    threads: int = 1,
) -> dict[str, Any]:
    """Score every test video with the model in ``model_path`` and save the ``.npz``."""
    from vadbench.training import load_trained, pick_device

    torch.set_num_threads(threads)
    device = pick_device()
    model, run = load_trained(model_path, device)
    if run["preset"]["clip_length"] != protocol.clip_length:
        raise ValueError(f"model trained on {run['preset']['clip_length']}-frame clips, protocol says {protocol.clip_length}")
    index = load_index(index_path, "test")
    loader = ClipLoader(arrays_dir, "test", index, batch_size)
    errors = clip_errors(model, loader, device)
    labels = np.load(labels_path)
    arrays: dict[str, Any] = {"videos": np.array(index.videos), "protocol": json.dumps(protocol.to_dict())}
    for vid, name in enumerate(index.videos):
        mine = index.video_ids == vid
        label = labels[name]
        raw = frame_scores(index.starts[mine], errors[mine], len(label), protocol)
        raw, norm, scored = video_scores(raw, protocol)
        arrays.update({f"raw/{name}": raw, f"norm/{name}": norm, f"scored/{name}": scored, f"label/{name}": label})
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    log.info("scored %d clips of %d test videos", len(errors), len(index.videos))
    return {"clips": len(errors), "videos": len(index.videos)}


def load_scores(path: str | Path) -> dict[str, Any]:
    """Read a scores ``.npz`` back: ``{"videos", "protocol", "raw", "norm", "scored", "label"}``."""
    with np.load(path) as data:
        videos = [str(v) for v in data["videos"]]
        out: dict[str, Any] = {"videos": videos, "protocol": Protocol.from_dict(json.loads(str(data["protocol"])))}
        for key in ("raw", "norm", "scored", "label"):
            out[key] = {v: data[f"{key}/{v}"] for v in videos}
    return out
