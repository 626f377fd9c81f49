"""Config validation: a wrong value stops the workflow with a message naming the key."""

import copy
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_snakemake

from vadbench.config import normalise_seeds, protocol_of, run_config, validate_config
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
        (lambda c: c["mlflow"].update(experiment="vadbench-{dataset}-{variant}"), "mlflow.experiment"),
        (lambda c: c["mlflow"].update(experiment="{dataset}-{dataset.__class__}"), "mlflow.experiment"),
        (lambda c: c["presets"].update({"toy') or (1=1": c["presets"]["toy"]}), "presets"),
        (lambda c: c["presets"]["toy"].update(frame_size=[8192, 8192]), "presets.toy.frame_size.0"),
        (lambda c: c["presets"]["toy"].update(batch_size=10**6), "presets.toy.batch_size"),
        (
            lambda c: c["datasets"]["toy"]["synthetic"].update(frames_per_video=10**7),
            "datasets.toy.synthetic.frames_per_video",
        ),
        (lambda c: c.update(seeds=list(range(1000))), "seeds"),
        (lambda c: c["datasets"]["ped2"].pop("sha256"), "datasets.ped2.sha256"),
        (lambda c: c.update(archives={"max_ratio": 0.5}), "archives.max_ratio"),
        (
            lambda c: c["variants"]["ammc_appearance"].update(streams_from="memae"),
            "variants.ammc_appearance.streams_from",
        ),
        (lambda c: c["variants"]["memae"].update(streams_from="ammc"), "variants.memae.streams_from"),
        (
            lambda c: c["variants"]["ammc_appearance"]["presets"].update(cpu="ammc_toy"),
            "variants.ammc_appearance.streams_from",
        ),
        (
            lambda c: c["variants"]["ammc_appearance"]["params"].update(stream="motion"),
            "variants.ammc_appearance.params.stream",
        ),
        (lambda c: c["presets"]["ammc_cpu"].pop("flow"), "presets.ammc_cpu"),
        (lambda c: c["presets"]["ammc_cpu"]["flow"].update(method="flownet2"), "presets.ammc_cpu.flow.method"),
        (lambda c: c["presets"]["ammc_cpu"]["stage1"].update(lr=1), "presets.ammc_cpu.stage1"),
        (lambda c: c["variants"]["ammc"]["protocol"].update(smoothing_mu=0), "variants.ammc.protocol.smoothing_mu"),
        (
            lambda c: [c["variants"][v].pop("presets") for v in ("ammc", "ammc_appearance")],
            "presets.cpu.*variants.ammc.presets.cpu",
        ),
        (lambda c: c["variants"]["ae"]["protocol"].update(error="mse"), "variants.ae.protocol.error"),
        (
            lambda c: c["variants"]["mnad_pred"]["protocol"].update(error="official_mse"),
            "variants.mnad_pred.protocol.error: 'official_mse' is a MemAE/AE clip error, but variant mnad_pred",
        ),
        (
            lambda c: c["variants"]["memae"]["protocol"].update(name="mnad"),
            "variants.memae.protocol.error: variant memae \\(model memae\\) is scored by a clip error",
        ),
        (lambda c: c["datasets"]["ped2"].update(label_source="liu"), "datasets.ped2.label_source"),
        (
            lambda c: c["datasets"]["avenue"].update(label_source="ucsd_official"),
            "datasets.avenue.label_source: ucsd_official",
        ),
        (lambda c: c["presets"]["toy"].update(resize_filter="lanczos"), "presets.toy.resize_filter"),
        (lambda c: c["presets"]["toy"].update(drop_last="yes"), "presets.toy.drop_last"),
    ],
)
def test_invalid_value_names_the_key(config, edit, key):
    edit(config)
    with pytest.raises(ConfigError, match=f"config key {key}"):
        validate_config(config, SCHEMA)


def test_paper_presets_take_the_official_codes_defaults(config):
    """MemAE training_options.py: EpochNum 100, BatchSize 14; MNAD Train.py: drop_last, cv2.resize."""
    assert (config["presets"]["paper"]["epochs"], config["presets"]["paper"]["batch_size"]) == (100, 14)
    for name in ("mnad_recon_paper", "mnad_pred_paper"):
        assert config["presets"][name]["drop_last"] is True
        assert config["presets"][name]["resize_filter"] == "opencv_bilinear"
    for name, preset in config["presets"].items():  # the README's CPU results keep today's loader and filter
        if not name.endswith("paper"):
            assert "drop_last" not in preset and "resize_filter" not in preset, name


