"""Validate the workflow config and resolve what one (dataset, variant, seed) run needs.

The config is checked against ``workflow/schemas/config.schema.yaml`` (JSON Schema) and then
for consistency across sections (a preset that exists, a known model and layout, a pinned
digest for every download, an experiment pattern with no field but ``{dataset}``). Every
error names the offending key. Values that ``snakemake --config`` hands over as strings
(``seeds``, the ``archives`` caps) are normalised first. Nothing here reads files other than
the schema or the environment: the resolved dicts are handed to the package's functions.
"""

from __future__ import annotations

import copy
import re
import string
from pathlib import Path
from typing import Any

import yaml

from vadbench.errors import ConfigError
from vadbench.protocol import Protocol


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def normalise_seeds(value: Any) -> Any:
    """``seeds`` as a list of ints, whatever form the command line gave it.

    ``snakemake --config seeds=[0,1,2]`` hands over a list of strings (it parses values with
    YAML's BaseLoader), ``seeds=3`` an int and ``seeds=0,1,2`` a string. Anything that is not
    a seed list is returned as it is, for the schema to name.
    """
    items = r"[0-9]+(\s*,\s*[0-9]+)*"
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, str) and re.fullmatch(rf"\[\s*{items}\s*\]|{items}", value.strip()):
        return [int(s) for s in re.findall(r"[0-9]+", value)]
    if isinstance(value, (list, tuple)):
        return [int(s) if isinstance(s, str) and re.fullmatch(r"\s*[0-9]+\s*", s) else s for s in value]
    return value


def _number(value: Any) -> Any:
    """``"200"`` -> 200, ``"1e11"`` -> 100000000000 (``--config archives={max_ratio: 200}`` gives strings)."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    return value


def _check_pinned(config: dict[str, Any]) -> None:
    """Every URL source pins its SHA-256 (the schema requires it too; this says how to get one)."""
    datasets = config.get("datasets")
    if not isinstance(datasets, dict):
        return
    for name, dataset in datasets.items():
        if not isinstance(dataset, dict):
            continue
        entries = [("sha256", dataset)]
        extra = dataset.get("extra_sources")
        if isinstance(extra, list):
            entries += [(f"extra_sources.{i}.sha256", e) for i, e in enumerate(extra) if isinstance(e, dict)]
        for key, entry in entries:
            source = entry.get("source")
            if isinstance(source, str) and re.match(r"^https?://", source) and not entry.get("sha256"):
                raise ConfigError(
                    f"config key datasets.{name}.{key}: {source} is downloaded, so its SHA-256 must be pinned "
                    "(a tampered or substituted file would otherwise be used unnoticed). Download the file once, "
                    f"print its digest with `sha256sum FILE` (macOS: `shasum -a 256 FILE`) and set "
                    f"datasets.{name}.{key}: <64 hex digits>."
                )


def _check_experiment(pattern: str) -> None:
    """The experiment pattern names no field but ``{dataset}`` (a job would fail on it later)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as err:
        raise ConfigError(
            f"config key mlflow.experiment: {pattern!r} is not a valid pattern ({err}); "
            "write braces other than {dataset} doubled, {{ and }}"
        ) from None
    for field in fields:
        if field != "dataset":
            raise ConfigError(
                f"config key mlflow.experiment: {pattern!r} uses {{{field}}}, but only {{dataset}} is replaced "
                "(one experiment per dataset). Remove the field, or double the braces for literal ones."
            )


