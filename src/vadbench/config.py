"""Validate the workflow config and resolve what one (dataset, variant, seed) run needs.

The config is checked against ``workflow/schemas/config.schema.yaml`` (JSON Schema) and then
for consistency across sections (a preset that exists, a known model and layout). Every
error names the offending key. Nothing here reads files other than the schema or the
environment: the resolved dicts are handed to the package's functions.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from vadbench.errors import ConfigError
from vadbench.protocol import Protocol


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate_config(config: dict[str, Any], schema_path: str | Path) -> None:
    """Raise :class:`ConfigError` naming the first invalid key of ``config``."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        raise ConfigError(f"config key {_key(err.absolute_path)}: {err.message}")
    from vadbench.datasets import LAYOUTS
    from vadbench.models import MODELS

    for name, dataset in config["datasets"].items():
        preset = dataset.get("preset", config["preset"])
        if preset not in config["presets"]:
            key = f"datasets.{name}.preset" if "preset" in dataset else "preset"
            raise ConfigError(f"config key {key}: preset {preset!r} is not defined under presets ({', '.join(config['presets'])})")
        if dataset["layout"] not in LAYOUTS:
            raise ConfigError(f"config key datasets.{name}.layout: unknown layout {dataset['layout']!r}; known: {', '.join(LAYOUTS)}")
    for name, variant in config["variants"].items():
        if variant["model"] not in MODELS:
            raise ConfigError(f"config key variants.{name}.model: unknown model {variant['model']!r}; known: {', '.join(MODELS)}")
    for name, preset in config["presets"].items():
        t, (h, w) = preset["clip_length"], preset["frame_size"]
        if t % 8 or h % 16 or w % 16:
            raise ConfigError(
                f"config key presets.{name}: clip_length {t} must be a multiple of 8 and frame_size {h}x{w} "
                "multiples of 16 (the 3D-conv encoder halves time three times and space four times)"
            )


def preset_of(config: dict[str, Any], dataset: str) -> tuple[str, dict[str, Any]]:
    """The (name, values) of the preset a dataset uses: its own ``preset`` key or the global one."""
    name = config["datasets"][dataset].get("preset", config["preset"])
    return name, config["presets"][name]


def protocol_of(config: dict[str, Any], dataset: str, variant: str) -> Protocol:
    """The evaluation protocol of a variant on a dataset (variant options + preset clip length)."""
    _, preset = preset_of(config, dataset)
    return Protocol(clip_length=preset["clip_length"], **config["variants"][variant].get("protocol", {}))


def run_config(config: dict[str, Any], dataset: str, variant: str, seed: int) -> dict[str, Any]:
    """Everything that determines one trained model, as a plain dict saved with its weights."""
    preset_name, preset = preset_of(config, dataset)
    spec = config["variants"][variant]
    hparams = {"in_channels": preset["channels"], "widths": list(preset["widths"]), **spec.get("params", {})}
    return {
        "dataset": dataset,
        "variant": variant,
        "seed": int(seed),
        "model": spec["model"],
        "model_params": hparams,
        "preset_name": preset_name,
        "preset": copy.deepcopy(preset),
        "protocol": protocol_of(config, dataset, variant).to_dict(),
    }


def flat_params(run: dict[str, Any]) -> dict[str, str]:
    """``run_config`` flattened to ``section.key`` strings, for MLflow params."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = str(value)

    walk("", run)
    return flat
