"""The preset's ``amp: auto``: bf16 exactly where the device has it in hardware, fp32 elsewhere,
the precision recorded with the model, and kept by a resumed run on other hardware."""

import logging

import pytest
import torch
from conftest import prepare_tiny_data, tiny_config
from test_training import Interrupt, StopAfter

import vadbench.precision
from vadbench.aggregate import trained_precision
from vadbench.clips import hold_out_videos, load_index, make_loader
from vadbench.config import run_config
from vadbench.precision import native_bf16, resolve_amp
from vadbench.training import load_trained, train_model, validation_loss

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_tiny_data(tmp_path_factory.mktemp("precision"))


def _run(amp: str):
    config = tiny_config()
    config["presets"]["tiny"].update(epochs=2, amp=amp)
    return run_config(config, "toy", "memae", 5)


def _hardware(monkeypatch, has_bf16: bool) -> None:
    monkeypatch.setattr(vadbench.precision, "native_bf16", lambda device: has_bf16)


def _state(path):
    return torch.load(path, weights_only=True)


def _same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("has_bf16", "expected"), [(True, "bf16"), (False, "none")])
def test_auto_resolves_by_the_hardware_and_explicit_values_stay(monkeypatch, has_bf16, expected):
    _hardware(monkeypatch, has_bf16)
    assert resolve_amp("auto", CPU) == expected
    assert resolve_amp("none", CPU) == "none" and resolve_amp("bf16", CPU) == "bf16"


def test_explicit_bf16_without_hardware_bf16_warns_with_the_fix(monkeypatch, caplog):
    _hardware(monkeypatch, False)
    with caplog.at_level(logging.WARNING, logger="vadbench.precision"):
        assert resolve_amp("bf16", CPU) == "bf16"
    assert "emulated" in caplog.text and "auto or none" in caplog.text


def test_onednn_held_below_bf16_counts_as_no_hardware_bf16(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert native_bf16(CPU) is False
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert native_bf16(CPU) == bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


@pytest.mark.parametrize(("has_bf16", "explicit"), [(True, "bf16"), (False, "none")])
def test_auto_trains_exactly_as_the_precision_it_resolves_to(prepared, tmp_path, monkeypatch, has_bf16, explicit):
    data = (prepared / "arrays", prepared / "clips.npz")
    _hardware(monkeypatch, has_bf16)
    train_model(_run("auto"), *data, tmp_path / "auto.pt", tmp_path / "auto.ckpt")
    train_model(_run(explicit), *data, tmp_path / "explicit.pt", tmp_path / "explicit.ckpt")
    auto, reference = _state(tmp_path / "auto.pt"), _state(tmp_path / "explicit.pt")
    assert auto["amp"] == explicit and _state(tmp_path / "auto.ckpt")["amp"] == explicit
    assert auto["config"]["preset"]["amp"] == "auto"  # the config says what was asked, "amp" what ran
    assert _same_weights(auto["state_dict"], reference["state_dict"])


def test_bf16_and_fp32_trainings_differ(prepared, tmp_path):
    """Guards the test above: were autocast a no-op on this CPU, it could not tell the two apart."""
    data = (prepared / "arrays", prepared / "clips.npz")
    train_model(_run("bf16"), *data, tmp_path / "bf16.pt", tmp_path / "bf16.ckpt")
    train_model(_run("none"), *data, tmp_path / "fp32.pt", tmp_path / "fp32.ckpt")
    assert not _same_weights(_state(tmp_path / "bf16.pt")["state_dict"], _state(tmp_path / "fp32.pt")["state_dict"])


def test_the_validation_loss_is_computed_in_the_training_precision(prepared, tmp_path):
    """A bf16 run's val_loss is its training loss's function (bf16 autocast) on the held-out clips:
    recomputed from the saved model under bf16 it is equal, under fp32 it is not."""
    run = _run("bf16")
    run["preset"]["validation_videos"] = 1
    train_model(run, prepared / "arrays", prepared / "clips.npz", tmp_path / "m.pt", tmp_path / "m.ckpt")
    logged = _state(tmp_path / "m.pt")["history"][-1]["val_loss"]
    model, _ = load_trained(tmp_path / "m.pt", CPU)
    _, held_out = hold_out_videos(load_index(prepared / "clips.npz", "train"), 1)
    loader = make_loader(prepared / "arrays", "train", held_out, run["preset"]["batch_size"])
    bf16 = validation_loss(model, loader, CPU, autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    fp32 = validation_loss(model, loader, CPU)
    assert logged == bf16
    assert fp32 != bf16


def test_a_resumed_auto_run_keeps_its_checkpoints_precision_on_other_hardware(prepared, tmp_path, monkeypatch, caplog):
    data = (prepared / "arrays", prepared / "clips.npz")
    _hardware(monkeypatch, True)
    train_model(_run("auto"), *data, tmp_path / "full.pt", tmp_path / "full.ckpt")
    with pytest.raises(Interrupt):
        train_model(_run("auto"), *data, tmp_path / "r.pt", tmp_path / "r.ckpt", tracker=StopAfter(1))
    _hardware(monkeypatch, False)  # preempted, then resumed on a node without bf16
    tracker = StopAfter(None)
    with caplog.at_level(logging.WARNING, logger="vadbench.training"):
        train_model(_run("auto"), *data, tmp_path / "r.pt", tmp_path / "r.ckpt", tracker=tracker)
    assert tracker.steps == [1]  # resumed, not started over
    assert "trained in bf16; continuing in bf16" in caplog.text
    resumed, full = _state(tmp_path / "r.pt"), _state(tmp_path / "full.pt")
    assert resumed["amp"] == "bf16" and _same_weights(resumed["state_dict"], full["state_dict"])


def test_the_aggregate_names_the_seeds_of_each_precision():
    records = [{"amp": "bf16"}, {"amp": "none"}, {"amp": "bf16"}]
    assert trained_precision([0, 1, 2], records) == "bf16 (seeds 0, 2), none (seed 1)"
    assert trained_precision([0, 1], [{"amp": "none"}, {"amp": "none"}]) == "none"
    assert trained_precision([0], [{}]) is None  # an auc.json from before the precision was recorded