def validate_config(config: dict[str, Any], schema_path: str | Path) -> None:
    """Raise :class:`ConfigError` naming the first invalid key of ``config``.

    ``seeds`` and the ``archives`` caps given on the command line are normalised in place first
    (:func:`normalise_seeds`; Snakemake hands nested ``--config`` values over as strings), so
    that ``--config seeds=[0,1,2,3,4]`` works as the README shows.
    """
    if "seeds" in config:
        config["seeds"] = normalise_seeds(config["seeds"])
    if isinstance(config.get("archives"), dict):
        config["archives"] = {k: _number(v) for k, v in config["archives"].items()}
    mlflow = config.get("mlflow")
    if isinstance(mlflow, dict):  # --config 'mlflow={system_metrics: false}' hands over strings
        if isinstance(mlflow.get("system_metrics"), str) and mlflow["system_metrics"].lower() in ("true", "false"):
            mlflow["system_metrics"] = mlflow["system_metrics"].lower() == "true"
        if "system_metrics_interval" in mlflow:
            mlflow["system_metrics_interval"] = _number(mlflow["system_metrics_interval"])
    _check_pinned(config)
    schema = yaml.safe_load(Path(schema_path).read_text())
    import jsonschema  # here, not at the top: run_config and the presets are used where it is not installed

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    if errors:
        err = errors[0]
        raise ConfigError(f"config key {_key(err.absolute_path)}: {err.message}")
    from vadbench.datasets import LAYOUTS
    from vadbench.models import MODELS

    _check_experiment(config["mlflow"]["experiment"])
    for name, dataset in config["datasets"].items():
        preset = dataset.get("preset", config["preset"])
        if preset not in config["presets"]:
            key = f"datasets.{name}.preset" if "preset" in dataset else "preset"
            raise ConfigError(
                f"config key {key}: preset {preset!r} is not defined under presets ({', '.join(config['presets'])})"
            )
        if dataset["layout"] not in LAYOUTS:
            raise ConfigError(
                f"config key datasets.{name}.layout: unknown layout {dataset['layout']!r}; known: {', '.join(LAYOUTS)}"
            )
        if dataset.get("label_source", "archive") == "ucsd_official" and dataset["layout"] not in ("liu", "ucsd"):
            raise ConfigError(
                f"config key datasets.{name}.label_source: ucsd_official (the UCSD .m intervals) applies to UCSD "
                f"Ped1/Ped2 in layout ucsd, or Ped2 in layout liu; dataset {name} has layout {dataset['layout']}. "
                "Use label_source: archive."
            )
    for name, variant in config["variants"].items():
        if variant["model"] not in MODELS:
            raise ConfigError(
                f"config key variants.{name}.model: unknown model {variant['model']!r}; known: {', '.join(MODELS)}"
            )
        _check_streams_from(config, name, variant)
        stream = variant.get("params", {}).get("stream", "appearance")
        if variant["model"] == "ammc_stream" and stream != "appearance":
            raise ConfigError(
                f"config key variants.{name}.params.stream: {stream!r}; a stream scored on its own must be "
                "the appearance stream (AMMC-Net's score reads the predicted frame, not the flow)"
            )
    for key, known in (("datasets", config["datasets"]), ("variants", config["variants"])):
        for name in config["summary"].get(key, []):
            if name not in known:
                raise ConfigError(
                    f"config key summary.{key}: {name!r} is not configured under {key} ({', '.join(known)})"
                )
    for name in config["datasets"]:
        try:
            localization_of(config, name)
        except ConfigError as err:
            raise ConfigError(f"config key localization or datasets.{name}.localization: {err}") from None
    bases = {config["preset"], *(d.get("preset", config["preset"]) for d in config["datasets"].values())}
    for name, variant in config["variants"].items():
        for base, target in variant.get("presets", {}).items():
            if target not in config["presets"]:
                raise ConfigError(
                    f"config key variants.{name}.presets.{base}: preset {target!r} is not defined under presets"
                )
        try:
            protocol = protocol_of(config, next(iter(config["datasets"])), name)
        except ConfigError as err:
            raise ConfigError(f"config key variants.{name}.protocol: {err}") from None
        _check_error_measure(name, variant["model"], protocol.error)
        for base in sorted(bases):
            if base not in config["presets"]:
                continue
            target = variant.get("presets", {}).get(base, base)
            try:
                _check_preset_for_model(target, config["presets"][target], variant["model"])
            except ConfigError as err:
                if target != base:
                    raise
                raise ConfigError(
                    f"{err}. Variant {name} runs at preset {base} of a dataset: give it a preset of its own "
                    f"with variants.{name}.presets.{base}: <preset>"
                ) from None
    for name, variant in config["variants"].items():  # once every preset it names is known to exist
        _check_model_from(config, name, variant)


#: Models scored by a stateless clip error, the protocol's ``error`` (MemAE and its AE baseline).
CLIP_ERROR_MODELS = ("memae", "ae")


def _check_error_measure(name: str, model: str, error: str | None) -> None:
    """``protocol.error`` is set exactly for the models whose clip error it names (MemAE, AE)."""
    key = f"config key variants.{name}.protocol.error"
    if model in CLIP_ERROR_MODELS and error is None:
        raise ConfigError(
            f"{key}: variant {name} (model {model}) is scored by a clip error; set error to memae_l2 "
            "(official MemAE) or official_mse (official AE), or use protocol name memae"
        )
    if model not in CLIP_ERROR_MODELS and error is not None:
        raise ConfigError(
            f"{key}: {error!r} is a MemAE/AE clip error, but variant {name} is model {model}, scored by its "
            f"own test procedure; remove the key (and use the protocol name of that model)"
        )


