"""MLflow tracking: one store for the whole workflow, one experiment per dataset, one run per
(variant, seed).

MLflow 3.17 creates a fresh SQLite schema racily (of 8 processes starting together on an
empty store, 7 failed and left it broken), so :func:`init_store` runs once, in its own rule,
before any job that logs; the jobs then only write to an existing schema.

The AUC JSON files are the source of truth; MLflow is the place to compare runs. A logging
call that fails after the run exists (a server that went away) is reported in the job's log
and does not throw away an hour of training.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from vadbench.logs import get_logger

log = get_logger("tracking")

ENV_URI = "MLFLOW_TRACKING_URI"


def resolve_tracking_uri(configured: str, environ: dict[str, str] | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the configured URI."""
    environ = os.environ if environ is None else environ
    return environ.get(ENV_URI) or configured


def experiment_name(pattern: str, dataset: str) -> str:
    return pattern.format(dataset=dataset)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def init_store(uri: str, experiments: list[str], artifact_root: str | Path) -> dict[str, str]:
    """Create the tracking store (if new) and the experiments; return name -> experiment id."""
    client = _client(uri)
    root = Path(artifact_root).resolve()
    ids = {}
    for name in experiments:
        found = client.get_experiment_by_name(name)
        if found is None:
            location = None if uri.startswith("http") else (root / name).as_uri()
            ids[name] = client.create_experiment(name, artifact_location=location)
            log.info("created experiment %s (%s)", name, ids[name])
        else:
            ids[name] = found.experiment_id
    return ids


def experiment_id(client, experiment: str) -> str:
    """Id of ``experiment``, created if missing: it is normally made by the mlflow_store rule, but a
    server named by MLFLOW_TRACKING_URI after that rule ran may not have it yet (a server creates it
    safely)."""
    found = client.get_experiment_by_name(experiment)
    return found.experiment_id if found else client.create_experiment(experiment)


class RunLogger:
    """Logs to one MLflow run, created on first use or re-opened by id (a resumed job)."""

    def __init__(self, uri: str, experiment: str, run_id: str | None = None, run_name: str | None = None,
                 tags: dict[str, str] | None = None) -> None:
        from mlflow.exceptions import MlflowException

        self.client = _client(uri)
        if run_id is not None:
            try:
                self.client.update_run(run_id, status="RUNNING")
            except MlflowException as err:
                # the store changed (another MLFLOW_TRACKING_URI, a deleted run): the result files
                # stay the source of truth, so log to a new run instead of failing the job
                log.warning("MLflow run %s is not in %s (%s); logging to a new run", run_id, uri, err.error_code)
                tags = {**(tags or {}), "vadbench.replaces_run": run_id}
                run_id = None
        if run_id is None:
            run = self.client.create_run(experiment_id(self.client, experiment), run_name=run_name, tags=tags or {})
            run_id = run.info.run_id
        self.run_id = run_id

    def _safe(self, what: str, fn, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking must not kill a finished computation
            log.warning("MLflow %s failed for run %s: %s", what, self.run_id, err)

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        new = [Param(k, v[:6000]) for k, v in params.items() if k not in existing]
        for i in range(0, len(new), 100):
            self._safe("log_params", self.client.log_batch, self.run_id, params=new[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self._safe("log_metrics", self.client.log_batch, self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._safe("set_tags", self.client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._safe("log_artifact", self.client.log_artifact, self.run_id, str(path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        self._safe("set_terminated", self.client.set_terminated, self.run_id, status)


PARENT_TAG = "vadbench.role"


def parent_run(uri: str, experiment: str, dataset: str, variant: str, preset: str, seeds: list[int]) -> "RunLogger":
    """The run that stands for (dataset, variant, preset, seeds) across seeds, reused by a rerun.

    The per-seed runs are nested under it by their ``mlflow.parentRunId`` tag (see
    :func:`nest_runs`), which is how the MLflow UI draws nested runs.
    """
    client = _client(uri)
    seeds_tag = ",".join(str(s) for s in seeds)
    query = (f"tags.`{PARENT_TAG}` = 'parent' and tags.dataset = '{dataset}' and tags.variant = '{variant}' "
             f"and tags.preset = '{preset}' and tags.seeds = '{seeds_tag}'")
    existing = client.search_runs([experiment_id(client, experiment)], filter_string=query, max_results=1)
    if existing:
        return RunLogger(uri, experiment, run_id=existing[0].info.run_id)
    return RunLogger(uri, experiment, run_name=f"{variant} (seeds {seeds_tag})",
                     tags={PARENT_TAG: "parent", "dataset": dataset, "variant": variant, "preset": preset,
                           "seeds": seeds_tag})


def nest_runs(parent: "RunLogger", child_ids: list[str]) -> None:
    """Show the per-seed runs under ``parent`` in the MLflow UI."""
    for child in child_ids:
        parent._safe("nest run", parent.client.set_tag, child, "mlflow.parentRunId", parent.run_id)
