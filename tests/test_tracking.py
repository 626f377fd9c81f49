"""MLflow tracking under concurrency, credentials and killed jobs: many jobs starting together on
a fresh store all log their runs; credentials in the tracking URI never reach a file or a log;
a job that is stopped leaves its run KILLED, and ``vadbench runs --clean`` finds the runs of jobs
that were killed without warning."""

from __future__ import annotations

import importlib.util
import json
import logging
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vadbench.tracking as tracking
from vadbench.tracking import HEARTBEAT_TAG, HOST_TAG, PID_START_TAG, PID_TAG, RunLogger, redact_uri

JOBS = 8
STEPS = 5


def _load(module_path: str):
    spec = importlib.util.spec_from_file_location("tracking_under_test", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _job(module_path: str, uri: str, artifacts: str, index: int, start, out) -> None:
    """One job of a fresh workflow: initialise the store, then log a run to its own experiment."""
    try:
        mod = _load(module_path)
        start.wait(120)
        mod.init_store(uri, ["vadbench-shared", f"vadbench-data{index}"], artifacts)
        tracker = mod.RunLogger(uri, f"vadbench-data{index}", run_name=f"job{index}", tags={"job": str(index)})
        for step in range(STEPS):
            tracker.log_metrics({"loss": float(step), "index": float(index)}, step=step)
        tracker.finish()
        out.put((index, tracker.run_id, None))
    except BaseException as err:  # noqa: BLE001 - reported to the test
        out.put((index, None, f"{type(err).__name__}: {err}"))


def start_jobs_together(tmp_path: Path, module_path: str) -> tuple[str, dict[int, str | None], list[str]]:
    """Start JOBS processes on a fresh SQLite store at the same instant (a barrier); return the
    URI, job -> run id, and the errors."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(JOBS), ctx.Queue()
    jobs = [
        ctx.Process(target=_job, args=(module_path, uri, str(tmp_path / "artifacts"), i, start, out))
        for i in range(JOBS)
    ]
    for job in jobs:
        job.start()
    results = [out.get(timeout=300) for _ in jobs]
    for job in jobs:
        job.join(60)
    return uri, {i: run_id for i, run_id, _ in results}, [err for _, _, err in results if err]


def test_eight_jobs_starting_together_on_a_fresh_store_all_log_their_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    uri, run_ids, errors = start_jobs_together(tmp_path, tracking.__file__)
    assert errors == []
    client = MlflowClient(tracking_uri=uri)
    assert client.get_experiment_by_name("vadbench-shared") is not None
    for index, run_id in run_ids.items():
        experiment = client.get_experiment_by_name(f"vadbench-data{index}")
        runs = client.search_runs([experiment.experiment_id])
        assert [r.info.run_id for r in runs] == [run_id]
        assert runs[0].info.status == "FINISHED" and runs[0].data.tags["job"] == str(index)
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(STEPS))
        assert runs[0].data.metrics["index"] == index
    assert (tmp_path / "mlflow.db.lock").exists()


def test_experiment_creation_that_loses_a_race_reads_the_winner(tmp_path):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    winner = tracking.init_store(uri, ["vadbench-toy"], tmp_path / "artifacts")["vadbench-toy"]

    class LateClient:  # saw no experiment, then another process created it
        tracking_uri = uri
        calls = 0

        def get_experiment_by_name(self, name):
            LateClient.calls += 1
            return None if LateClient.calls <= 2 else MlflowClient(tracking_uri=uri).get_experiment_by_name(name)

        def create_experiment(self, name, artifact_location=None):
            raise MlflowException(f"Experiment(name={name}) already exists.", error_code=RESOURCE_ALREADY_EXISTS)

    assert tracking.experiment_id(LateClient(), "vadbench-toy") == winner


def test_parent_run_search_quotes_names_safely(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = tracking.parent_run(uri, "vadbench-toy", "toy", "memae", "it's tiny", [0, 1])
    again = tracking.parent_run(uri, "vadbench-toy", "toy", "memae", "it's tiny", [0, 1])
    other = tracking.parent_run(uri, "vadbench-toy", "toy", "memae", "tiny' or tags.seeds != '", [0, 1])
    assert first.run_id == again.run_id != other.run_id
    with pytest.raises(ValueError, match="both quote characters"):
        tracking.parent_run(uri, "vadbench-toy", "toy", "memae", "'\"", [0])


# --- credentials ---------------------------------------------------------------------------

SECRET_URI = "https://alice:s3cret@mlflow.example.org:5000/?token=t0ken&workspace=lab"


def test_redact_uri_strips_user_password_and_query_secrets():
    assert redact_uri(SECRET_URI) == "https://***@mlflow.example.org:5000/?token=***&workspace=lab"
    assert redact_uri("postgresql://u:p@ss@db/mlflow") == "postgresql://***@db/mlflow"
    assert redact_uri("http://h:5000/?api_key=k&password=pw") == "http://h:5000/?api_key=***&password=***"
    message = "API request to http://a:b@127.0.0.1:5/api failed"
    assert redact_uri(message) == "API request to http://***@127.0.0.1:5/api failed"
    assert redact_uri("sqlite:///results/mlflow.db") == "sqlite:///results/mlflow.db"


def test_log_lines_and_summary_hold_no_credentials(tmp_path, monkeypatch, caplog):
    from vadbench.cli import summary

    port = _free_port()  # nothing listens: every request fails, with the URL in MLflow's message
    uri = f"http://alice:s3cret@127.0.0.1:{port}/?token=t0ken"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with caplog.at_level(logging.WARNING, logger="vadbench"), pytest.raises(Exception):
        RunLogger(uri, "vadbench-toy", run_id="0123456789abcdef0123456789abcdef")
    tracker = RunLogger.__new__(RunLogger)
    tracker.client, tracker.run_id = tracking._client(uri), "0123456789abcdef0123456789abcdef"
    with caplog.at_level(logging.WARNING, logger="vadbench"):
        tracker.log_metrics({"loss": 1.0})
        tracker.finish()
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "is not in http://***@127.0.0.1" in messages and "MLflow log_metrics failed" in messages
    assert "s3cret" not in messages and "t0ken" not in messages

    result = {
        "dataset": "toy",
        "variant": "memae",
        "seeds": [0],
        "preset": {"name": "tiny"},
        "micro_auc": {"mean": 0.9, "std": 0.0},
        "micro_auc_raw": {"mean": 0.8, "std": 0.0},
        "macro_auc": {"mean": None, "std": None},
        "protocol": {"name": "memae", "scored_frame_index": 8, "edges": "drop", "normalisation": "none"},
    }
    (tmp_path / "r.json").write_text(json.dumps(result))
    out = summary([str(tmp_path / "r.json")], uri)
    assert "s3cret" not in out and "t0ken" not in out and f"http://***@127.0.0.1:{port}" in out


# --- killed jobs ---------------------------------------------------------------------------

RUN = {"dataset": "toy", "variant": "memae", "seed": 0, "preset_name": "tiny"}


@pytest.fixture
def store(tmp_path) -> str:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.init_store(uri, ["vadbench-toy"], tmp_path / "artifacts")
    return uri


def status(uri: str, run_id: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri).get_run(run_id).info.status


@pytest.mark.parametrize(
    "stop, status_", [("preempted", "KILLED"), ("interrupt", "KILLED"), ("exit", "KILLED"), ("error", "FAILED")]
)
def test_train_run_marks_a_stopped_job_killed_and_a_crash_failed(store, tmp_path, monkeypatch, stop, status_):
    """Training stopped by each kind of exit, in the real train_run against a real store."""
    import vadbench.training as training
    from vadbench.pipeline import train_run

    opened = {}

    def train(run, *args, tracker, **kwargs):
        opened["run_id"] = tracker.run_id
        raise {
            "preempted": training.Preempted(tmp_path / "ckpt.pt"),
            "interrupt": KeyboardInterrupt(),
            "exit": SystemExit(1),
            "error": RuntimeError("NaN loss"),
        }[stop]

    monkeypatch.setattr(training, "train_model", train)
    with pytest.raises(BaseException):
        train_run(
            RUN,
            tmp_path,
            tmp_path / "clips.npz",
            tmp_path / "model.pt",
            tmp_path / "ckpt.pt",
            tmp_path / "run.json",
            store,
            "vadbench-toy",
        )
    assert status(store, opened["run_id"]) == status_ and not (tmp_path / "run.json").exists()


TRAIN_JOB = """
import sys, time
from pathlib import Path
import vadbench.training as training
from vadbench.pipeline import train_run

uri, ready = sys.argv[1], Path(sys.argv[2])

def train(run, *args, tracker, meta, **kwargs):  # the real loop's SIGTERM handling, without the model
    with training.sigterm_flag() as flag:
        ready.write_text(tracker.run_id)
        while not flag["stop"]:
            tracker.log_metrics({"train_loss": 1.0}, step=0)
            time.sleep(0.05)
        raise training.Preempted(Path("checkpoint.pt"))

training.train_model, training.checkpoint_meta = train, lambda *a: {}
train_run({"dataset": "toy", "variant": "memae", "seed": 0, "preset_name": "tiny"}, ".", ".", "model.pt",
          "checkpoint.pt", "run.json", uri, "vadbench-toy")
"""

SHORT_JOB = """
import sys, time
from pathlib import Path
from vadbench.tracking import RunLogger, tracked

uri, ready = sys.argv[1], Path(sys.argv[2])
run_id = sys.argv[3] if len(sys.argv) > 3 else None
with tracked(RunLogger, uri, "vadbench-toy", run_id=run_id, run_name="short") as tracker:
    ready.write_text(tracker.run_id)
    while True:
        time.sleep(0.05)
"""


def start_job(code: str, uri: str, tmp_path: Path, name: str, *args: str) -> tuple[subprocess.Popen, str]:
    ready = tmp_path / f"{name}.ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, uri, str(ready), *args], cwd=tmp_path, stderr=open(tmp_path / f"{name}.log", "w")
    )
    deadline = time.monotonic() + 120
    while not ready.exists() or not ready.read_text():
        assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
        assert time.monotonic() < deadline, "the job never opened its run"
        time.sleep(0.05)
    return proc, ready.read_text()


def test_a_sigtermed_training_job_leaves_its_run_killed_and_a_resume_runs_it_again(store, tmp_path):
    from mlflow.tracking import MlflowClient

    proc, run_id = start_job(TRAIN_JOB, store, tmp_path, "train")
    tags = MlflowClient(tracking_uri=store).get_run(run_id).data.tags
    assert tags[HOST_TAG] == socket.gethostname() and tags[PID_TAG] == str(proc.pid)
    assert abs(float(tags[HEARTBEAT_TAG]) - time.time()) < 60
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 143
    assert status(store, run_id) == "KILLED"

    resumed = RunLogger(store, "vadbench-toy", run_id=run_id)
    assert resumed.run_id == run_id and status(store, run_id) == "RUNNING"
    assert MlflowClient(tracking_uri=store).get_run(run_id).data.tags[PID_TAG] == str(os.getpid())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_short_job_stopped_by_a_signal_leaves_its_reopened_run_killed(store, tmp_path, sig):
    opened = RunLogger(store, "vadbench-toy", run_name="seed0")
    opened.finish()  # trained; the auc job reopens it
    proc, run_id = start_job(SHORT_JOB, store, tmp_path, "auc", opened.run_id)
    assert run_id == opened.run_id and status(store, run_id) == "RUNNING"
    proc.send_signal(sig)
    assert proc.wait(60) == 128 + sig
    assert status(store, run_id) == "KILLED"


def test_runs_clean_marks_runs_whose_job_is_gone_and_leaves_live_ones(store, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from vadbench.cli import main

    client = MlflowClient(tracking_uri=store)
    killed, killed_id = start_job(SHORT_JOB, store, tmp_path, "killed")
    live, live_id = start_job(SHORT_JOB, store, tmp_path, "live")
    decoy = subprocess.Popen(["sleep", "120"])  # alive, but not the job that wrote the run
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        assert status(store, killed_id) == "RUNNING"  # nothing could mark it
        reused = RunLogger(store, "vadbench-toy", run_name="pid reused")
        client.set_tag(reused.run_id, PID_TAG, str(decoy.pid))
        client.delete_tag(reused.run_id, PID_START_TAG)
        away_dead = RunLogger(store, "vadbench-toy", run_name="other host, silent")
        away_live = RunLogger(store, "vadbench-toy", run_name="other host, beating")
        for run_id, beat in ((away_dead.run_id, time.time() - 30 * 3600), (away_live.run_id, time.time() - 600)):
            client.set_tag(run_id, HOST_TAG, "node17.cluster")
            client.set_tag(run_id, HEARTBEAT_TAG, str(int(beat)))

        assert main(["runs", "--clean", "--dry-run", "--tracking-uri", store]) == 0
        assert "3 with their job gone" in capsys.readouterr().out
        assert status(store, killed_id) == "RUNNING"

        assert main(["runs", "--clean", "--tracking-uri", store, "--stale-after", "24"]) == 0
        out = capsys.readouterr().out
        assert f"marked KILLED: run {killed_id}" in out and "is gone" in out
        assert "no heartbeat from node17.cluster for 30.0 h" in out
        assert f"left RUNNING: run {live_id}" in out
        assert [status(store, r) for r in (killed_id, reused.run_id, away_dead.run_id)] == ["KILLED"] * 3
        assert [status(store, r) for r in (live_id, away_live.run_id)] == ["RUNNING"] * 2
        assert "vadbench runs --clean" in client.get_run(killed_id).data.tags["vadbench.cleaned"]
    finally:
        decoy.kill()
        live.send_signal(signal.SIGTERM)
        live.wait(60)
    assert status(store, live_id) == "KILLED"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
