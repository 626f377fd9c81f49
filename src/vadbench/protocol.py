"""The evaluation protocol: how clip errors become per-frame scores, and which frames count.

One :class:`Protocol` object drives scoring, the metrics, the plots and every JSON record, so
what is written is what was computed. The steps, in order:

1. a clip's error goes to one of its frames (``scored_frame``; MemAE: the centre, index 8 of 16);
2. frames no clip lands on are dropped from every metric (``edges="drop"``: official MemAE, the
   first 8 and last 7 frames of each video) or take the nearest scored frame's score (``pad``);
3. optional temporal smoothing, a Gaussian of ``smoothing_sigma`` frames over the scored frames;
4. per-video min-max normalisation (official; uses each test video's own statistics) or none.

Before step 1, a stateless model's clip error is the measure ``error`` names (MemAE and its AE
baseline only; MNAD and AMMC-Net score with their own test procedures and record ``None``):
``memae_l2``, the official MemAE branch's mean over (T, H, W) of the channel-wise L2 residual in
[-1, 1], or ``official_mse``, the official testing script's AE branch, the mean squared error
in [0, 1] (script_testing.py). The error is computed when the ``score`` rule runs, so it is part
of the score file and cannot be changed afterwards by re-evaluating it.

Named protocols reproduce a paper's evaluation (``NAMED``); a variant's config picks one by
``name`` and may override single fields. Everything is anomaly-positive: higher is more anomalous.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np

from vadbench.errors import ConfigError

ScoredFrame = Literal["first", "centre", "last"]
Edges = Literal["drop", "pad"]
Normalisation = Literal["per_video_minmax", "none"]
ErrorMeasure = Literal["memae_l2", "official_mse"]

#: The clip errors a MemAE/AE model can be scored with (:meth:`vadbench.models.memae.MemAE.clip_errors`).
ERROR_MEASURES = ("memae_l2", "official_mse")

_CHOICES = {
    "scored_frame": ("first", "centre", "last"),
    "edges": ("drop", "pad"),
    "normalisation": ("per_video_minmax", "none"),
}

#: Gaussian smoothing wider than this many frames is refused (a typo, not a protocol).
MAX_SMOOTHING_SIGMA = 10_000

#: Each paper's own evaluation (../shared/docs/methods.md section 6), by name.
NAMED: dict[str, dict[str, Any]] = {
    # MemAE, script_testing.py + utils/eval.py: centre frame, edges never scored, per-video min-max
    # (its AE branch is scored with error="official_mse" instead: the ae_mse variant)
    "memae": {
        "scored_frame": "centre",
        "edges": "drop",
        "normalisation": "per_video_minmax",
        "smoothing_sigma": 0.0,
        "error": "memae_l2",
    },
    # MNAD, Evaluate.py: the predicted (last) frame is scored, the first t_length-1 frames of every
    # video never are; the score alpha*PSNR_n + (1-alpha)*(1-D_n) is already normalised per video;
    # the test-time memory is carried across videos in processing order (never reset)
    "mnad": {
        "scored_frame": "last",
        "edges": "drop",
        "normalisation": "none",
        "smoothing_sigma": 0.0,
        "alpha": 0.6,
        "update_threshold": 0.01,
        "reset_memory_per_video": False,
        "error": None,
    },
    # AMMC-Net, test_helper.py + eval_metric.py: the predicted (last) frame is scored, the first
    # t_length-1 frames never are; S = (1-lambda)*PSNR_n + lambda*(1-commit_n), normalised per
    # video and then over all videos, then 2-tap smoothed (vadbench.scoring.ammc_errors). The paper's (lambda, mu) per dataset
    # were tuned on the test labels; these defaults were fixed before any test score was seen
    # (equal weights of the two normalised terms, no smoothing, as every other protocol here).
    "ammc": {
        "scored_frame": "last",
        "edges": "drop",
        "normalisation": "none",
        "smoothing_sigma": 0.0,
        "commit_weight": 0.5,
        "smoothing_mu": 1.0,
        "error": None,
    },
}


@dataclass(frozen=True)
class Protocol:
    """Scoring protocol; the defaults are MemAE's ("memae" in the record).

    Attributes:
        clip_length: frames per clip, from the preset.
        scored_frame: which frame of a clip receives the clip's error.
        edges: ``drop`` leaves the frames no clip is assigned to out of the metrics (official
            MemAE); ``pad`` copies the nearest scored frame's score into them.
        normalisation: ``per_video_minmax`` (official; uses test-video statistics) or ``none``.
        smoothing_sigma: Gaussian smoothing of each video's scores, in frames; 0 turns it off.
        alpha: MNAD only: weight of the normalised PSNR against the memory distance in the score.
        update_threshold: MNAD only: a test frame whose weighted error is below it updates the memory.
        reset_memory_per_video: MNAD only: start every test video from the trained memory instead of
            carrying the test-time memory over from the previous video (official: carried, so the
            result depends on video order, which is the sorted video names here).
        commit_weight: AMMC-Net only: the paper's lambda, weight of the appearance commit loss
            against the PSNR in the normality score.
        smoothing_mu: AMMC-Net only: the paper's mu, S'_i = (1-mu) S_{i-1} + mu S_i; 1 turns it off.
        error: MemAE/AE only: the clip error, ``memae_l2`` (official MemAE branch) or
            ``official_mse`` (official AE branch); ``None`` for models with their own test
            procedure (MNAD, AMMC-Net).
        name: the named protocol these settings start from.
    """

    clip_length: int = 16
    scored_frame: ScoredFrame = "centre"
    edges: Edges = "drop"
    normalisation: Normalisation = "per_video_minmax"
    smoothing_sigma: float = 0.0
    alpha: float | None = None
    update_threshold: float | None = None
    reset_memory_per_video: bool = False
    commit_weight: float | None = None
    smoothing_mu: float | None = None
    error: ErrorMeasure | None = "memae_l2"
    name: str = "memae"

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"protocol.{key} = {getattr(self, key)!r}; allowed: {', '.join(allowed)}")
        if not _is_int(self.clip_length) or self.clip_length < 1:
            raise ConfigError(f"protocol.clip_length must be an integer >= 1, got {self.clip_length!r}")
        if not _is_real(self.smoothing_sigma) or not 0 <= self.smoothing_sigma <= MAX_SMOOTHING_SIGMA:
            raise ConfigError(
                f"protocol.smoothing_sigma must be a number of frames in 0..{MAX_SMOOTHING_SIGMA} "
                f"(0 = off), got {self.smoothing_sigma!r}"
            )
        for key in ("alpha", "update_threshold"):
            value = getattr(self, key)
            if value is not None and (not _is_real(value) or not math.isfinite(value)):
                raise ConfigError(f"protocol.{key} must be a finite number or null, got {value!r}")
        for key, low_open in (("commit_weight", False), ("smoothing_mu", True)):
            value = getattr(self, key)
            if value is not None and (not _is_real(value) or not (0 < value <= 1 if low_open else 0 <= value <= 1)):
                raise ConfigError(
                    f"protocol.{key} must be a number in {'(0, 1]' if low_open else '[0, 1]'} or null, got {value!r}"
                )
        if self.error is not None and self.error not in ERROR_MEASURES:
            raise ConfigError(
                f"protocol.error = {self.error!r}; allowed: {', '.join(ERROR_MEASURES)} (MemAE/AE models), "
                "or null for a model scored by its own test procedure (MNAD, AMMC-Net)"
            )
        if not isinstance(self.reset_memory_per_video, bool):
            raise ConfigError(
                f"protocol.reset_memory_per_video must be true or false, got {self.reset_memory_per_video!r}"
            )
        if not isinstance(self.name, str):
            raise ConfigError(f"protocol.name must be a string, got {self.name!r}")

    @classmethod
    def named(cls, name: str = "memae", clip_length: int = 16, **overrides: Any) -> "Protocol":
        """The protocol ``name`` (a key of :data:`NAMED`) with single fields overridden."""
        if name not in NAMED:
            raise ConfigError(f"protocol.name = {name!r}; known protocols: {', '.join(sorted(NAMED))}")
        known = {f.name for f in fields(cls)} - {"name", "clip_length"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown protocol key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        return cls(clip_length=clip_length, name=name, **{**NAMED[name], **overrides})

    @property
    def offset(self) -> int:
        """Index within a clip of the frame that receives its score (8 for centre of 16)."""
        return {"first": 0, "centre": self.clip_length // 2, "last": self.clip_length - 1}[self.scored_frame]

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["scored_frame_index"] = self.offset
        return record

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Protocol":
        """The protocol of a record written by :meth:`to_dict`; unknown keys are refused.

        A record written before ``error`` existed gets its named protocol's error (``memae``:
        ``memae_l2``, the only measure there was; ``mnad``, ``ammc``: ``None``).

        Raises:
            ConfigError: not a mapping, an unknown key (named with the known keys), a bad value,
                or a ``scored_frame_index`` that the other fields do not give.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a protocol record must be a mapping of keys to values, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in set(data) - known - {"scored_frame_index"})
        if unknown:
            raise ConfigError(
                f"unknown protocol key(s) {', '.join(unknown)}; known keys: "
                f"{', '.join(sorted(known | {'scored_frame_index'}))}"
            )
        values = {k: v for k, v in data.items() if k != "scored_frame_index"}
        if "error" not in values:
            name = values.get("name", "memae")
            values["error"] = (NAMED.get(name, {}) if isinstance(name, str) else {}).get("error", cls.error)
        protocol = cls(**values)
        if "scored_frame_index" in data and data["scored_frame_index"] != protocol.offset:
            raise ConfigError(
                f"protocol scored_frame_index = {data['scored_frame_index']!r}, but scored_frame "
                f"{protocol.scored_frame!r} of {protocol.clip_length} frames is index {protocol.offset}"
            )
        return protocol

    def apply(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Steps 2-4 on one video's raw per-frame scores (NaN where no clip landed).

        Returns:
            ``(scores, scored)``: (T,) float64 scores, NaN outside ``scored``; (T,) bool, the
            frames that enter the metrics.
        """
        raw = np.asarray(raw, dtype=np.float64)
        if self.edges == "pad":
            raw = pad_nearest(raw)
        scored = ~np.isnan(raw)
        scores = np.full_like(raw, np.nan)
        values = raw[scored]
        if self.smoothing_sigma > 0 and len(values):
            # here, not at the top: every job reads a Protocol, few smooth (SciPy costs 0.4 s to import)
            from scipy.ndimage import gaussian_filter1d

            values = gaussian_filter1d(values, self.smoothing_sigma, mode="nearest")
        if self.normalisation == "per_video_minmax" and len(values):
            values = minmax(values)
        scores[scored] = values
        return scores, scored


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant array maps to zeros."""
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


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
