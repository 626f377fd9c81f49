"""Fault injection through the real DAG: SIGKILL the Snakemake process, and separately one running
job, at three points of the toy pipeline (preparing frames, mid-training, scoring); rerunning the
README's command, with no cleanup in between, ends with the aggregate JSON, and the weights, of an
undisturbed run. A training job orphaned by the killed Snakemake is stopped with SIGTERM, saves a
checkpoint inside its epoch and exits; the rerun resumes from it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import SLOW_TARGET, SNAKEMAKE, run_snakemake, slow_workdir

pytestmark = pytest.mark.workflow

TARGET = SLOW_TARGET
SEED = Path("results/toy/memae/seed0")
# (rule whose job is running, glob of a file it must have written first): the points of interruption
POINTS = [("frames", "resources/toy/.frames.tmp-*"), ("train", str(SEED / "checkpoint.pt")), ("score", None)]


def job_pids(root: Path, rule: str) -> list[int]:
    """Processes of ``rule``'s job script in this workdir (Snakemake runs them from .snakemake/scripts)."""
    out = subprocess.run(
        ["pgrep", "-f", rf"{re.escape(str(root))}/\.snakemake/scripts/.*\.{rule}\.py"], capture_output=True, text=True
    )
    return [int(p) for p in out.stdout.split()]


def start(root: Path) -> subprocess.Popen:
    """The README's command (cores, target; the tiny overlay stands in for config/config.yaml)."""
    return subprocess.Popen(
        [*SNAKEMAKE, "--cores", "2", TARGET, "--configfile", "tiny.yaml"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(root: Path, proc: subprocess.Popen, rule: str, needs: str | None) -> list[int]:
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, f"snakemake ended before the {rule} job ran:\n{proc.communicate()}"
        assert time.monotonic() < deadline, f"no {rule} job appeared"
        pids = job_pids(root, rule)
        if pids and (needs is None or any(root.glob(needs))):
            return pids
        time.sleep(0.01)


def comparable(result: dict) -> dict:
    """The aggregate JSON without the MLflow run ids, which differ from store to store."""
    result = {k: v for k, v in result.items() if k != "mlflow_parent_run_id"}
    result["per_seed"] = [{k: v for k, v in seed.items() if k != "mlflow_run_id"} for seed in result["per_seed"]]
    return result


@pytest.fixture(scope="module")
def undisturbed(slow_reference) -> dict:
    return comparable(json.loads((slow_reference / TARGET).read_text()))


def assert_same_weights(root: Path, reference: Path) -> None:
    a = torch.load(root / SEED / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(reference / SEED / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_clean_finish(root: Path, undisturbed: dict) -> None:
    run_snakemake(root, TARGET)
    assert comparable(json.loads((root / TARGET).read_text())) == undisturbed
    leftovers = [p for d in ("results", "resources") for p in (root / d).rglob("*.tmp-*")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    assert not list((root / ".snakemake/locks").glob("*.lock"))
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{root}/results/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    running = [r.info.run_name for r in client.search_runs(experiments) if r.info.status == "RUNNING"]
    assert not running, f"runs left RUNNING: {running}"


def test_snakemake_killed_at_three_points_then_rerun_gives_the_undisturbed_result(
    undisturbed, slow_reference, tmp_path
):
    root = slow_workdir(tmp_path)
    for rule, needs in POINTS:
        proc = start(root)
        wait_for(root, proc, rule, needs)
        proc.send_signal(signal.SIGKILL)  # Snakemake alone: its running job is orphaned
        proc.communicate(timeout=60)
        assert list((root / ".snakemake/locks").glob("*.lock")), "the killed Snakemake left no lock to recover"
        deadline = time.monotonic() + 60
        while job_pids(root, rule):  # the orphan notices and stops by itself
            assert time.monotonic() < deadline, f"the orphaned {rule} job kept running"
            time.sleep(0.05)
        if rule == "train":
            log = (root / "logs/toy/memae/seed0/train.log").read_text()
            assert "is gone: stopping the job" in log and "SIGTERM received" in log, log
            assert not (root / SEED / "model.pt").exists()
            state = torch.load(root / SEED / "checkpoint.pt", weights_only=True)
            assert "partial" in state or state["epoch"] >= 0  # stopped inside an epoch, or at its end
    assert_clean_finish(root, undisturbed)
    assert "resuming from" in (root / "logs/toy/memae/seed0/train.log").read_text()
    assert_same_weights(root, slow_reference)


def test_a_job_killed_at_three_points_then_rerun_gives_the_undisturbed_result(undisturbed, slow_reference, tmp_path):
    root = slow_workdir(tmp_path)
    for rule, needs in POINTS:
        proc = start(root)
        for pid in wait_for(root, proc, rule, needs):
            subprocess.run(["kill", "-KILL", str(pid)], check=False)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode != 0, f"snakemake did not notice its {rule} job was killed:\n{out}\n{err}"
        if rule == "train":
            assert not (root / SEED / "model.pt").exists()
    assert_clean_finish(root, undisturbed)
    # training resumed from the killed job's last checkpoint and ended with the undisturbed weights
    assert "resuming from" in (root / "logs/toy/memae/seed0/train.log").read_text()
    assert_same_weights(root, slow_reference)
