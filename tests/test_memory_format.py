"""The preset's ``memory_format: channels_last_3d``: training keeps the 3D-conv weights and batches
channels-last (in fp32 and under bf16 autocast), resumes bit for bit, gives a model that loads and
scores like any other, and is refused for the 2D models it was never measured on."""

import copy

import pytest
import torch
from conftest import prepare_tiny_data, tiny_config
from test_training import Interrupt, StopAfter

from vadbench.config import run_config, validate_config
from vadbench.errors import ConfigError
from vadbench.training import load_trained, train_model


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_tiny_data(tmp_path_factory.mktemp("memory_format"))


def _run(memory_format: str, amp: str = "none", variant: str = "memae"):
    config = tiny_config()
    config["presets"]["tiny"].update(epochs=2, amp=amp, memory_format=memory_format, validation_videos=1)
    return run_config(config, "toy", variant, 3)


def _output(out):
    return out[0] if isinstance(out, tuple) else out


def _state(path):
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_channels_last_trains_the_conv_weights_channels_last_and_close_to_contiguous(prepared, tmp_path, amp):
    data = (prepared / "arrays", prepared / "clips.npz")
    train_model(_run("contiguous", amp), *data, tmp_path / "plain.pt", tmp_path / "plain.ckpt")
    train_model(_run("channels_last_3d", amp), *data, tmp_path / "cl.pt", tmp_path / "cl.ckpt")
    plain, cl = _state(tmp_path / "plain.pt"), _state(tmp_path / "cl.pt")
    convs = [k for k, v in cl["state_dict"].items() if v.dim() == 5]
    assert convs and all(cl["state_dict"][k].is_contiguous(memory_format=torch.channels_last_3d) for k in convs)
    assert all(plain["state_dict"][k].is_contiguous() for k in convs)
    assert cl["config"]["preset"]["memory_format"] == "channels_last_3d"  # part of what the run is
    # the same optimisation, rounded differently: close, and the layout did change the computation path
    for key in ("loss", "val_loss"):
        a, b = plain["history"][-1][key], cl["history"][-1][key]
        assert b == pytest.approx(a, rel=0.05 if amp == "bf16" else 1e-3)
    # a model loads in the layout it trained in (so the score and maps jobs feed oneDNN without a
    # reorder per convolution), and computes the same function in the other layout
    for path, layout in (
        (tmp_path / "cl.pt", torch.channels_last_3d),
        (tmp_path / "plain.pt", torch.contiguous_format),
    ):
        loaded, _ = load_trained(path, torch.device("cpu"))
        assert all(loaded.state_dict()[k].is_contiguous(memory_format=layout) for k in convs)
    model, _ = load_trained(tmp_path / "cl.pt", torch.device("cpu"))
    assert all(torch.equal(model.state_dict()[k], cl["state_dict"][k]) for k in cl["state_dict"])
    plain_copy = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    assert all(plain_copy.state_dict()[k].is_contiguous() for k in convs)
    x = torch.rand(2, 1, 16, 32, 32) * 2 - 1
    with torch.no_grad():
        a, b = _output(plain_copy(x)), _output(model(x.contiguous(memory_format=torch.channels_last_3d)))
    assert torch.allclose(a, b, atol=1e-5)


def test_channels_last_resumes_to_the_same_weights(prepared, tmp_path):
    data = (prepared / "arrays", prepared / "clips.npz")
    run = _run("channels_last_3d")
    train_model(run, *data, tmp_path / "full.pt", tmp_path / "full.ckpt")
    with pytest.raises(Interrupt):
        train_model(run, *data, tmp_path / "r.pt", tmp_path / "r.ckpt", tracker=StopAfter(1))
    tracker = StopAfter(None)
    train_model(run, *data, tmp_path / "r.pt", tmp_path / "r.ckpt", tracker=tracker)
    assert tracker.steps == [1]
    full, resumed = _state(tmp_path / "full.pt"), _state(tmp_path / "r.pt")
    assert all(torch.equal(full["state_dict"][k], resumed["state_dict"][k]) for k in full["state_dict"])

    def losses(history):
        return [{k: v for k, v in h.items() if k != "clips_per_s"} for h in history]

    assert losses(full["history"]) == losses(resumed["history"])


