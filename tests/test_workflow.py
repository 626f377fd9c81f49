"""The real Snakemake DAG on the tiny preset: outputs, MLflow store, plots, summary, report,
reruns, determinism, lint."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_snakemake

TARGETS = ()  # the default target: summary tables and every seed's plots
pytestmark = pytest.mark.workflow
sys.path.insert(0, str(REPO / "tests"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    from conftest import TINY_CONFIG, finished_workflow

    return finished_workflow(tmp_path_factory.mktemp("workflow"), TINY_CONFIG, *TARGETS)


def test_dry_run_shows_every_stage_in_order(workflow_copy):
    out = run_snakemake(workflow_copy, "-n").stdout
    for rule in (
        "download",
        "frames",
        "resize",
        "index",
        "mlflow_store",
        "train",
        "score",
        "auc",
        "plots",
        "aggregate",
        "track",
        "summary",
    ):
        assert f"rule {rule}:" in out
    # one training job per configured seed
    assert re.search(r"^train\s+4$", out, re.MULTILINE), out  # 2 variants x 2 seeds


def test_aggregate_json_reports_seeds_protocol_and_versions(finished):
    result = json.loads((finished / "results/toy_memae_auc.json").read_text())
    assert result["seeds"] == [0, 1] and len(result["per_seed"]) == 2
    values = [s["micro_auc"] for s in result["per_seed"]]
    assert result["micro_auc"]["mean"] == pytest.approx(sum(values) / 2)
    assert all(0.0 <= v <= 1.0 for v in values)
    assert result["protocol"] == {
        "clip_length": 16,
        "scored_frame": "centre",
        "edges": "drop",
        "normalisation": "per_video_minmax",
        "smoothing_sigma": 0.0,
        "alpha": None,
        "update_threshold": None,
        "reset_memory_per_video": False,
        "commit_weight": None,
        "smoothing_mu": None,
        "error": "memae_l2",
        "name": "memae",
        "scored_frame_index": 8,
    }
    assert result["preset"]["name"] == "tiny" and result["preset"]["widths"] == [4, 8, 8, 8]
    assert result["amp"] == "none" and [s["amp"] for s in result["per_seed"]] == ["none", "none"]  # as trained
    assert result["versions"]["torch"].startswith("2.13")
    seed = json.loads((finished / "results/toy/memae/seed0/auc.json").read_text())
    # 3 test videos of 48 frames, 8 + 7 edge frames dropped from each
    assert seed["frames_scored"] == 3 * (48 - 15)
    assert set(seed) >= {
        "micro_auc",
        "micro_auc_raw",
        "macro_auc",
        "macro_skipped_videos",
        "per_video_auc",
        "eer",
        "aupr",
        "micro_auc_ci95",
    }
    assert seed["protocol"] == result["protocol"]
    ci = seed["micro_auc_ci95"]
    assert ci["samples"] == 1000 and ci["unit"] == "video" and ci["low"] <= seed["micro_auc"] <= ci["high"]


def test_saved_scores_give_the_same_auc_by_an_independent_implementation_and_the_cli(finished, capsys):
    from independent_auc import check_seed_dir

    from vadbench.cli import main

    for seed_dir in sorted((finished / "results/toy").glob("*/seed*")):
        recorded, recomputed = check_seed_dir(seed_dir)
        assert abs(recorded - recomputed) < 1e-9
        assert main(["evaluate", "--scores", str(seed_dir / "scores.npz"), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["micro_auc"] == recorded
        # the dataset's own label file gives the same labels as the copy inside the score file
        assert (
            main(
                [
                    "evaluate",
                    "--scores",
                    str(seed_dir / "scores.npz"),
                    "--labels",
                    str(finished / "resources/toy/frames"),
                    "--json",
                ]
            )
            == 0
        )
        assert json.loads(capsys.readouterr().out)["micro_auc"] == recorded


def test_plots_per_test_video_and_roc(finished):
    from PIL import Image

    plots = finished / "results/toy/memae/seed0/plots"
    assert sorted(p.name for p in plots.glob("*.png")) == ["roc.png", "video_01.png", "video_02.png", "video_03.png"]
    with Image.open(plots / "video_01.png") as image:
        assert image.size == (800, 260)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 20  # a drawing, not a blank canvas


def test_summary_has_one_row_per_dataset_variant_with_the_paper_column(finished):
    import csv

    rows = list(csv.DictReader((finished / "results/summary.csv").open()))
    assert [(r["dataset"], r["variant"]) for r in rows] == [("toy", "ae"), ("toy", "memae")]
    memae = json.loads((finished / "results/toy_memae_auc.json").read_text())
    assert rows[1]["micro_auc"] == f"{memae['micro_auc']['mean'] * 100:.1f} +/- {memae['micro_auc']['std'] * 100:.1f}"
    assert rows[1]["paper_auc"] == ""  # no published figure for the synthetic scene
    md = (finished / "results/summary.md").read_text()
    assert "| toy | memae | tiny | 0 1 |" in md


def test_report_renders_the_auc_table_in_headless_chromium(finished, tmp_path):
    run_snakemake(finished, "--report", "report.html")
    html = (finished / "report.html").read_text()
    assert "video_01.png" in html and "auc_per_seed.csv" in html
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it with apt-get)")
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            (finished / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    dom = proc.stdout
    assert "AUC summary" in dom, proc.stderr[-2000:]
    table = dom[dom.index("AUC summary") :]
    memae = json.loads((finished / "results/toy_memae_auc.json").read_text())
    cell = f"{memae['micro_auc']['mean'] * 100:.1f} +/- {memae['micro_auc']['std'] * 100:.1f}"
    assert "<table" in dom and "micro AUC %" in table and cell in table


def test_mlflow_holds_one_run_per_variant_and_seed(finished):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{finished}/results/mlflow.db")
    experiment = client.get_experiment_by_name("vadbench-toy")
    everything = client.search_runs([experiment.experiment_id])
    runs = [r for r in everything if r.data.tags.get("vadbench.role") != "parent"]
    parents = {r.data.tags["variant"]: r for r in everything if r.data.tags.get("vadbench.role") == "parent"}
    assert sorted(r.info.run_name for r in runs) == ["ae-seed0", "ae-seed1", "memae-seed0", "memae-seed1"]
    assert sorted(parents) == ["ae", "memae"]
    summary = json.loads((finished / "results/toy_memae_auc.json").read_text())
    assert parents["memae"].data.metrics["micro_auc_mean"] == pytest.approx(summary["micro_auc"]["mean"])
    assert summary["mlflow_parent_run_id"] == parents["memae"].info.run_id
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["preset.lr"] == "0.001" and run.data.params["model"] in ("ae", "memae")
        assert run.data.tags["amp"] == "none"
        assert "micro_auc" in run.data.metrics and "macro_auc" in run.data.metrics
        losses = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in losses] == [0, 1]
        assert run.data.tags["mlflow.parentRunId"] == parents[run.data.tags["variant"]].info.run_id
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "plots")]
        assert "plots/roc.png" in artifacts and "plots/video_01.png" in artifacts
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


def test_a_run_missing_from_the_store_gets_a_new_one_instead_of_failing(tmp_path):
    from mlflow.tracking import MlflowClient

    from vadbench.tracking import RunLogger, init_store

    uri = f"sqlite:///{tmp_path}/other.db"
    init_store(uri, ["vadbench-toy"], tmp_path / "artifacts")
    tracker = RunLogger(uri, "vadbench-toy", run_id="0123456789abcdef0123456789abcdef")
    run = MlflowClient(tracking_uri=uri).get_run(tracker.run_id)
    assert run.data.tags["vadbench.replaces_run"] == "0123456789abcdef0123456789abcdef"
