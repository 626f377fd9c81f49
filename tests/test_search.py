"""`vadbench search`: the configuration chosen is the one whose seed-0 run has the lowest final
validation loss, read from real trained models; the test AUC is shown beside it and never decides."""

import copy
import json

import pytest
import torch
from conftest import prepare_tiny_data, tiny_config

from vadbench.cli import main
from vadbench.config import run_config
from vadbench.errors import DatasetError
from vadbench.search import SearchEntry, choose, read_entry, search_table
from vadbench.training import train_model

# variant: (epochs of its preset, seeds trained)
RUNS = {"memae_short": (1, [0]), "memae_long": (3, [0, 1]), "ae_short": (1, [0])}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """Real tiny trainings laid out as the workflow writes them: results/toy/<variant>/seed<s>/model.pt."""
    root = tmp_path_factory.mktemp("search")
    data = prepare_tiny_data(root / "data")
    config = tiny_config()
    for variant, (epochs, _) in RUNS.items():
        preset = copy.deepcopy(config["presets"]["tiny"])
        preset.update(epochs=epochs, validation_videos=1)
        config["presets"][f"tiny_{variant}"] = preset
        base = "ae" if variant.startswith("ae") else "memae"
        config["variants"][variant] = {
            **copy.deepcopy(config["variants"][base]),
            "presets": {"tiny": f"tiny_{variant}"},
        }
    for variant, (_, seeds) in RUNS.items():
        for seed in seeds:
            out = root / "results" / "toy" / variant / f"seed{seed}"
            out.mkdir(parents=True)
            run = run_config(config, "toy", variant, seed)
            train_model(run, data / "arrays", data / "clips.npz", out / "model.pt", out / "checkpoint.pt")
    return root / "results", config


def _final_val_loss(path):
    return torch.load(path, weights_only=True)["history"][-1]["val_loss"]


def test_the_lowest_validation_loss_of_seed_0_is_chosen_whatever_the_test_auc(searched):
    results, _ = searched
    memae = {v: _final_val_loss(results / "toy" / v / "seed0" / "model.pt") for v in ("memae_short", "memae_long")}
    better, worse = sorted(memae, key=memae.get)
    assert memae[better] < memae[worse]
    # the test AUC favours the other configuration: it must not matter
    for variant, auc in ((better, 0.6), (worse, 0.9)):
        (results / "toy" / variant / "seed0" / "auc.json").write_text(json.dumps({"micro_auc": auc}))
    entries = [read_entry(p) for p in sorted(results.glob("toy/*/seed*"))]
    assert {(e.variant, e.seed) for e in entries} == {
        ("memae_short", 0),
        ("memae_long", 0),
        ("memae_long", 1),
        ("ae_short", 0),
    }
    assert choose(entries) == {"memae (clip 16)": better, "ae (clip 16)": "ae_short"}
    # seed 1 alone decides nothing for memae_short, which has no seed-1 run
    assert choose(entries, seed=1) == {"memae (clip 16)": "memae_long"}


def test_the_table_shows_every_configuration_with_its_seeds_minutes_and_the_choice(searched, capsys):
    results, _ = searched
    bench = results / "benchmarks" / "toy" / "memae_long"
    for seed, seconds in ((0, 90.0), (1, 150.0)):
        (bench / f"seed{seed}").mkdir(parents=True, exist_ok=True)
        (bench / f"seed{seed}" / "train.tsv").write_text(f"s\th:m:s\n{seconds}\t0:00:00\n")
    for seed, auc in ((0, 0.7), (1, 0.8)):
        (results / "toy" / "memae_long" / f"seed{seed}" / "auc.json").write_text(json.dumps({"micro_auc": auc}))
    assert main(["search", *map(str, sorted(results.glob("toy/*/seed*")))]) == 0
    table = capsys.readouterr().out
    rows = {
        line.split(" | ")[1]: line
        for line in table.splitlines()
        if line.startswith("| memae") or line.startswith("| ae")
    }
    assert set(rows) == {"memae_short", "memae_long", "ae_short"}
    long_row = rows["memae_long"]
    assert "32x32, widths 4-8-8-8, 3 epochs, batch 8, none" in long_row
    assert "| 0, 1 | 0.7500 +/- 0.0707 | 1.5-2.5 |" in long_row
    val = _final_val_loss(results / "toy" / "memae_long" / "seed0" / "model.pt")
    assert f"| {val:.6f} | 0.7000 |" in long_row
    chosen = [v for v, line in rows.items() if line.endswith("**chosen** |")]
    assert sorted(chosen) == sorted(set(choose([read_entry(p) for p in results.glob("toy/*/seed*")]).values()))
    assert rows["ae_short"].split(" | ")[4] == "-"  # no auc.json: shown as missing, not as zero


