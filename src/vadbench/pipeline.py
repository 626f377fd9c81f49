"""One function per workflow rule that ties package parts to MLflow tracking.

Each ``workflow/scripts/<rule>.py`` unpacks the ``snakemake`` object and calls one function
here (or one in the module that does the work). They take plain arguments, so the stages
can be driven from a test or a notebook without Snakemake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vadbench.fileio import read_json, write_json
from vadbench.logs import get_logger

log = get_logger("pipeline")


def prepare_store(tracking_uri: str, experiments: list[str], artifact_root: str | Path, out_path: str | Path) -> None:
    """Create the MLflow store and one experiment per dataset before any job logs to it."""
    from vadbench.tracking import init_store

    ids = init_store(tracking_uri, experiments, artifact_root)
    write_json(out_path, {"tracking_uri": tracking_uri, "experiments": ids})


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
) -> None:
    """Train one model and log it to MLflow; a rerun after a crash resumes the same MLflow run."""
    from vadbench.tracking import RunLogger
    from vadbench.training import checkpoint_meta, train_model

    prior = checkpoint_meta(checkpoint_path, run).get("mlflow_run_id")
    tracker = RunLogger(tracking_uri, experiment, run_id=prior, run_name=f"{run['variant']}-seed{run['seed']}",
                        tags={"dataset": run["dataset"], "variant": run["variant"], "seed": str(run["seed"]),
                              "preset": run["preset_name"]})
    try:
        train_model(run, arrays_dir, index_path, model_path, checkpoint_path, tracker=tracker, threads=threads,
                    meta={"mlflow_run_id": tracker.run_id})
    except BaseException:
        tracker.finish("FAILED")
        raise
    write_json(run_info_path, {"mlflow_run_id": tracker.run_id, "tracking_uri": tracking_uri, "experiment": experiment})


def evaluate_run(scores_path: str | Path, run_info_path: str | Path, out_path: str | Path, tracking_uri: str) -> dict[str, Any]:
    """Compute the AUCs of one seed, write them as JSON and to the seed's MLflow run."""
    from vadbench.metrics import evaluate
    from vadbench.scoring import load_scores
    from vadbench.tracking import RunLogger

    result = evaluate(load_scores(scores_path))
    info = read_json(run_info_path)
    result["mlflow_run_id"] = info["mlflow_run_id"]
    write_json(out_path, result)
    tracker = RunLogger(tracking_uri, info["experiment"], run_id=info["mlflow_run_id"])
    metrics = {k: result[k] for k in ("micro_auc", "micro_auc_raw", "macro_auc") if result[k] is not None}
    metrics["frames_scored"] = result["frames_scored"]
    tracker.log_metrics(metrics)
    tracker.set_tags({f"protocol.{k}": v for k, v in result["protocol"].items()})
    tracker.log_artifact(out_path)
    tracker.finish()
    log.info("micro AUC %.4f (raw %.4f), macro AUC %s", result["micro_auc"], result["micro_auc_raw"], result["macro_auc"])
    return result


def aggregate_run(auc_paths: list[str | Path], seeds: list[int], run: dict[str, Any], out_path: str | Path,
                  repo_dir: str | Path = ".") -> dict[str, Any]:
    """Write ``results/{dataset}_{variant}_auc.json`` from the per-seed records."""
    from vadbench.aggregate import aggregate_seeds, git_commit
    from vadbench.training import versions

    result = aggregate_seeds(auc_paths, seeds, run, versions(), git_commit(repo_dir))
    write_json(out_path, result)
    return result
