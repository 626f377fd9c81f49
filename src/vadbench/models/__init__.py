"""Model registry: a variant's ``model`` key in the config names one entry here.

Adding a model means one module, one line below and a config variant; nothing else changes.
Every model takes ``in_channels`` and ``widths`` from the preset and its own hyper-parameters
from the variant, and implements ``training_loss(x)`` and either ``clip_errors(x)`` (a stateless
error per clip) or ``test_frame(...)`` (MNAD: a test-time memory carried through the videos),
and ``error_map(x, offset)``: the per-pixel error of the frame a clip scores, the map whose
mean is (or drives) that score (:mod:`vadbench.maps`).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from vadbench.errors import ConfigError
from vadbench.models.ammc import AMMCNet, AMMCStream
from vadbench.models.memae import MemAE
from vadbench.models.mnad import MNAD


def _memae(**kw: Any) -> nn.Module:
    return MemAE(**kw)


def _ae(**kw: Any) -> nn.Module:
    kw = {k: v for k, v in kw.items() if k not in ("memory_size", "shrink_threshold", "entropy_weight", "addressing")}
    return MemAE(memory_size=None, **kw)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "memae": _memae,
    "ae": _ae,
    "mnad": MNAD,
    "ammc": AMMCNet,
    "ammc_stream": AMMCStream,
}


def build_model(name: str, **hparams: Any) -> nn.Module:
    """Instantiate model ``name`` with ``hparams`` (preset widths plus variant options)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None
    try:
        return factory(**hparams)
    except TypeError as err:
        raise ConfigError(f"model {name!r} rejected its hyper-parameters {hparams}: {err}") from None