def _check_model_from(config: dict[str, Any], name: str, variant: dict[str, Any]) -> None:
    """``model_from`` names a variant that trains its own model, the very model this one would train."""
    owner = variant.get("model_from")
    if owner is None:
        return
    key = f"config key variants.{name}.model_from"
    if variant["model"] in AMMC_MODELS or "streams_from" in variant:
        raise ConfigError(f"{key}: AMMC-Net variants share trained parts with streams_from instead")
    source = config["variants"].get(owner)
    if owner == name or source is None or "model_from" in source:
        trainers = [v for v, s in config["variants"].items() if "model_from" not in s and v != name]
        raise ConfigError(
            f"{key}: {owner!r} must be another variant that trains its own model (no model_from of its own); "
            f"variants that train: {', '.join(trainers)}"
        )
    for dataset in config["datasets"]:
        mine, theirs = run_config(config, dataset, name, 0), run_config(config, dataset, owner, 0)
        if {**mine, "variant": owner} != theirs:
            changed = parts_that_differ(mine, theirs)
            raise ConfigError(
                f"{key}: on dataset {dataset} {name} would train another model than {owner} ({changed} differ); "
                f"give both the same model, params and presets, or drop model_from so {name} trains its own"
            )


def parts_that_differ(run: dict[str, Any], other: dict[str, Any]) -> str:
    """The top-level keys (model, model_params, preset, ...) in which two run configs differ, the
    variant name aside: why one variant cannot take over another's model."""
    return ", ".join(k for k in run if k != "variant" and run[k] != other.get(k))


def model_owner(config: dict[str, Any], variant: str) -> str:
    """The variant whose trained model ``variant`` scores: ``model_from``, else itself."""
    return config["variants"][variant].get("model_from", variant)


def _check_streams_from(config: dict[str, Any], name: str, variant: dict[str, Any]) -> None:
    """``streams_from`` names an AMMC-Net two-stream variant of the same presets."""
    owner = variant.get("streams_from")
    if owner is None:
        return
    key = f"config key variants.{name}.streams_from"
    if variant["model"] not in AMMC_MODELS:
        raise ConfigError(
            f"{key}: only AMMC-Net variants (model {' or '.join(AMMC_MODELS)}) start from stage-1 streams"
        )
    source = config["variants"].get(owner)
    if source is None or source["model"] != "ammc" or "streams_from" in source:
        raise ConfigError(
            f"{key}: {owner!r} must be a variant of model ammc that trains its own streams "
            f"(no streams_from of its own); AMMC-Net variants: "
            f"{', '.join(v for v, s in config['variants'].items() if s['model'] == 'ammc')}"
        )
    if variant.get("presets", {}) != source.get("presets", {}):
        raise ConfigError(
            f"{key}: its presets {variant.get('presets', {})} differ from {owner}'s "
            f"{source.get('presets', {})}; the streams are trained at {owner}'s"
        )


def _check_preset_for_model(name: str, preset: dict[str, Any], model: str) -> None:
    t, (h, w) = preset["clip_length"], preset["frame_size"]
    if preset.get("memory_format", "contiguous") != "contiguous" and model not in ("ae", "memae"):
        raise ConfigError(
            f"config key presets.{name}.memory_format: {preset['memory_format']} is for the 3D-conv models "
            f"(ae, memae), not {model}; leave it out (contiguous) for this preset"
        )
    if model in AMMC_MODELS:
        if h % 8 or w % 8 or t < 3 or "flow" not in preset:
            raise ConfigError(
                f"config key presets.{name}: AMMC-Net needs frame_size multiples of 8 (its U-Net pools "
                f"three times; got {h}x{w}), clip_length >= 3 (got {t}) and a `flow` section"
            )
    elif model == "mnad":
        if h % 8 or w % 8:
            raise ConfigError(
                f"config key presets.{name}: frame_size {h}x{w} must be multiples of 8 for MNAD "
                "(its encoder pools three times)"
            )
    elif t % 8 or h % 16 or w % 16:
        raise ConfigError(
            f"config key presets.{name}: clip_length {t} must be a multiple of 8 and frame_size {h}x{w} "
            f"multiples of 16 for {model} (the 3D-conv encoder halves time three times and space four times)"
        )


def preset_of(config: dict[str, Any], dataset: str, variant: str | None = None) -> tuple[str, dict[str, Any]]:
    """The (name, values) of the preset a (dataset, variant) uses.

    The dataset's own ``preset`` key or the global one picks the scale (``toy``, ``cpu``,
    ``paper``); a variant whose model needs other inputs maps that scale to its own preset
    (``variants.mnad_pred.presets: {cpu: mnad_pred_cpu}``).
    """
    name = config["datasets"][dataset].get("preset", config["preset"])
    if variant is not None:
        name = config["variants"][variant].get("presets", {}).get(name, name)
    return name, config["presets"][name]


