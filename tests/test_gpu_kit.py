"""The GPU benchmarks run where they will run: on a lent machine whose python3 has PyTorch, NumPy,
Pillow, SciPy and PyYAML but no MLflow, Snakemake, jsonschema or PyAV, from the checkout's src/.
Here they run on the CPU with those four imports refused, at a tiny scale, so that the one
short device session they are written for does not find a broken script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import prepare_tiny_data

REPO = Path(__file__).resolve().parents[1]
ABSENT_ON_THE_DEVICE = ("mlflow", "snakemake", "jsonschema", "av")

# runs a script as `python3 script ...` would, with the packages the device lacks refused
RUN_WITHOUT = """
import importlib.abc, runpy, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {absent!r}:
            raise ImportError(f"{{name}} is not installed on the device machine")
sys.meta_path.insert(0, Refuse())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
""".format(absent=ABSENT_ON_THE_DEVICE)


def run_script(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src"), "HOME": str(cwd)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_refusal_works(tmp_path):
    """Guards the two tests below: the device's missing packages are really missing in them."""
    (tmp_path / "uses_mlflow.py").write_text("import mlflow.tracking\n")
    with pytest.raises(AssertionError, match="mlflow is not installed on the device machine"):
        run_script(tmp_path / "uses_mlflow.py", cwd=tmp_path)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return prepare_tiny_data(tmp_path_factory.mktemp("gpu_kit")) / "frames"


def test_the_ped2_recipe_packs_trains_scores_and_reports_without_mlflow(frames, tmp_path):
    carry = tmp_path / "gpu_carry" / "ped2"
    run_script(REPO / "benchmarks/gpu_ped2.py", "pack", "--frames", frames, "--to", carry, "--size", 32)
    manifest = json.loads((carry / "manifest.json").read_text())
    assert (carry / "labels.npz").is_file()
    first = carry / "train" / next(iter(manifest["splits"]["train"]))
    assert len(list(first.glob("*.jpg"))) == next(iter(manifest["splits"]["train"].values()))
    out = tmp_path / "out"
    args = ["--frames", carry, "--out", out, "--work", tmp_path / "work", "--preset", "toy", "--epochs", 2]
    printed = run_script(REPO / "benchmarks/gpu_ped2.py", "train", *args, "--threads", 1)
    result = json.loads((out / "ped2_memae_toy_seed0.json").read_text())
    assert result["epochs"] == 2 and len(result["epoch_clips_per_s"]) == 2  # one, then extended by one
    assert 0.0 <= result["micro_auc"] <= 1.0 and result["amp"] in ("none", "bf16")
    assert "training 2 epochs of the 2 asked for" in printed


def test_the_paper_step_benchmark_runs_its_device_code_on_the_cpu():
    printed = run_script(
        REPO / "benchmarks/gpu_paper.py",
        *("--device", "cpu", "--preset", "toy", "--variants", "memae", "--steps", 1, "--warmup", 1),
        *("--amps", "none", "--layouts", "contiguous", "--threads", 1),
    )
    assert "fp32 matmul peak" in printed
    assert "x fp32 peak" in printed and "loader" in printed and "of a step" in printed
    assert "device-minutes of training" in printed
