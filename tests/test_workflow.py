"""The real Snakemake DAG on the tiny preset: outputs, MLflow store, reruns, determinism, lint."""

import json
import re
from pathlib import Path

import pytest

from conftest import run_snakemake

TARGETS = ("results/toy_ae_auc.json", "results/toy_memae_auc.json")
pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    from conftest import TINY_CONFIG, copy_workflow

    workdir = copy_workflow(tmp_path_factory.mktemp("workflow"))
    (workdir / "tiny.yaml").write_text(TINY_CONFIG)
    run_snakemake(workdir, *TARGETS)
    return workdir


def test_dry_run_shows_every_stage_in_order(workflow_copy):
    out = run_snakemake(workflow_copy, "-n", "results/toy_memae_auc.json").stdout
    for rule in ("download", "frames", "resize", "index", "mlflow_store", "train", "score", "auc", "aggregate"):
        assert f"rule {rule}:" in out
    # one training job per configured seed
    assert re.search(r"^train\s+2$", out, re.MULTILINE), out


def test_aggregate_json_reports_seeds_protocol_and_versions(finished):
    result = json.loads((finished / "results/toy_memae_auc.json").read_text())
    assert result["seeds"] == [0, 1] and len(result["per_seed"]) == 2
    values = [s["micro_auc"] for s in result["per_seed"]]
    assert result["micro_auc"]["mean"] == pytest.approx(sum(values) / 2)
    assert all(0.0 <= v <= 1.0 for v in values)
    assert result["protocol"] == {"clip_length": 16, "scored_frame": "centre", "edges": "drop",
                                  "normalisation": "per_video_minmax", "name": "memae", "scored_frame_index": 8}
    assert result["preset"]["name"] == "tiny" and result["preset"]["widths"] == [4, 8, 8, 8]
    assert result["versions"]["torch"].startswith("2.13")
    seed = json.loads((finished / "results/toy/memae/seed0/auc.json").read_text())
    # 3 test videos of 48 frames, 8 + 7 edge frames dropped from each
    assert seed["frames_scored"] == 3 * (48 - 15)
    assert set(seed) >= {"micro_auc", "micro_auc_raw", "macro_auc", "macro_skipped_videos", "per_video_auc"}


def test_mlflow_holds_one_run_per_variant_and_seed(finished):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{finished}/results/mlflow.db")
    experiment = client.get_experiment_by_name("vadbench-toy")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["ae-seed0", "ae-seed1", "memae-seed0", "memae-seed1"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["preset.lr"] == "0.001" and run.data.params["model"] in ("ae", "memae")
        assert "micro_auc" in run.data.metrics and "macro_auc" in run.data.metrics
        losses = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in losses] == [0, 1]
    memae = next(r for r in runs if r.info.run_name == "memae-seed0")
    assert memae.data.params["model_params.memory_size"] == "2000"
    seed0 = json.loads((finished / "results/toy/memae/seed0/auc.json").read_text())
    assert memae.data.metrics["micro_auc"] == pytest.approx(seed0["micro_auc"])


def test_rerunning_a_finished_target_does_nothing(finished):
    out = run_snakemake(finished, "-n", *TARGETS)
    assert "Nothing to be done" in out.stdout + out.stderr


def test_training_the_same_seed_again_gives_the_same_auc(finished):
    before = json.loads((finished / "results/toy/memae/seed1/auc.json").read_text())
    (finished / "results/toy/memae/seed1/checkpoint.pt").unlink()  # no resume: train from scratch
    run_snakemake(finished, "results/toy/memae/seed1/auc.json", "--forcerun", "results/toy/memae/seed1/model.pt")
    after = json.loads((finished / "results/toy/memae/seed1/auc.json").read_text())
    for key in ("micro_auc", "micro_auc_raw", "macro_auc", "per_video_auc"):
        assert after[key] == before[key]
    assert after["mlflow_run_id"] != before["mlflow_run_id"]


def test_lint_reports_nothing(workflow_copy):
    proc = run_snakemake(workflow_copy, "--lint", configfile=None, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for rule" not in proc.stdout + proc.stderr
