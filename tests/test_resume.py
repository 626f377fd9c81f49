"""A training job stopped through the real DAG by SIGTERM mid-run resumes on the next ``snakemake``
call and ends with the same weights and AUC as a run never interrupted (SIGKILL at the same point
is one of the faults of tests/test_faults.py)."""

from __future__ import annotations

import json
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


def train_pids(root: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"{root}/.snakemake/scripts/.*train.py"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def interrupt(root: Path, sig: signal.Signals) -> subprocess.CompletedProcess:
    """Start the DAG, wait until training has finished its first epoch, send ``sig`` to the job."""
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "2", TARGET, "--configfile", "tiny.yaml"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = root / SEED / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never wrote its first checkpoint"
        time.sleep(0.05)
    pids = train_pids(root)
    assert pids, "no training process found"
    for pid in pids:
        subprocess.run(["kill", f"-{sig.name[3:]}", str(pid)], check=False)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_same_result(root: Path, reference: Path) -> None:
    a = torch.load(root / SEED / "model.pt", weights_only=True)
    b = torch.load(reference / SEED / "model.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    auc_a = json.loads((root / SEED / "auc.json").read_text())
    auc_b = json.loads((reference / SEED / "auc.json").read_text())
    assert auc_a["micro_auc"] == auc_b["micro_auc"] and auc_a["per_video_auc"] == auc_b["per_video_auc"]


def test_sigterm_saves_a_checkpoint_exits_non_zero_and_resumes(slow_reference, tmp_path):
    root = slow_workdir(tmp_path)
    stopped = interrupt(root, signal.SIGTERM)
    assert stopped.returncode != 0 and not (root / SEED / "model.pt").exists()
    log = (root / "logs/toy/memae/seed0/train.log").read_text()
    assert "SIGTERM received" in log
    state = torch.load(root / SEED / "checkpoint.pt", weights_only=True)
    assert "partial" in state or state["epoch"] >= 1  # stopped inside an epoch, or just at its end
    run_snakemake(root, TARGET)
    assert_same_result(root, slow_reference)
