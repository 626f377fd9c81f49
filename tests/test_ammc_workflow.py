"""AMMC-Net through the real Snakemake DAG on the tiny preset: flow, both training stages,
scores, AUC and MLflow runs; the stage-1 streams shared by every variant that starts from them."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_CONFIG, finished_workflow, run_snakemake

sys.path.insert(0, str(REPO / "tests"))

pytestmark = pytest.mark.workflow
TARGETS = ("results/toy_ammc_auc.json", "results/toy_ammc_appearance_auc.json")
ONE_SEED = TINY_CONFIG.replace("seeds: [0, 1]", "seeds: [0]")
# a second stage-2 setting on the same streams: only the bridge trains
FROZEN = """
variants:
  ammc_frozen:
    model: ammc
    streams_from: ammc
    params: {n_embed: 16, embed_dim: 8, freeze_streams: true}
    presets: {toy: ammc_toy, cpu: ammc_cpu, paper: ammc_paper, tiny: tiny_ammc}
    protocol: {name: ammc}
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    return finished_workflow(tmp_path_factory.mktemp("ammc_workflow"), ONE_SEED, *TARGETS)


def test_flow_is_computed_once_beside_the_arrays(finished):
    flow = finished / "resources/toy/tiny_ammc/flow"
    manifest = json.loads((flow / "manifest.json").read_text())
    assert manifest["method"] == "dis"
    for split in ("train", "test"):
        for video, frames in json.loads((finished / "resources/toy/tiny_ammc/arrays/manifest.json").read_text())[
            "splits"
        ][split].items():
            array = np.load(flow / split / f"{video}.npy", mmap_mode="r")
            assert array.shape == (frames - 1, 32, 32, 2) and array.dtype == np.float16


def test_both_stages_score_and_aggregate(finished):
    seed = finished / "results/toy/ammc/seed0"
    for name in ("stream_appearance.pt", "stream_motion.pt", "model.pt", "scores.npz", "auc.json"):
        assert (seed / name).exists(), name
    model = torch.load(seed / "model.pt", weights_only=True)
    assert model["config"]["model"] == "ammc" and set(model["config"]["init"]) == {"appearance", "motion"}
    with np.load(seed / "scores.npz") as scores:
        assert {"psnr/01", "commit/01", "raw/01"} <= set(scores.files)
        raw = scores["raw/01"]
        assert np.isnan(raw[:4]).all() and not np.isnan(raw[4:]).any()  # the first 4 frames are never predicted
    result = json.loads((finished / "results/toy_ammc_auc.json").read_text())
    assert result["protocol"]["name"] == "ammc" and result["protocol"]["commit_weight"] == 0.5
    assert 0.0 <= result["micro_auc"]["mean"] <= 1.0
    # the appearance-only variant is ammc's own stage-1 stream, not a second one
    promoted = torch.load(finished / "results/toy/ammc_appearance/seed0/model.pt", weights_only=True)
    stream = torch.load(seed / "stream_appearance.pt", weights_only=True)
    assert all(torch.equal(promoted["state_dict"][k], stream["state_dict"][k]) for k in stream["state_dict"])
    assert promoted["config"]["variant"] == "ammc_appearance" and promoted["config"]["streams_from"] == "ammc"


def test_mlflow_nests_both_stages_under_the_parent(finished):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{finished}/results/mlflow.db")
    experiment = client.get_experiment_by_name("vadbench-toy")
    runs = {
        r.info.run_name: r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get("vadbench.role") != "parent"
    }
    parents = {
        r.data.tags["variant"]: r.info.run_id
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get("vadbench.role") == "parent"
    }
    assert sorted(runs) == [
        "ammc-seed0",
        "ammc-seed0-stream_appearance",
        "ammc-seed0-stream_motion",
        "ammc_appearance-seed0",
    ]
    for name, run in runs.items():
        assert run.info.status == "FINISHED"
        variant = "ammc_appearance" if name.startswith("ammc_appearance") else "ammc"
        assert run.data.tags["mlflow.parentRunId"] == parents[variant], name
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")], name
    assert runs["ammc-seed0-stream_motion"].data.params["model_params.stream"] == "motion"
    assert "train_flow_intensity" in runs["ammc-seed0"].data.metrics
    assert "micro_auc" in runs["ammc-seed0"].data.metrics and "micro_auc" in runs["ammc_appearance-seed0"].data.metrics
    assert (
        runs["ammc_appearance-seed0"].data.tags["stage1_mlflow_run_id"]
        == runs["ammc-seed0-stream_appearance"].info.run_id
    )


def test_another_stage_two_setting_reuses_the_streams(finished):
    (finished / "frozen.yaml").write_text(FROZEN)
    out = run_snakemake(
        finished, "-n", "results/toy_ammc_frozen_auc.json", "--configfile", "tiny.yaml", "frozen.yaml", configfile=None
    ).stdout
    assert re.search(r"^train\s+1$", out, re.MULTILINE), out
    assert "train_stream" not in out and "rule flow:" not in out
    assert "results/toy/ammc/seed0/stream_appearance.pt" in out


def test_a_rerun_has_nothing_to_do(finished):
    out = run_snakemake(finished, "-n", *TARGETS)
    assert "Nothing to be done" in out.stdout + out.stderr, out.stdout


def test_evaluate_recombines_the_terms_under_other_weights(finished, capsys):
    from independent_auc import check_seed_dir

    from vadbench.cli import main

    seed = finished / "results/toy/ammc/seed0"
    recorded, recomputed = check_seed_dir(seed)
    assert abs(recorded - recomputed) < 1e-9
    assert main(["evaluate", "--scores", str(seed / "scores.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro_auc"] == recorded
    # the recorded weights again give the same scores; the paper's Ped2 weights give others
    assert main(["evaluate", "--scores", str(seed / "scores.npz"), "--commit-weight", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro_auc"] == recorded
    assert (
        main(
            [
                "evaluate",
                "--scores",
                str(seed / "scores.npz"),
                "--commit-weight",
                "0.01",
                "--smoothing-mu",
                "0.55",
                "--json",
            ]
        )
        == 0
    )
    paper = json.loads(capsys.readouterr().out)
    assert paper["protocol"]["commit_weight"] == 0.01 and paper["protocol"]["smoothing_mu"] == 0.55
    assert main(["evaluate", "--scores", str(seed / "scores.npz"), "--smoothing-mu", "0"]) == 2
    assert "smoothing_mu" in capsys.readouterr().err
