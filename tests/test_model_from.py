"""``model_from``: a variant that scores another variant's trained model under its own protocol
(``ae_mse``: the ``ae`` weights under the official AE branch's error) trains nothing, through the
real Snakemake DAG and MLflow store; configs under which it would be another model are refused."""

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_CONFIG, finished_workflow, prepare_tiny_data, run_snakemake, tiny_config

from vadbench.config import run_config, validate_config
from vadbench.errors import ConfigError
from vadbench.pipeline import promote_model
from vadbench.training import train_model

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
ONE_SEED = TINY_CONFIG.replace("seeds: [0, 1]", "seeds: [0]")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """ae_mse first (which trains ae's model for both), then what ae itself still needs, then ae."""
    workdir = finished_workflow(tmp_path_factory.mktemp("model_from"), ONE_SEED, "results/toy_ae_mse_auc.json")
    (workdir / "owner_dry_run.txt").write_text(run_snakemake(workdir, "-n", "results/toy_ae_auc.json").stdout)
    run_snakemake(workdir, "results/toy_ae_auc.json")
    return workdir


@pytest.mark.workflow
def test_the_variant_scores_its_owners_weights_without_training(finished):
    seed = finished / "results/toy"
    owner = torch.load(seed / "ae/seed0/model.pt", weights_only=True)
    copied = torch.load(seed / "ae_mse/seed0/model.pt", weights_only=True)
    assert all(torch.equal(owner["state_dict"][k], copied["state_dict"][k]) for k in owner["state_dict"])
    assert copied["config"]["variant"] == "ae_mse" and copied["config"]["model_from"] == "ae"
    assert copied["history"] == owner["history"] and copied["fingerprint"] == owner["fingerprint"]
    assert not (seed / "ae_mse/seed0/checkpoint.pt").exists()
    assert "not trained again" in (finished / "logs/toy/ae_mse/seed0/train.log").read_text()
    # the same weights, another clip error: the scores differ, the protocols say why
    with np.load(seed / "ae/seed0/scores.npz") as a, np.load(seed / "ae_mse/seed0/scores.npz") as b:
        assert not np.allclose(a["raw/01"], b["raw/01"], equal_nan=True)
    result = json.loads((finished / "results/toy_ae_mse_auc.json").read_text())
    assert result["protocol"]["error"] == "official_mse" and result["model"] == "ae"


@pytest.mark.workflow
def test_its_mlflow_run_points_at_the_run_that_trained_the_model(finished):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{finished}/results/mlflow.db")
    experiment = client.get_experiment_by_name("vadbench-toy")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    copy_run, owner_run = runs["ae_mse-seed0"], runs["ae-seed0"]
    assert copy_run.data.tags["model_from_mlflow_run_id"] == owner_run.info.run_id
    assert copy_run.data.params["model_from"] == "ae" and copy_run.data.tags["amp"] == "none"
    assert [m.step for m in client.get_metric_history(copy_run.info.run_id, "train_loss")] == [0, 1]
    assert "micro_auc" in copy_run.data.metrics


@pytest.mark.workflow
def test_the_owner_is_trained_once_for_both(finished):
    out = (finished / "owner_dry_run.txt").read_text()
    assert not re.search(r"^train\s", out, re.MULTILINE), out  # ae's model is there: only scored and aggregated
    assert re.search(r"^score\s+1$", out, re.MULTILINE), out


def _with(config: dict, **variant) -> dict:
    config = copy.deepcopy(config)
    config["variants"]["ae_mse"].update(variant)
    return config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_from": "memae"}, r"ae_mse would train another model than memae \(model, model_params differ\)"),
        ({"model_from": "ae_mse"}, r"'ae_mse' must be another variant that trains its own model"),
        ({"model_from": "nope"}, r"'nope' must be another variant"),
        ({"params": {"widths": [8, 8, 8, 8]}}, r"would train another model than ae \(model_params differ\)"),
    ],
)
def test_a_model_from_that_would_be_another_model_is_refused_by_key(change, message):
    with pytest.raises(ConfigError, match=rf"variants.ae_mse.model_from: .*{message}"):
        validate_config(_with(tiny_config(), **change), SCHEMA)


def test_an_owner_that_takes_its_model_from_elsewhere_is_refused():
    config = _with(tiny_config())
    config["variants"]["ae_mse2"] = {**config["variants"]["ae_mse"], "model_from": "ae_mse"}
    with pytest.raises(ConfigError, match=r"variants.ae_mse2.model_from: 'ae_mse' must be another variant"):
        validate_config(config, SCHEMA)


def test_a_stale_owner_model_is_refused_before_anything_is_written(tmp_path):
    data = prepare_tiny_data(tmp_path / "data")
    stale = tiny_config()
    stale["presets"]["tiny"]["lr"] = 0.01  # trained before a config change the owner has not rerun for
    owner = tmp_path / "ae/seed0/model.pt"
    owner.parent.mkdir(parents=True)
    train_model(run_config(stale, "toy", "ae", 0), data / "arrays", data / "clips.npz", owner, tmp_path / "ae.ckpt")
    out = tmp_path / "ae_mse/seed0"
    with pytest.raises(ConfigError, match=r"trained for another run config .* \(preset differ\).*--forcerun"):
        promote_model(
            run_config(tiny_config(), "toy", "ae_mse", 0),
            owner,
            out / "model.pt",
            out / "run.json",
            f"sqlite:///{tmp_path}/mlflow.db",
            "vadbench-toy",
        )
    assert not out.exists()
