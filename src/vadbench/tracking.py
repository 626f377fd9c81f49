"""MLflow tracking: one store for the whole workflow, one experiment per dataset, one run per
(variant, seed).

Many jobs, and even several ``snakemake`` invocations, may touch one store at the same time:

- MLflow 3.17 creates a fresh SQLite schema racily (of 8 processes starting together on an
  empty store, 7 failed and left it broken). Every process that opens a SQLite store here first
  takes an exclusive ``flock`` on ``<db>.lock`` beside it (:func:`store_lock`) while MLflow
  creates or checks the schema, and experiments are created under the same lock; a creation
  that still loses a race (a server) re-reads the experiment the winner made. An ``http(s)``
  server serialises on its own. Concurrent writes to an existing SQLite store wait for each
  other through MLflow's ``PRAGMA busy_timeout = 20000`` on every session.
- A run is never left ``RUNNING`` by a job that is stopped: :func:`tracked` turns SIGTERM and
  SIGINT into an exception and marks the run ``KILLED`` (``FAILED`` on an error). A job killed
  without warning (SIGKILL, a lost node) cannot do that, so every run carries the host and pid
  of its job and a heartbeat tag refreshed with each metric batch, and :func:`clean_runs`
  (``vadbench runs --clean``) marks the runs whose job is gone.
- Credentials in a tracking URI (``https://user:password@host``, ``?token=...``) are used to
  connect but never written: :func:`redact_uri` strips them from every file and log line.
- A training run may carry MLflow's system metrics (``system/cpu_utilization_percentage``,
  ``system/system_memory_usage_megabytes``, ..., ``system/gpu_0_utilization_percentage`` where
  nvidia-ml-py finds a GPU): :class:`RunLogger` starts MLflow's sampler thread for the run when
  asked (:func:`system_metrics_on` decides for config ``mlflow.system_metrics``) and stops it,
  flushing its last samples, before the run is ended, however it ends.

The AUC JSON files are the source of truth; MLflow is the place to compare runs. A logging
call that fails after the run exists (a server that went away) is reported in the job's log
and does not throw away an hour of training.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from vadbench.lifetime import process_alive, process_start_time, stop_on_signals
from vadbench.logs import get_logger

log = get_logger("tracking")

ENV_URI = "MLFLOW_TRACKING_URI"
HOST_TAG = "vadbench.host"
PID_TAG = "vadbench.pid"
PID_START_TAG = "vadbench.pid_start"
HEARTBEAT_TAG = "vadbench.heartbeat"
STORE_LOCK_TIMEOUT_S = 600.0
SYSTEM_METRICS_PREFIX = "system/"
SYSTEM_METRICS_THREAD = "SystemMetricsMonitor"  # the name MLflow 3.17 gives its sampler thread

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;][\w.-]*(?:token|password|passwd|pwd|secret|key|auth|credential|signature|sig)[\w.-]*=)[^&#\s]*",
    re.IGNORECASE,
)


def redact_uri(text: str) -> str:
    """``text`` (a URI, or a message that contains URIs) with credentials replaced by ``***``.

    Example:
        >>> redact_uri("https://alice:s3cret@mlflow.lab:5000/?token=abc&x=1")
        'https://***@mlflow.lab:5000/?token=***&x=1'
    """
    return _SECRET_QUERY.sub(r"\g<key>***", _USERINFO.sub(r"\g<scheme>***@", str(text)))


def resolve_tracking_uri(configured: str, environ: dict[str, str] | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the configured URI."""
    environ = os.environ if environ is None else environ
    return environ.get(ENV_URI) or configured


