"""One function per workflow rule that ties package parts to MLflow tracking.

Each ``workflow/scripts/<rule>.py`` unpacks the ``snakemake`` object and calls one function
here (or one in the module that does the work). They take plain arguments, so the stages
can be driven from a test or a notebook without Snakemake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vadbench.fileio import read_json, write_csv, write_json
from vadbench.logs import get_logger

log = get_logger("pipeline")


def prepare_store(
    tracking_uri: str, experiment_pattern: str, datasets: list[str], artifact_root: str | Path, out_path: str | Path
) -> dict[str, str]:
    """Create the MLflow store and one experiment per dataset before any job logs to it; write
    ``out_path`` with the store (credentials redacted) and experiment name -> id."""
    from vadbench.tracking import experiment_name, init_store, redact_uri

    ids = init_store(tracking_uri, [experiment_name(experiment_pattern, d) for d in datasets], artifact_root)
    write_json(out_path, {"tracking_uri": redact_uri(tracking_uri), "experiments": ids})
    log.info("MLflow store %s holds experiments %s", redact_uri(tracking_uri), ", ".join(ids))
    return ids


def train_run(
    run: dict[str, Any],
    arrays_dir: str | Path,
    index_path: str | Path,
    model_path: str | Path,
    checkpoint_path: str | Path,
    run_info_path: str | Path,
    tracking_uri: str,
    experiment: str,
    threads: int = 1,
    flow_dir: str | Path | None = None,
    streams: dict[str, str | Path] | None = None,
    system_metrics: bool | str = "auto",
    system_metrics_interval: float = 10.0,
    model_from: str | Path | None = None,
) -> None:
    """Train one model and log it to MLflow; a rerun after a crash resumes the same MLflow run.

    The run ends ``FINISHED``, ``KILLED`` when the job is stopped (SIGTERM/SIGINT, training's
    ``Preempted``) or ``FAILED`` on an error; the job that resumes it sets it ``RUNNING`` again.

    AMMC-Net: ``flow_dir`` is the optical flow the model reads; ``streams`` (name -> stage-1
    ``stream_<name>.pt``, with its ``stream_<name>.json`` run info beside it) are the trained
    streams stage 2 starts from, whose digests join ``run`` as ``run["init"]`` and whose MLflow
    runs are recorded in the run info for nesting. A stream variant given its own stream is
    not trained again: :func:`promote_stream`. Nor is a ``model_from`` variant given its owner's
    ``model_from`` model (:func:`promote_model`).

    ``system_metrics`` (config ``mlflow.system_metrics``: ``True``, ``False`` or ``"auto"``, on
    for a GPU job, see :func:`vadbench.tracking.system_metrics_on`) samples MLflow's system
    metrics into the run every ``system_metrics_interval`` seconds while it trains.
    """
    from vadbench.tracking import RunLogger, system_metrics_on, tracked
    from vadbench.training import checkpoint_meta, train_model

    streams = {name: Path(path) for name, path in (streams or {}).items()}
    if model_from is not None:
        return promote_model(run, Path(model_from), model_path, run_info_path, tracking_uri, experiment)
    if run.get("model") == "ammc_stream" and streams:
        return promote_stream(run, streams, model_path, run_info_path, tracking_uri, experiment)
    if streams:
        from vadbench.fingerprint import file_sha256

        run = {**run, "init": {name: file_sha256(path) for name, path in streams.items()}}
    stage = run.get("stage")
    prior = checkpoint_meta(checkpoint_path, run, arrays_dir, index_path, flow_dir).get("mlflow_run_id")
    name = f"{run['variant']}-seed{run['seed']}" + (f"-{stage}" if stage else "")
    tags = _run_tags(run) | ({"stage": stage} if stage else {})
    sample = system_metrics_on(system_metrics, run.get("preset", {}).get("device", "auto"))
    with tracked(
        RunLogger,
        tracking_uri,
        experiment,
        run_id=prior,
        run_name=name,
        tags=tags,
        system_metrics=sample,
        system_metrics_interval=system_metrics_interval,
    ) as tracker:
        trained = train_model(
            run,
            arrays_dir,
            index_path,
            model_path,
            checkpoint_path,
            tracker=tracker,
            threads=threads,
            meta={"mlflow_run_id": tracker.run_id},
            flow_dir=flow_dir,
            init_from=streams or None,
        )
        log_memory_items(model_path, tracker)
        info = _run_info(tracker, tracking_uri, experiment) | {"amp": trained["amp"]}
        if streams:
            info["stage1_mlflow_run_ids"] = [
                read_json(p.with_suffix(".json"))["mlflow_run_id"] for p in streams.values()
            ]
        write_json(run_info_path, info)


def _run_tags(run: dict[str, Any]) -> dict[str, str]:
    """The MLflow tags every seed run of a (dataset, variant, seed) carries."""
    return {
        "dataset": run["dataset"],
        "variant": run["variant"],
        "seed": str(run["seed"]),
        "preset": run["preset_name"],
    }


def _run_info(tracker, tracking_uri: str, experiment: str) -> dict[str, str]:
    """What ``run.json`` holds so that later jobs (auc, plots) log into the same MLflow run."""
    from vadbench.tracking import redact_uri

    return {"mlflow_run_id": tracker.run_id, "tracking_uri": redact_uri(tracking_uri), "experiment": experiment}


def promote_stream(
    run: dict[str, Any],
    streams: dict[str, Path],
    model_path: str | Path,
    run_info_path: str | Path,
    tracking_uri: str,
    experiment: str,
) -> None:
    """Make a trained stage-1 stream this variant's model, with no training (``ammc_appearance``:
    AMMC-Net's appearance stream alone, the very stream that its two-stream model starts from,
    so the two rows differ by stage 2 only). The model keeps the stream's weights, data
    fingerprint and history under this variant's name; its MLflow run gets the stream's params,
    its per-epoch losses and a ``stage1_mlflow_run_id`` tag pointing at the run that trained it.
    """
    from vadbench.training import load_saved

    ((name, path),) = streams.items()
    state = load_saved(path, what=f"{name} stream model")
    owner = path.with_suffix(".json")  # stream_<name>.json beside stream_<name>.pt
    _promote(
        run,
        state,
        path,
        owner,
        "streams_from",
        "stage1_mlflow_run_id",
        model_path,
        run_info_path,
        tracking_uri,
        experiment,
    )


def promote_model(
    run: dict[str, Any],
    path: Path,
    model_path: str | Path,
    run_info_path: str | Path,
    tracking_uri: str,
    experiment: str,
) -> None:
    """Make the model another variant trained this variant's model (``model_from``: ``ae_mse``
    scores ``ae``'s weights with the official AE branch's error), after checking that it is the
    model this variant would have trained; the copy's MLflow run gets a ``model_from_mlflow_run_id``
    tag pointing at the run that trained it.

    Raises:
        ConfigError: the model was trained from another run config (a stale file from before a
            config change, or one put there by hand).
    """
    from vadbench.config import parts_that_differ
    from vadbench.errors import ConfigError
    from vadbench.training import load_saved, run_identity

    state = load_saved(path, what="model")
    trained = run_identity(state["config"])
    run = run_identity(run)
    if {**trained, "variant": run["variant"]} != run:
        changed = parts_that_differ(run, trained)
        raise ConfigError(
            f"{path}: trained for another run config than variant {run['variant']} would train ({changed} differ); "
            f"rerun its owner's training (snakemake --forcerun train) or drop model_from"
        )
    owner = path.parent / "run.json"
    _promote(
        run,
        state,
        path,
        owner,
        "model_from",
        "model_from_mlflow_run_id",
        model_path,
        run_info_path,
        tracking_uri,
        experiment,
    )


def _promote(
    run: dict[str, Any],
    state: dict[str, Any],
    path: Path,
    owner_info: Path,
    link: str,
    tag: str,
    model_path: str | Path,
    run_info_path: str | Path,
    tracking_uri: str,
    experiment: str,
) -> None:
    """Save ``state``, the trained model read from ``path``, as ``run``'s variant's model (config
    key ``link`` names the variant that trained it) with an MLflow run of its own: the owner's
    params and losses, and ``tag`` pointing at the owner's run (from its run info ``owner_info``)."""
    import torch

    from vadbench.config import flat_params
    from vadbench.fileio import atomic_path
    from vadbench.tracking import RunLogger, tracked
    from vadbench.training import log_epoch

    config = {**state["config"], "variant": run["variant"], link: state["config"]["variant"]}
    source = read_json(owner_info)["mlflow_run_id"]
    amp = {"amp": state["amp"]} if "amp" in state else {}
    with tracked(
        RunLogger,
        tracking_uri,
        experiment,
        run_name=f"{run['variant']}-seed{run['seed']}",
        tags=_run_tags(run) | {tag: source} | amp,
    ) as tracker:
        tracker.log_params(flat_params(config))
        for record in state["history"]:
            log_epoch(tracker, record)
        with atomic_path(model_path) as tmp:
            torch.save({**state, "config": config, "meta": {"mlflow_run_id": tracker.run_id}}, tmp)
        write_json(run_info_path, _run_info(tracker, tracking_uri, experiment) | {"amp": state.get("amp")})
    log.info("%s is the model %s trained (%s), unchanged: not trained again", model_path, config[link], path)


