"""The evaluation protocol: how clip errors become per-frame scores, and which frames count.

One :class:`Protocol` object drives scoring, the metrics and every JSON record, so what is
written is what was computed. Defaults reproduce MemAE's official evaluation
(script_testing.py, utils/eval.py): the clip's error goes to its centre frame (index 8 of a
16-frame clip), the first 8 and last 7 frames of each video are never scored and are left
out of the AUC, and errors are min-max normalised per video before the videos are
concatenated. Everything is anomaly-positive: a higher score means more anomalous.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from vadbench.errors import ConfigError

ScoredFrame = Literal["first", "centre", "last"]
Edges = Literal["drop", "pad"]
Normalisation = Literal["per_video_minmax", "none"]

_CHOICES = {
    "scored_frame": ("first", "centre", "last"),
    "edges": ("drop", "pad"),
    "normalisation": ("per_video_minmax", "none"),
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
    """

    clip_length: int = 16
    scored_frame: ScoredFrame = "centre"
    edges: Edges = "drop"
    normalisation: Normalisation = "per_video_minmax"
    name: str = "memae"

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"protocol.{key} = {getattr(self, key)!r}; allowed: {', '.join(allowed)}")
        if self.clip_length < 1:
            raise ConfigError(f"protocol clip_length must be >= 1, got {self.clip_length}")

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
        data = {k: v for k, v in data.items() if k != "scored_frame_index"}
        return cls(**data)
