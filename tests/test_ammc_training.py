"""AMMC-Net through the real training loop: two stages, two optimisers, flow in the fingerprint,
resume after SIGTERM to the same weights, and the AMMC-Net score formula."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import prepare_tiny_data, tiny_config
from test_training import StopAfter, TermAfterFirstEpoch

from vadbench.config import run_config, stream_run_config
from vadbench.errors import DatasetError
from vadbench.flow import flow_videos
from vadbench.scoring import ammc_errors
from vadbench.training import Preempted, load_trained, train_model


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Tiny synthetic arrays, their flow and clip index, and both stage-1 streams trained on them."""
    root = prepare_tiny_data(tmp_path_factory.mktemp("ammc"), clip_length=5, train_stride=2)
    config = tiny_config()
    flow_videos(root / "arrays", root / "flow", method="dis_fast")
    data = (root / "arrays", root / "clips.npz")
    streams = {}
    for stream in ("appearance", "motion"):
        run = stream_run_config(config, "toy", "ammc", 0, stream)
        streams[stream] = root / f"stream_{stream}.pt"
        train_model(run, *data, streams[stream], root / f"stream_{stream}.ckpt", flow_dir=root / "flow")
    joint = run_config(config, "toy", "ammc", 0)
    joint["preset"]["epochs"] = 2
    return root, config, joint, streams


def _args(root):
    return root / "arrays", root / "clips.npz"


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_stage_two_starts_from_the_streams_and_trains_every_part(prepared, tmp_path):
    root, _, joint, streams = prepared
    train_model(joint, *_args(root), tmp_path / "m.pt", tmp_path / "m.ckpt", flow_dir=root / "flow", init_from=streams)
    model, run = load_trained(
        tmp_path / "m.pt", arrays_dir=root / "arrays", index_path=root / "clips.npz", flow_dir=root / "flow"
    )
    assert run["model"] == "ammc" and type(model).__name__ == "AMMCNet"
    state, appearance = weights(tmp_path / "m.pt"), weights(streams["appearance"])
    # trained on from the stream: close to it but moved; the bridge trained from its own init
    moved = [
        k
        for k in appearance
        if k.startswith("unet.")
        and appearance[k].is_floating_point()
        and not torch.equal(state["appearance." + k[len("unet.") :]], appearance[k])
    ]
    assert moved
    saved = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert set(saved["optimizer"]) == {"generator", "discriminator"}
    assert {
        "intensity",
        "gradient",
        "adversarial",
        "commit_appearance",
        "commit_motion",
        "flow_intensity",
        "discriminator",
    } <= set(saved["history"][-1])


def test_stage_two_resumes_after_sigterm_to_the_same_weights(prepared, tmp_path):
    root, _, joint, streams = prepared
    kwargs = {"flow_dir": root / "flow", "init_from": streams}
    train_model(joint, *_args(root), tmp_path / "full.pt", tmp_path / "full.ckpt", **kwargs)
    with pytest.raises(Preempted):
        train_model(
            joint, *_args(root), tmp_path / "r.pt", tmp_path / "r.ckpt", tracker=TermAfterFirstEpoch(), **kwargs
        )
    assert torch.load(tmp_path / "r.ckpt", weights_only=True)["partial"]["epoch"] == 1
    tracker = StopAfter(None)
    train_model(joint, *_args(root), tmp_path / "r.pt", tmp_path / "r.ckpt", tracker=tracker, **kwargs)
    assert tracker.steps == [1]
    full, resumed = weights(tmp_path / "full.pt"), weights(tmp_path / "r.pt")
    assert all(torch.equal(full[k], resumed[k]) for k in full)  # codebooks and both optimisers' effects


def test_flow_joins_the_data_fingerprint(prepared, tmp_path):
    """A model trained on one flow is refused for another (here: another method)."""
    root, _, _, streams = prepared
    flow_videos(root / "arrays", tmp_path / "flow", method="farneback")
    with pytest.raises(DatasetError, match="flow manifest"):
        load_trained(
            streams["appearance"], arrays_dir=root / "arrays", index_path=root / "clips.npz", flow_dir=tmp_path / "flow"
        )


def test_stage_two_refuses_streams_of_other_data(prepared, tmp_path):
    root, _, joint, streams = prepared
    flow_videos(root / "arrays", tmp_path / "flow", method="farneback")
    with pytest.raises(DatasetError, match="stream_appearance.pt was trained on"):
        train_model(
            joint, *_args(root), tmp_path / "m.pt", tmp_path / "m.ckpt", flow_dir=tmp_path / "flow", init_from=streams
        )


def test_ammc_score_on_hand_made_terms():
    """PSNR and commit min-maxed per video (then over all), S = 0.75 P + 0.25 (1 - C), mu 0.5."""
    psnr = {"a": np.array([10.0, 20.0, 30.0]), "b": np.array([5.0, 15.0])}
    commit = {"a": np.array([1.0, 3.0, 2.0]), "b": np.array([0.0, 4.0])}
    errors = ammc_errors(psnr, commit, commit_weight=0.25, smoothing_mu=0.5)
    # S_a = 0.75 [0, .5, 1] + 0.25 [1, 0, .5] = [.25, .375, .875]; S_b = [.25, .75]
    np.testing.assert_allclose(errors["a"], 1 - np.array([0.25, 0.3125, 0.625]))
    np.testing.assert_allclose(errors["b"], 1 - np.array([0.25, 0.5]))
    # mu 1 is no smoothing; lambda 0 is the PSNR alone; a constant term normalises to zeros
    plain = ammc_errors(psnr, {"a": np.ones(3), "b": np.ones(2)}, commit_weight=0.0, smoothing_mu=1.0)
    np.testing.assert_allclose(plain["a"], [1.0, 0.5, 0.0])
