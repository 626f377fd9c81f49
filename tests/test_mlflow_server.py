"""Cluster mode: jobs log to an ``mlflow server`` named by ``MLFLOW_TRACKING_URI``, with credentials in
the URI that are used to connect but never written to a file or log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import TINY_CONFIG, copy_workflow, run_snakemake

pytestmark = pytest.mark.workflow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"),
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not answer /health"
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


def with_credentials(uri: str) -> str:
    """``uri`` with a user and password (sent as HTTP basic auth; this server ignores them)."""
    return uri.replace("http://", "http://vadbench:s3cret-pw@")


def assert_no_secret(root: Path) -> None:
    for path in [*root.glob("results/**/*.json"), *root.glob("logs/**/*.log")]:
        assert "s3cret-pw" not in path.read_text(errors="replace"), path


def test_credentials_in_the_uri_connect_but_are_never_written(mlflow_server, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from vadbench.cli import main
    from vadbench.pipeline import prepare_store
    from vadbench.tracking import RunLogger, tracked

    uri = with_credentials(mlflow_server)
    store = tmp_path / "results/mlflow/store.json"
    ids = prepare_store(uri, "vadbench-{dataset}", ["toy"], tmp_path / "artifacts", store)
    with tracked(RunLogger, uri, "vadbench-toy", run_name="seed0") as tracker:
        tracker.log_metrics({"loss": 0.5}, step=0)
        (tmp_path / "auc.json").write_text("{}")
        tracker.log_artifact(tmp_path / "auc.json")
    run = MlflowClient(tracking_uri=mlflow_server).get_run(tracker.run_id)
    assert run.info.experiment_id == ids["vadbench-toy"] and run.info.status == "FINISHED"
    assert run.data.metrics["loss"] == 0.5
    assert "http://***@127.0.0.1" in store.read_text()
    assert_no_secret(tmp_path)
    assert main(["runs", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "s3cret-pw" not in out and "0 RUNNING runs in http://***@127.0.0.1" in out


def test_runs_arrive_at_the_server(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    root = copy_workflow(tmp_path / "wf")
    (root / "tiny.yaml").write_text(TINY_CONFIG.replace("seeds: [0, 1]", "seeds: [0]"))
    run_snakemake(root, "results/toy_memae_auc.json", env={"MLFLOW_TRACKING_URI": with_credentials(mlflow_server)})
    assert not (root / "results/mlflow.db").exists()  # nothing went to the configured sqlite store
    assert_no_secret(root)
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("vadbench-toy")
    runs = client.search_runs([experiment.experiment_id])
    names = sorted(r.info.run_name for r in runs)
    assert "memae-seed0" in names and any(r.data.tags.get("vadbench.role") == "parent" for r in runs)
    seed = next(r for r in runs if r.info.run_name == "memae-seed0")
    assert seed.info.status == "FINISHED" and "micro_auc" in seed.data.metrics
    assert [m.step for m in client.get_metric_history(seed.info.run_id, "train_loss")] == [0, 1]
    assert "auc.json" in [a.path for a in client.list_artifacts(seed.info.run_id)]
