"""Config validation: a wrong value stops the workflow with a message naming the key."""

import copy
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_snakemake
from vadbench.config import protocol_of, run_config, validate_config
from vadbench.errors import ConfigError

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_shipped_config_is_valid(config):
    validate_config(config, SCHEMA)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["presets"]["toy"].update(epochs=0), "presets.toy.epochs"),
        (lambda c: c["presets"]["toy"].update(optimizer="adamw"), "presets.toy.optimizer"),
        (lambda c: c.update(seeds=[0, "one"]), "seeds.1"),
        (lambda c: c["variants"]["memae"]["protocol"].update(edges="trim"), "variants.memae.protocol.edges"),
        (lambda c: c["datasets"]["toy"].update(preset="huge"), "datasets.toy.preset"),
        (lambda c: c["variants"]["memae"].update(model="vae"), "variants.memae.model"),
        (lambda c: c["presets"]["toy"].update(frame_size=[60, 64]), "presets.toy"),
        (lambda c: c["datasets"]["toy"].update(sha256="abc"), "datasets.toy.sha256"),
        (lambda c: c.pop("mlflow"), "<top level>"),
        (lambda c: c["summary"].update(datasets=["ped3"]), "summary.datasets"),
        (lambda c: c["variants"]["mnad_pred"]["presets"].update(cpu="mnad_fast"), "variants.mnad_pred.presets.cpu"),
        (lambda c: c["presets"]["mnad_pred_cpu"].update(frame_size=[60, 64]), "presets.mnad_pred_cpu"),
        (lambda c: c["variants"]["mnad_pred"]["protocol"].update(name="mnadx"), "variants.mnad_pred.protocol"),
        (lambda c: c["variants"]["mnad_pred"]["protocol"].update(alpha=1.5), "variants.mnad_pred.protocol.alpha"),
    ],
)
def test_invalid_value_names_the_key(config, edit, key):
    edit(config)
    with pytest.raises(ConfigError, match=f"config key {key}"):
        validate_config(config, SCHEMA)


def test_a_variant_added_through_config_alone_resolves(config):
    config["variants"]["memae_cos"] = copy.deepcopy(config["variants"]["memae"])
    config["variants"]["memae_cos"]["params"]["addressing"] = "cosine"
    config["variants"]["memae_cos"]["protocol"]["edges"] = "pad"
    validate_config(config, SCHEMA)
    run = run_config(config, "toy", "memae_cos", 4)
    assert run["model_params"]["addressing"] == "cosine"
    assert run["model_params"]["widths"] == config["presets"]["toy"]["widths"]
    assert run["preset_name"] == "toy" and run["seed"] == 4
    assert protocol_of(config, "toy", "memae_cos").edges == "pad"


def test_mnad_variants_map_each_scale_to_their_own_preset(config):
    for scale, clip in (("toy", 5), ("cpu", 5), ("paper", 5)):
        config["datasets"]["toy"]["preset"] = scale
        run = run_config(config, "toy", "mnad_pred", 0)
        assert run["preset_name"] == f"mnad_pred_{scale}" and run["model_params"]["t_length"] == clip
        assert run_config(config, "toy", "mnad_recon", 0)["model_params"]["t_length"] == 1
        assert run_config(config, "toy", "memae", 0)["preset_name"] == scale
    protocol = protocol_of(config, "toy", "mnad_pred")
    assert (protocol.name, protocol.offset, protocol.normalisation, protocol.alpha) == ("mnad", 4, "none", 0.6)
    assert protocol.reset_memory_per_video is False


def test_workflow_refuses_an_invalid_config_naming_the_key(workflow_copy: Path):
    (workflow_copy / "bad.yaml").write_text("presets: {toy: {lr: -1}}\n")
    proc = run_snakemake(workflow_copy, "-n", configfile="bad.yaml", check=False)
    assert proc.returncode != 0
    assert "config key presets.toy.lr" in proc.stdout + proc.stderr