def test_ae_and_ae_mse_differ_only_in_the_clip_error(config):
    validate_config(config, SCHEMA)
    ae, ae_mse = protocol_of(config, "ped2", "ae"), protocol_of(config, "ped2", "ae_mse")
    assert (ae.error, ae_mse.error) == ("memae_l2", "official_mse")
    assert {k: v for k, v in ae.to_dict().items() if k != "error"} == {
        k: v for k, v in ae_mse.to_dict().items() if k != "error"
    }
    assert protocol_of(config, "ped2", "mnad_recon").error is None
    base = run_config(config, "ped2", "ae", 0)
    assert {**run_config(config, "ped2", "ae_mse", 0), "variant": "ae"} == base  # one model, two measures


def test_unknown_experiment_field_is_named(config):
    config["mlflow"]["experiment"] = "vadbench-{dataset}-{variant}"
    with pytest.raises(
        ConfigError, match=re.escape("'vadbench-{dataset}-{variant}' uses {variant}, but only {dataset} is replaced")
    ):
        validate_config(config, SCHEMA)


@pytest.mark.parametrize("given", ["[0,1,2,3,4]", ["0", "1", "2", "3", "4"], "0,1,2,3,4", " [0, 1, 2, 3, 4] "])
def test_seeds_from_the_command_line_are_normalised(config, given):
    config["seeds"] = given
    validate_config(config, SCHEMA)
    assert config["seeds"] == [0, 1, 2, 3, 4]
    assert normalise_seeds(7) == [7]


def test_archive_caps_from_the_command_line_are_numbers(config):
    config["archives"] = {"max_ratio": "200", "max_members": "5000000", "max_total_bytes": "1e12"}  # --config form
    validate_config(config, SCHEMA)
    assert config["archives"] == {"max_ratio": 200, "max_members": 5_000_000, "max_total_bytes": 1e12}


def test_command_line_seed_list_plans_one_model_per_seed(workflow_copy: Path):
    proc = run_snakemake(workflow_copy, "-n", "--config", "seeds=[0,1,2,3,4]")
    plan = proc.stdout + proc.stderr
    assert re.search(r"^train\s+10$", plan, re.M), plan  # 5 seeds x summary variants ae, memae
    for seed in range(5):
        assert f"results/toy/memae/seed{seed}/model.pt" in plan


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


def test_ammc_stages_share_the_streams_and_resolve_their_own_presets(config):
    from vadbench.config import stream_run_config, streams_needed, streams_owner

    run = run_config(config, "toy", "ammc", 3)
    assert run["preset_name"] == "ammc_toy" and run["model_params"]["t_length"] == 5
    appearance = stream_run_config(config, "toy", "ammc", 3, "appearance")
    assert appearance["model"] == "ammc_stream" and appearance["model_params"]["stream"] == "appearance"
    assert appearance["preset"]["epochs"] == run["preset"]["stage1"]["epochs"] and "stage1" not in appearance["preset"]
    assert "flow_weight" not in appearance["model_params"]
    # stage 2 alone changed: the stage-1 run config, hence the trained streams, stay
    config["presets"]["ammc_toy"]["epochs"] += 1
    config["variants"]["ammc"]["params"]["flow_weight"] = 2.0
    assert stream_run_config(config, "toy", "ammc", 3, "appearance") == appearance
    assert streams_owner(config, "ammc") == "ammc" and streams_needed(config, "ammc") == ("appearance", "motion")
    assert streams_owner(config, "ammc_appearance") == "ammc" and streams_needed(config, "ammc_appearance") == (
        "appearance",
    )
    assert streams_owner(config, "memae") is None and streams_needed(config, "memae") == ()
    assert protocol_of(config, "toy", "ammc").offset == 4


def test_workflow_refuses_an_invalid_config_naming_the_key(workflow_copy: Path):
    (workflow_copy / "bad.yaml").write_text("presets: {toy: {lr: -1}}\n")
    proc = run_snakemake(workflow_copy, "-n", configfile="bad.yaml", check=False)
    assert proc.returncode != 0
    assert "config key presets.toy.lr" in proc.stdout + proc.stderr