def test_a_contiguous_checkpoint_is_not_resumed_as_channels_last(prepared, tmp_path):
    data = (prepared / "arrays", prepared / "clips.npz")
    with pytest.raises(Interrupt):
        train_model(_run("contiguous"), *data, tmp_path / "m.pt", tmp_path / "m.ckpt", tracker=StopAfter(1))
    tracker = StopAfter(None)
    train_model(_run("channels_last_3d"), *data, tmp_path / "m.pt", tmp_path / "m.ckpt", tracker=tracker)
    assert tracker.steps == [0, 1]  # started over: the layout is part of the run


@pytest.mark.parametrize("variant", ["mnad_pred", "ammc"])
def test_channels_last_is_refused_for_the_2d_models_by_key(variant):
    from conftest import REPO

    config = copy.deepcopy(tiny_config())
    preset = config["variants"][variant]["presets"]["tiny"]
    config["presets"][preset]["memory_format"] = "channels_last_3d"
    with pytest.raises(ConfigError, match=rf"presets.{preset}.memory_format: channels_last_3d is for the 3D-conv"):
        validate_config(config, REPO / "workflow/schemas/config.schema.yaml")


def test_an_unknown_memory_format_is_refused_by_the_schema():
    from conftest import REPO

    config = tiny_config()
    config["presets"]["tiny"]["memory_format"] = "channels_last"
    with pytest.raises(ConfigError, match="presets.tiny.memory_format"):
        validate_config(config, REPO / "workflow/schemas/config.schema.yaml")


def test_score_and_maps_run_a_channels_last_model_channels_last_with_the_same_scores(prepared, tmp_path, monkeypatch):
    import numpy as np

    import vadbench.maps
    import vadbench.scoring
    from vadbench.maps import LocalizationSettings, compute_maps
    from vadbench.protocol import Protocol
    from vadbench.scoring import score_videos

    data = (prepared / "arrays", prepared / "clips.npz")
    train_model(_run("channels_last_3d"), *data, tmp_path / "cl.pt", tmp_path / "cl.ckpt")
    seen = []

    def spy(real):
        def wrapped(model, *args):
            weights = [p for p in model.parameters() if p.dim() == 5 and p.shape[1] > 1]
            seen.append(
                (real.__name__, args[-1], all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in weights))
            )
            return real(model, *args)

        return wrapped

    monkeypatch.setattr(vadbench.scoring, "clip_errors", spy(vadbench.scoring.clip_errors))
    monkeypatch.setattr(vadbench.maps, "clip_maps", spy(vadbench.maps.clip_maps))
    labels = prepared / "frames/labels.npz"
    score_videos(tmp_path / "cl.pt", *data, labels, Protocol(), tmp_path / "scores.npz", batch_size=4)
    compute_maps(
        tmp_path / "cl.pt",
        *data,
        Protocol(),
        LocalizationSettings(train_clips=4),
        tmp_path / "maps",
        tmp_path / "boxes.json",
        tmp_path / "boxes.csv",
        batch_size=4,
    )
    assert {name for name, _, _ in seen} == {"clip_errors", "clip_maps"}
    assert all(layout == torch.channels_last_3d and weights_cl for _, layout, weights_cl in seen)
    # the contiguous computation of the same weights scores the same
    model, _ = load_trained(tmp_path / "cl.pt")
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    from vadbench.clips import ClipLoader, load_index

    index = load_index(data[1], "test")
    monkeypatch.undo()
    a = vadbench.scoring.clip_errors(plain, ClipLoader(data[0], "test", index, 4), torch.device("cpu"))
    b = vadbench.scoring.clip_errors(
        model, ClipLoader(data[0], "test", index, 4), torch.device("cpu"), "memae_l2", torch.channels_last_3d
    )
    assert np.allclose(a, b, rtol=1e-5, atol=0)