def test_a_model_without_a_validation_loss_is_refused_by_name(searched, tmp_path, capsys):
    _, config = searched
    data = prepare_tiny_data(tmp_path / "data")
    out = tmp_path / "results" / "toy" / "memae" / "seed0"
    out.mkdir(parents=True)
    config = copy.deepcopy(config)
    config["presets"]["tiny"]["epochs"] = 1  # no validation_videos
    train_model(
        run_config(config, "toy", "memae", 0), data / "arrays", data / "clips.npz", out / "model.pt", out / "c.pt"
    )
    with pytest.raises(DatasetError, match="model.pt: no validation loss.*validation_videos"):
        read_entry(out)
    assert main(["search", str(out)]) == 2
    assert "vadbench search: error:" in capsys.readouterr().err
    (out / "model.pt").unlink()  # still training
    assert main(["search", str(out)]) == 2
    assert "model.pt: no such file; the run has not finished training" in capsys.readouterr().err


def test_choose_compares_within_a_group_and_ignores_nan():
    def entry(variant, group, val, seed=0):
        return SearchEntry("ped2", variant, seed, group, {}, val, None, None)

    entries = [
        entry("a", "g1", 0.3),
        entry("b", "g1", float("nan")),
        entry("c", "g1", 0.2, seed=1),
        entry("d", "g2", 0.5),
    ]
    assert choose(entries) == {"g1": "a", "g2": "d"}
    assert search_table([]).count("\n") == 1  # header only


def _shipped_config_with(*overlays: str) -> dict:
    """config/config.yaml merged with the Ped2 source and search files, as the README's
    `--configfile config/ped2_local.yaml <search>` merges them, validated by the schema."""
    import yaml
    from conftest import REPO, _merge

    from vadbench.config import validate_config

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for overlay in ("config/ped2_local.yaml", *overlays):
        config = _merge(config, yaml.safe_load((REPO / overlay).read_text()))
    validate_config(config, REPO / "workflow/schemas/config.schema.yaml")
    return config


def test_the_shipped_ped2_search_is_a_valid_config_whose_configurations_differ_only_as_written():
    config = _shipped_config_with("config/search/ped2_cpu.yaml")
    runs = {v: run_config(config, "ped2", v, 0) for v in config["summary"]["variants"]}
    # the search ran in the contiguous layout, before the `cpu` preset took channels_last_3d
    assert runs["memae"]["preset"].pop("memory_format") == "channels_last_3d"
    for variant, run in runs.items():
        base = runs["memae" if run["model"] == "memae" else "mnad_pred"]
        # the same model and loss (so the validation losses compare); widths come from the preset
        assert {**run["model_params"], "widths": None} == {**base["model_params"], "widths": None}, variant
        assert run["preset"]["validation_videos"] == 2  # the choice needs the held-out videos
        changed = {k for k in run["preset"] if run["preset"][k] != base["preset"].get(k)}
        assert changed <= {"amp", "frame_size", "epochs", "widths"}, (variant, changed)
    assert runs["memae_bf16"]["preset"] == {**runs["memae"]["preset"], "amp": "bf16"}


def test_the_channels_last_check_trained_the_cpu_preset_as_it_now_ships():
    """config/search/ped2_channels_last.yaml is the record behind the `cpu` preset's layout: its
    `memae_cl3d` must be the shipped `memae` at the shipped `cpu` preset, nothing else."""
    config = _shipped_config_with("config/search/ped2_channels_last.yaml")
    checked, shipped = (run_config(config, "ped2", v, 0) for v in ("memae_cl3d", "memae"))
    assert checked["preset"] == shipped["preset"]
    assert checked["preset"]["memory_format"] == "channels_last_3d"
    assert checked["model"] == shipped["model"] and checked["model_params"] == shipped["model_params"]
    assert config["variants"]["memae_cl3d"]["protocol"] == config["variants"]["memae"]["protocol"]


def test_the_toy_channels_last_check_changes_the_toy_layout_only_and_was_not_adopted():
    """config/search/toy_channels_last.yaml timed the demo with the `toy` preset in channels-last
    against the shipped one: it may change that layout and nothing else, and (its outcome) the
    shipped `toy` preset stays contiguous."""
    config, shipped = _shipped_config_with("config/search/toy_channels_last.yaml"), _shipped_config_with()
    checked, base = (run_config(c, "toy", "memae", 0) for c in (config, shipped))
    assert {**checked["preset"], "memory_format": None} == {**base["preset"], "memory_format": None}
    assert checked["preset"]["memory_format"] == "channels_last_3d"
    assert base["preset"].get("memory_format", "contiguous") == "contiguous"
    assert {k: v for k, v in config.items() if k != "presets"} == {k: v for k, v in shipped.items() if k != "presets"}