def experiment_name(pattern: str, dataset: str) -> str:
    return pattern.format(dataset=dataset)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory unless it
    starts with ``sqlite:////``), or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def store_lock(uri: str, timeout_s: float = STORE_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<db>.lock`` beside a SQLite store for the block, so one
    process at a time creates its schema or an experiment; a no-op for other stores (a server
    serialises requests itself). Not re-entrant: do not nest it for the same store."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    from vadbench.errors import ConfigError
    from vadbench.fileio import open_lock_file

    fd = open_lock_file(
        lock,
        lambda symlink: ConfigError(
            f"MLflow store lock {lock} is {'a symbolic link' if symlink else 'not a regular file of yours'}; remove it "
            "and rerun"
        ),
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{lock}: another process has held this MLflow store lock for over "
                        f"{timeout_s:.0f} s; if no vadbench job is running, remove the file"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _client(uri: str):
    """An ``MlflowClient`` for ``uri`` whose store exists: a new SQLite schema is created under
    :func:`store_lock` (MLflow builds the store, and with it the schema, when the client is made
    or on its first call)."""
    from mlflow.tracking import MlflowClient

    path = sqlite_path(uri)
    if path is None:
        return MlflowClient(tracking_uri=uri)
    with store_lock(uri):
        if not path.exists() or path.stat().st_size == 0:
            _create_sqlite_store(path)
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    return client


def _create_sqlite_store(path: Path) -> None:
    """Build a fresh SQLite store beside ``path`` and rename it into place once complete.

    MLflow creates the schema through a long series of migrations that are not one transaction:
    a job killed half-way (Snakemake killed, the job's SIGTERM) would leave a store that no
    later job can open ("table _alembic_tmp_tags already exists").
    """
    from mlflow.tracking import MlflowClient

    from vadbench.fileio import remove_orphaned_temporaries

    remove_orphaned_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        MlflowClient(tracking_uri=f"sqlite:///{tmp.resolve()}").search_experiments(max_results=1)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("created the MLflow store %s", path)


def experiment_id(client, experiment: str, artifact_location: str | None = None) -> str:
    """Id of ``experiment``, created if missing.

    It is normally made by the mlflow_store rule, but a server named by MLFLOW_TRACKING_URI after
    that rule ran, or a dataset added to the config since, may not have it yet. Creation runs under
    :func:`store_lock`, and a creation that loses a race anyway (RESOURCE_ALREADY_EXISTS from a
    server) returns the experiment the other process made.
    """
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    with store_lock(client.tracking_uri):
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        try:
            created = client.create_experiment(experiment, artifact_location=artifact_location)
        except MlflowException as err:
            found = client.get_experiment_by_name(experiment)
            if err.error_code != "RESOURCE_ALREADY_EXISTS" or found is None:
                raise
            return found.experiment_id
    log.info("created experiment %s (%s)", experiment, created)
    return created


def init_store(uri: str, experiments: list[str], artifact_root: str | Path) -> dict[str, str]:
    """Create the tracking store (if new) and the experiments; return name -> experiment id.

    Safe to run from several processes at once (see :func:`store_lock`)."""
    client = _client(uri)
    root = Path(artifact_root).resolve()
    return {
        name: experiment_id(client, name, None if uri.startswith("http") else (root / name).as_uri())
        for name in experiments
    }


def job_tags() -> dict[str, str]:
    """Who is writing to a run: host, pid (and its start time, which tells a reused pid apart),
    and a heartbeat, so that :func:`clean_runs` can tell a live job from a dead one."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), HEARTBEAT_TAG: str(int(time.time()))}
    started = process_start_time(os.getpid())
    if started is not None:
        tags[PID_START_TAG] = started
    return tags


def system_metrics_on(setting: bool | str, device: str = "auto", cuda_devices: Callable[[], int] | None = None) -> bool:
    """Whether a training job logs MLflow system metrics (config ``mlflow.system_metrics``).

    ``True`` and ``False`` are used as given. ``"auto"`` is on when the job trains on a GPU, by
    the rule :func:`vadbench.devices.job_device` applies to the preset's ``device``: ``cpu`` is
    off, ``cuda`` and ``cuda:N`` are on, and ``auto`` is on when CUDA sees a device. On the CPU
    the sampler thread costs little, but it shares the cores of a CPU-bound training, so it is
    off there unless asked for.

    Args:
        setting: ``True``, ``False`` or ``"auto"``.
        device: the preset's ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``). Defaults to ``"auto"``.
        cuda_devices: counts the visible CUDA devices. Defaults to ``torch.cuda.device_count``.

    Example:
        >>> system_metrics_on("auto", "cpu"), system_metrics_on("auto", "cuda:1"), system_metrics_on(True, "cpu")
        (False, True, True)
    """
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        from vadbench.errors import ConfigError

        raise ConfigError(f"config key mlflow.system_metrics: {setting!r}; use auto, true or false")
    if device == "cpu":
        return False
    if device.startswith("cuda"):
        return True
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count
    return cuda_devices() > 0


def _start_system_metrics(uri: str, run_id: str, interval_s: float, resume: bool):
    """MLflow's sampler for ``run_id``, started (a daemon thread that logs CPU, memory, disk,
    network and, with nvidia-ml-py and a GPU, GPU metrics every ``interval_s`` seconds; MLflow's
    ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` overrides the interval), or None when it cannot
    start: tracking must not fail the job."""
    import importlib.util

    if importlib.util.find_spec("psutil") is None:
        log.warning("no system metrics for MLflow run %s: psutil is not installed (pip install psutil)", run_id)
        return None
    try:
        # the sampler mlflow.start_run(log_system_metrics=True) starts; used directly so that it
        # logs to this run of this store, with no global active run or tracking URI
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=resume, tracking_uri=uri)
        monitor.start()
    except Exception as err:  # noqa: BLE001 - tracking must not kill the job
        log.warning("no system metrics for MLflow run %s: %s", run_id, redact_uri(str(err)))
        return None
    kinds = ", ".join(type(m).__name__.removesuffix("Monitor") for m in monitor.monitors)
    log.info("logging system metrics (%s) every %g s to MLflow run %s", kinds, monitor.sampling_interval, run_id)
    return monitor


class RunLogger:
    """Logs to one MLflow run, created on first use or re-opened by id (a resumed job), which is
    then ``RUNNING`` again and tagged with this job's host and pid.

    With ``system_metrics``, MLflow's system metrics are sampled every ``system_metrics_interval``
    seconds into the run (a resumed run continues their steps) until :meth:`finish`.
    """

    _monitor = None  # the system-metrics sampler, when one runs

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_id: str | None = None,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        system_metrics: bool = False,
        system_metrics_interval: float = 10.0,
    ) -> None:
        from mlflow.exceptions import MlflowException

        self.client = _client(uri)
        self.run_id = run_id
        if run_id is not None:
            try:
                self.client.update_run(run_id, status="RUNNING")
            except MlflowException as err:
                # the store changed (another MLFLOW_TRACKING_URI, a deleted run): the result files
                # stay the source of truth, so log to a new run instead of failing the job
                log.warning(
                    "MLflow run %s is not in %s (%s); logging to a new run", run_id, redact_uri(uri), err.error_code
                )
                tags = {**(tags or {}), "vadbench.replaces_run": run_id}
                self.run_id = None
            else:
                self.set_tags(job_tags())
        if self.run_id is None:
            run = self.client.create_run(
                experiment_id(self.client, experiment), run_name=run_name, tags={**(tags or {}), **job_tags()}
            )
            self.run_id = run.info.run_id
        if system_metrics:
            self._monitor = _start_system_metrics(
                uri, self.run_id, system_metrics_interval, resume=self.run_id == run_id
            )

    def _safe(self, what: str, fn, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking must not kill a finished computation
            log.warning("MLflow %s failed for run %s: %s", what, self.run_id, redact_uri(str(err)))

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        new = [Param(k, v[:6000]) for k, v in params.items() if k not in existing]
        for i in range(0, len(new), 100):
            self._safe("log_params", self.client.log_batch, self.run_id, params=new[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log one batch of metrics (training: once per epoch) and refresh the heartbeat tag."""
        from mlflow.entities import Metric, RunTag

        now = time.time()
        batch = [Metric(k, float(v), int(now * 1000), step or 0) for k, v in metrics.items()]
        self._safe(
            "log_metrics",
            self.client.log_batch,
            self.run_id,
            metrics=batch,
            tags=[RunTag(HEARTBEAT_TAG, str(int(now)))],
        )

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._safe("set_tags", self.client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._safe("log_artifact", self.client.log_artifact, self.run_id, str(path), artifact_path)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        self._safe("log_artifacts", self.client.log_artifacts, self.run_id, str(local_dir), artifact_path)

    def stop_system_metrics(self) -> None:
        """Stop the system-metrics sampler, if any, and log its last samples (the thread wakes at
        once and is waited for)."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            self._safe("system metrics", monitor.finish)

    def finish(self, status: str = "FINISHED") -> None:
        self.stop_system_metrics()  # first, so that no sample is logged into the ended run
        # against a server MLflow prints "View run <name> at: <tracking URI>/#/..." to stdout (the
        # job's log): print it with the credentials taken out
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            self._safe("set_terminated", self.client.set_terminated, self.run_id, status)
        sys.stdout.write(redact_uri(printed.getvalue()))


@contextlib.contextmanager
def tracked(open_run: Callable[..., RunLogger], *args: Any, **kwargs: Any) -> Iterator[RunLogger]:
    """Open a run with ``open_run(*args, **kwargs)`` and end it with the block: ``FINISHED``;
    ``KILLED`` when the job is stopped (SIGTERM, SIGINT, ``SystemExit`` such as training's
    ``Preempted``, ``KeyboardInterrupt``); ``FAILED`` on any other exception."""
    with stop_on_signals():
        tracker = open_run(*args, **kwargs)
        try:
            yield tracker
        except Exception:
            tracker.finish("FAILED")
            raise
        except BaseException as err:
            log.warning("marking MLflow run %s KILLED (%s)", tracker.run_id, str(err) or type(err).__name__)
            tracker.finish("KILLED")
            raise
        tracker.finish()


def _job_alive(pid: int, recorded_start: str | None) -> bool:
    """Whether ``pid`` on this host is still the job that wrote the tags: it exists and either has
    the recorded start time, or (no start time to compare) runs Python."""
    if not process_alive(pid, recorded_start or None):
        return False
    if recorded_start and process_start_time(pid) is not None:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc: a live pid is all we can tell
    return "python" in cmdline or "vadbench" in cmdline


def orphan_reason(run, host: str, now: float, stale_after_s: float) -> tuple[bool, str]:
    """(whether the RUNNING ``run`` has lost its job, why). A job on ``host`` is checked by pid; a
    job elsewhere (or of a run without vadbench's tags) by the age of its heartbeat."""
    tags = run.data.tags
    job_host, pid = tags.get(HOST_TAG), tags.get(PID_TAG, "")
    if job_host == host and pid.isdigit():
        if _job_alive(int(pid), tags.get(PID_START_TAG)):
            return False, f"pid {pid} on {host} is alive"
        return True, f"pid {pid} on {host} is gone"
    beat = tags.get(HEARTBEAT_TAG)
    last = float(beat) if beat else run.info.start_time / 1000
    age_h = (now - last) / 3600
    where = job_host or "an unknown host"
    if now - last > stale_after_s:
        return True, f"no heartbeat from {where} for {age_h:.1f} h"
    return False, f"last heartbeat from {where} {age_h:.1f} h ago"


def pages(search, **kwargs):
    """Every item of a paged MLflow search (``client.search_runs``, ``search_experiments``)."""
    token = None
    while True:
        page = search(max_results=1000, page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def clean_runs(uri: str, stale_after_h: float = 24.0, dry_run: bool = False) -> list[dict[str, Any]]:
    """Mark as ``KILLED`` the RUNNING runs of every experiment whose job is gone (see
    :func:`orphan_reason`); return one record per RUNNING run: id, experiment, name, whether it
    was (or, with ``dry_run``, would be) marked, and why."""
    client = _client(uri)
    host, now = socket.gethostname(), time.time()
    done = []
    for exp in pages(client.search_experiments):
        for run in pages(
            client.search_runs, experiment_ids=[exp.experiment_id], filter_string="attributes.status = 'RUNNING'"
        ):
            orphan, reason = orphan_reason(run, host, now, stale_after_h * 3600)
            if orphan and not dry_run:
                client.set_tag(run.info.run_id, "vadbench.cleaned", f"marked KILLED by vadbench runs --clean: {reason}")
                client.set_terminated(run.info.run_id, "KILLED")
            done.append(
                {
                    "run_id": run.info.run_id,
                    "experiment": exp.name,
                    "name": run.info.run_name,
                    "orphan": orphan,
                    "reason": reason,
                }
            )
    return done


PARENT_TAG = "vadbench.role"


def filter_literal(value: str) -> str:
    """``value`` quoted for an MLflow filter string. MLflow has no escapes inside a quoted
    value, so a value with a single quote is double-quoted, and one with both quote kinds or a
    backslash is refused."""
    if "\\" in value or ("'" in value and '"' in value):
        raise ValueError(
            f"cannot search MLflow for {value!r}: it holds a backslash or both quote characters; "
            "rename it (dataset, variant and preset names should be plain words)"
        )
    return f'"{value}"' if "'" in value else f"'{value}'"


def parent_run(uri: str, experiment: str, dataset: str, variant: str, preset: str, seeds: list[int]) -> "RunLogger":
    """The run that stands for (dataset, variant, preset, seeds) across seeds, reused by a rerun.

    The per-seed runs are nested under it by their ``mlflow.parentRunId`` tag (see
    :func:`nest_runs`), which is how the MLflow UI draws nested runs.
    """
    client = _client(uri)
    seeds_tag = ",".join(str(s) for s in seeds)
    query = (
        f"tags.`{PARENT_TAG}` = 'parent' and tags.dataset = {filter_literal(dataset)} "
        f"and tags.variant = {filter_literal(variant)} and tags.preset = {filter_literal(preset)} "
        f"and tags.seeds = {filter_literal(seeds_tag)}"
    )
    existing = client.search_runs([experiment_id(client, experiment)], filter_string=query, max_results=1)
    if existing:
        return RunLogger(uri, experiment, run_id=existing[0].info.run_id)
    return RunLogger(
        uri,
        experiment,
        run_name=f"{variant} (seeds {seeds_tag})",
        tags={PARENT_TAG: "parent", "dataset": dataset, "variant": variant, "preset": preset, "seeds": seeds_tag},
    )


def nest_runs(parent: "RunLogger", child_ids: list[str]) -> None:
    """Show the per-seed runs under ``parent`` in the MLflow UI."""
    for child in child_ids:
        parent._safe("nest run", parent.client.set_tag, child, "mlflow.parentRunId", parent.run_id)