def log_memory_items(model_path: str | Path, tracker) -> None:
    """Attach a non-learned memory (MNAD's items, a buffer saved with the weights) to the MLflow
    run as ``memory_items.npy``, (M, D), so runs can be compared without loading the model."""
    import tempfile

    import numpy as np
    import torch

    state = torch.load(model_path, map_location="cpu", weights_only=True)["state_dict"]
    if "memory" not in state:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "memory_items.npy"
        np.save(path, state["memory"].numpy())
        tracker.log_artifact(path)


def evaluate_run(
    scores_path: str | Path,
    run_info_path: str | Path,
    out_path: str | Path,
    maps_dir: str | Path | None = None,
    boxes_path: str | Path | None = None,
    frames_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Compute every metric of one seed and write them as JSON (the seed's MLflow run gets them
    from the ``track`` job of its (dataset, variant), which pays for importing MLflow once).

    Given the seed's maps and boxes and the dataset's canonical frames (where pixel masks live),
    the pixel-level AUC/EER, RBDC and TBDC join the frame-level metrics (None without masks).
    """
    from vadbench.maps import LOCALIZATION_KEYS
    from vadbench.metrics import evaluate
    from vadbench.scorefiles import load_scores

    saved = load_scores(scores_path)
    result = evaluate(saved["raw"], saved["label"], saved["protocol"])
    result.update(dict.fromkeys(LOCALIZATION_KEYS))
    if maps_dir is not None:
        from vadbench.maps import localization_result

        result.update(localization_result(maps_dir, boxes_path, frames_dir))
    info = read_json(run_info_path)
    result["mlflow_run_id"] = info["mlflow_run_id"]
    result["amp"] = info.get("amp")  # the precision it was trained in; None from an older run.json
    if info.get("stage1_mlflow_run_ids"):
        result["stage1_mlflow_run_ids"] = info["stage1_mlflow_run_ids"]
    write_json(out_path, result)
    ci = result["micro_auc_ci95"] or {}
    interval = f"{ci['low']:.4f}-{ci['high']:.4f}" if ci.get("low") is not None else "n/a"
    macro = f"{result['macro_auc']:.4f}" if result["macro_auc"] is not None else "n/a"
    log.info(
        "micro AUC %.4f (95%% CI %s over videos; raw %.4f), macro AUC %s, EER %.4f, AUPR %.4f",
        result["micro_auc"],
        interval,
        result["micro_auc_raw"],
        macro,
        result["eer"],
        result["aupr"],
    )
    return result


def seed_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers of one seed's ``auc.json`` that its MLflow run shows as metrics."""
    from vadbench.aggregate import SUMMARISED

    metrics = {k: result[k] for k in SUMMARISED if result.get(k) is not None}
    ci = result.get("micro_auc_ci95") or {}
    if ci.get("low") is not None:
        metrics.update(micro_auc_ci95_low=ci["low"], micro_auc_ci95_high=ci["high"])
    metrics["frames_scored"] = result["frames_scored"]
    return metrics


def maps_run(
    model_path: str | Path,
    arrays_dir: str | Path,
    index_path: str | Path,
    run_info_path: str | Path,
    protocol: dict[str, Any],
    localization: dict[str, Any],
    out_dir: str | Path,
    boxes_path: str | Path,
    boxes_csv: str | Path,
    tracking_uri: str,
    log_model: bool = True,
    batch_size: int = 16,
    threads: int = 1,
    flow_dir: str | Path | None = None,
) -> dict[str, Any]:
    """One seed's anomaly maps and boxes (:func:`vadbench.maps.compute_maps`); with ``log_model``
    the model goes to the seed's MLflow run in MLflow's PyTorch flavour
    (:func:`vadbench.detect.log_detector`), so ``runs:/<id>/model`` can be given to ``vadbench
    detect``. The boxes and the maps manifest reach the run through the ``track`` job."""
    from vadbench.maps import LocalizationSettings, compute_maps
    from vadbench.protocol import Protocol

    settings = LocalizationSettings.from_dict(localization)
    protocol = Protocol.from_dict(protocol)
    manifest = compute_maps(
        model_path,
        arrays_dir,
        index_path,
        protocol,
        settings,
        out_dir,
        boxes_path,
        boxes_csv,
        batch_size,
        threads,
        flow_dir,
    )
    if log_model:
        from vadbench.detect import log_detector
        from vadbench.tracking import RunLogger, tracked

        info = read_json(run_info_path)
        with tracked(RunLogger, tracking_uri, info["experiment"], run_id=info["mlflow_run_id"]) as tracker:
            log_detector(tracker, model_path, protocol, settings, manifest)
    return manifest


def viewer_run(
    scores_path: str | Path,
    auc_path: str | Path,
    maps_dir: str | Path,
    boxes_path: str | Path,
    arrays_dir: str | Path,
    localization: dict[str, Any],
    out_dir: str | Path,
    title: str = "",
) -> Path:
    """One seed's viewer page (:func:`vadbench.views.build_views`); the ``track`` job attaches it
    to the seed's MLflow run."""
    from vadbench.maps import LocalizationSettings
    from vadbench.views import build_views

    return build_views(
        scores_path,
        read_json(auc_path),
        maps_dir,
        boxes_path,
        arrays_dir,
        LocalizationSettings.from_dict(localization),
        out_dir,
        title,
    )


def plots_run(scores_path: str | Path, auc_path: str | Path, out_dir: str | Path, title: str = "") -> list[Path]:
    """Draw one seed's per-video score curves and ROC into ``out_dir`` (the ``track`` job attaches
    them to the seed's MLflow run)."""
    from vadbench.fileio import atomic_path
    from vadbench.plots import plot_seed
    from vadbench.scorefiles import load_scores

    with atomic_path(out_dir) as tmp:
        plot_seed(load_scores(scores_path), read_json(auc_path), tmp, title)
    written = sorted(Path(out_dir).glob("*.png"))
    log.info("wrote %d plots to %s", len(written), out_dir)
    return written


def aggregate_run(
    auc_paths: list[str | Path],
    seeds: list[int],
    run: dict[str, Any],
    out_path: str | Path,
    table_path: str | Path,
    repo_dir: str | Path = ".",
) -> dict[str, Any]:
    """Mean and std over seeds of one (dataset, variant) and its per-seed table, before MLflow:
    the ``track`` job logs them and writes ``results/{dataset}_{variant}_auc.json``."""
    from vadbench.aggregate import aggregate_seeds, git_commit, seed_table, versions

    result = aggregate_seeds(auc_paths, seeds, run, versions(), git_commit(repo_dir))
    write_json(out_path, result)
    write_csv(table_path, seed_table(result))
    return result


def track_run(
    aggregate_path: str | Path,
    table_path: str | Path,
    seed_dirs: list[str | Path],
    tracking_uri: str,
    experiment: str,
    out_path: str | Path,
) -> dict[str, Any]:
    """Log one finished (dataset, variant) to MLflow in one job, and write the result users ask for.

    Every seed's run gets its metrics and protocol tags, ``auc.json``, its plots, its viewer page
    and its localisation manifest and boxes (those of these that the seed folder holds); a parent
    run gets the means and stds with the seed runs nested under it. Logging here rather than in
    each seed's ``auc``, ``plots`` and ``viewer`` jobs pays for importing MLflow (about 2 s on 2
    cores) and opening the store once instead of three times a seed, and keeps those jobs light.

    ``out_path`` (``results/{dataset}_{variant}_auc.json``) is the aggregate with the MLflow ids,
    written last: a seed whose run had left the store gets a new run, and its id here.
    """
    from vadbench.tracking import RunLogger, nest_runs, parent_run, tracked

    result = read_json(aggregate_path)
    if len(seed_dirs) != len(result["per_seed"]):
        raise ValueError(f"{aggregate_path} holds {len(result['per_seed'])} seeds, {len(seed_dirs)} seed folders given")
    for record, seed_dir in zip(result["per_seed"], seed_dirs):
        seed_dir = Path(seed_dir)
        seed_result = read_json(seed_dir / "auc.json")
        with tracked(RunLogger, tracking_uri, experiment, run_id=seed_result["mlflow_run_id"]) as tracker:
            record["mlflow_run_id"] = tracker.run_id
            tracker.log_metrics(seed_metrics(seed_result))
            tracker.set_tags({f"protocol.{k}": v for k, v in seed_result["protocol"].items()})
            tracker.log_artifact(seed_dir / "auc.json")
            _log_seed_files(tracker, seed_dir)
    with tracked(
        parent_run,
        tracking_uri,
        experiment,
        result["dataset"],
        result["variant"],
        result["preset"]["name"],
        result["seeds"],
    ) as parent:
        result["mlflow_parent_run_id"] = parent.run_id
        metrics = {}
        for key, stat in result.items():
            if isinstance(stat, dict) and stat.keys() == {"mean", "std"} and stat["mean"] is not None:
                metrics.update({f"{key}_mean": stat["mean"], f"{key}_std": stat["std"]})
        parent.log_metrics(metrics)
        parent.set_tags({f"protocol.{k}": v for k, v in result["protocol"].items()})
        nest_runs(
            parent,
            [i for r in result["per_seed"] for i in [r.get("mlflow_run_id"), *r.get("stage1_mlflow_run_ids", [])] if i],
        )
        write_json(out_path, result)
        parent.log_artifact(out_path)
        parent.log_artifact(table_path)
    return result


def _log_seed_files(tracker, seed_dir: Path) -> None:
    """The plots, viewer page and localisation files of one seed folder, as its run's artifacts."""
    for folder in ("plots", "viewer"):
        if (seed_dir / folder).is_dir():
            tracker.log_artifacts(seed_dir / folder, folder)
    manifest = seed_dir / "maps" / "manifest.json"
    if manifest.is_file():
        tracker.log_artifact(manifest, "localization")
        tracker.log_artifact(seed_dir / "boxes.csv", "localization")
        tracker.log_metrics({"box_threshold": read_json(manifest)["threshold"]})