def protocol_of(config: dict[str, Any], dataset: str, variant: str) -> Protocol:
    """The evaluation protocol of a variant on a dataset (variant options + preset clip length)."""
    _, preset = preset_of(config, dataset, variant)
    return Protocol.named(clip_length=preset["clip_length"], **config["variants"][variant].get("protocol", {}))


def localization_of(config: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The ``localization`` settings of a dataset: the global section with the dataset's own
    ``localization`` keys over it (``datasets.toy.localization.videos: true``), checked."""
    from vadbench.maps import LocalizationSettings

    merged = {**config.get("localization", {}), **config["datasets"][dataset].get("localization", {})}
    return LocalizationSettings.from_dict(merged).to_dict()


#: Preset keys that say how a job runs, not what it computes; no part of the run config
#: (:func:`vadbench.training.run_identity`), added back by the train script (:func:`execution_of`).
#: ``score_batch_size`` is read by the score and maps rules only: changing it must not retrain.
EXECUTION_KEYS = ("data_placement", "score_batch_size")


def execution_of(config: dict[str, Any], dataset: str, variant: str) -> dict[str, Any]:
    """The preset's :data:`EXECUTION_KEYS` that are set, for the train script to hand to training."""
    _, preset = preset_of(config, dataset, variant)
    return {k: preset[k] for k in EXECUTION_KEYS if k in preset}


def run_config(config: dict[str, Any], dataset: str, variant: str, seed: int) -> dict[str, Any]:
    """Everything that determines one trained model, as a plain dict saved with its weights."""
    preset_name, preset = preset_of(config, dataset, variant)
    spec = config["variants"][variant]
    hparams = {"in_channels": preset["channels"], "widths": list(preset["widths"]), **spec.get("params", {})}
    if spec["model"] in ("mnad", *AMMC_MODELS):
        hparams["t_length"] = preset["clip_length"]  # MNAD: 1 reconstructs; 5 predicts the 5th frame from 4
    if spec["model"] in AMMC_MODELS and "discriminator_widths" in preset:
        hparams["discriminator_widths"] = list(preset["discriminator_widths"])
    return {
        "dataset": dataset,
        "variant": variant,
        "seed": int(seed),
        "model": spec["model"],
        "model_params": hparams,
        "preset_name": preset_name,
        # how the job runs (data_placement) is no rule param: a changed param would rerun the job
        "preset": copy.deepcopy({k: v for k, v in preset.items() if k not in EXECUTION_KEYS}),
    }


#: AMMC-Net's models: the two-stream network (stage 2) and one stream alone (stage 1).
AMMC_MODELS = ("ammc", "ammc_stream")
#: The streams of stage 1, in the order stage 2 takes them.
STREAMS = ("appearance", "motion")
#: Hyper-parameters of the joint model that a stream alone does not take.
_JOINT_ONLY = ("flow_weight", "freeze_streams")


def streams_owner(config: dict[str, Any], variant: str) -> str | None:
    """The variant whose stage-1 streams ``variant`` uses (``streams_from``, else itself), or
    ``None`` for a variant that trains in one stage (every model but AMMC-Net's two-stream one,
    and a stream that trains itself)."""
    spec = config["variants"][variant]
    if "streams_from" in spec:
        return spec["streams_from"]
    return variant if spec["model"] == "ammc" else None


def streams_needed(config: dict[str, Any], variant: str) -> tuple[str, ...]:
    """The stage-1 streams a variant's ``train`` job starts from (none, both, or the one it promotes)."""
    if streams_owner(config, variant) is None:
        return ()
    spec = config["variants"][variant]
    return (spec.get("params", {}).get("stream", "appearance"),) if spec["model"] == "ammc_stream" else STREAMS


def stream_run_config(config: dict[str, Any], dataset: str, variant: str, seed: int, stream: str) -> dict[str, Any]:
    """The run config of one stage-1 stream of AMMC-Net's ``variant`` (its own, the owner of the streams).

    It holds only what stage 1 depends on: the stream, the hyper-parameters both stages share,
    and the preset with its ``stage1`` section (epochs, batch size) in place of stage 2's, so
    that a change to stage 2 alone keeps the trained streams.
    """
    run = run_config(config, dataset, variant, seed)
    preset = {k: v for k, v in run["preset"].items() if k != "stage1"} | run["preset"].get("stage1", {})
    params = {k: v for k, v in run["model_params"].items() if k not in _JOINT_ONLY} | {"stream": stream}
    return {**run, "model": "ammc_stream", "model_params": params, "preset": preset, "stage": f"stream_{stream}"}


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
