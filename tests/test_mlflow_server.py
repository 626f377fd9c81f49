"""Cluster mode: jobs log to an ``mlflow server`` named by ``MLFLOW_TRACKING_URI``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

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
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--artifacts-destination", str(tmp_path / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"), start_new_session=True,
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


def test_runs_arrive_at_the_server(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    root = copy_workflow(tmp_path / "wf")
    (root / "tiny.yaml").write_text(TINY_CONFIG.replace("seeds: [0, 1]", "seeds: [0]"))
    run_snakemake(root, "results/toy_memae_auc.json", env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert not (root / "results/mlflow.db").exists()  # nothing went to the configured sqlite store
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("vadbench-toy")
    runs = client.search_runs([experiment.experiment_id])
    names = sorted(r.info.run_name for r in runs)
    assert "memae-seed0" in names and any(r.data.tags.get("vadbench.role") == "parent" for r in runs)
    seed = next(r for r in runs if r.info.run_name == "memae-seed0")
    assert seed.info.status == "FINISHED" and "micro_auc" in seed.data.metrics
    assert [m.step for m in client.get_metric_history(seed.info.run_id, "train_loss")] == [0, 1]
    assert "auc.json" in [a.path for a in client.list_artifacts(seed.info.run_id)]
