"""Anomaly maps: each model's map is the per-pixel form of its own score, the box threshold comes
from training clips only, and the files say how they were made."""

import json

import numpy as np
import pytest
import torch
from conftest import prepare_tiny_data, tiny_config

from vadbench.clips import FlowClips
from vadbench.config import localization_of, run_config
from vadbench.errors import ConfigError
from vadbench.maps import LocalizationSettings, compute_maps, frame_boxes, load_map, spread_clips
from vadbench.models import build_model
from vadbench.models.ammc import AMMCNet, AMMCStream, psnr
from vadbench.protocol import Protocol
from vadbench.training import train_model

TINY_AMMC = {"widths": (4, 8, 8, 8), "n_embed": 8, "embed_dim": 8, "discriminator_widths": (8, 8)}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_memae_map_is_the_l2_residual_of_the_scored_frame():
    torch.manual_seed(0)
    model = build_model("memae", in_channels=3, widths=[4, 8, 8, 8], memory_size=10, shrink_threshold=0.001).eval()
    x = torch.rand(2, 3, 16, 32, 32) * 2 - 1
    error, output = model.error_map(x, 8)
    x_hat, _ = model(x)
    assert error.shape == (2, 32, 32) and output.shape == (2, 3, 32, 32)
    by_hand = ((x_hat[:, :, 8] - x[:, :, 8]) ** 2).sum(dim=1).sqrt()
    assert torch.allclose(error, by_hand) and torch.equal(output, x_hat[:, :, 8])
    # the clip error is the mean of these maps over all 16 frames
    maps = torch.stack([model.error_map(x, t)[0] for t in range(16)], dim=1)
    assert torch.allclose(maps.flatten(1).mean(1), model.clip_errors(x), atol=1e-6)


def test_mnad_map_mean_is_the_mse_behind_its_psnr():
    torch.manual_seed(0)
    model = build_model("mnad", in_channels=1, t_length=5, widths=[4, 8, 8, 16], memory_size=4).eval()
    x = torch.rand(1, 1, 5, 32, 32) * 2 - 1
    error, output = model.error_map(x, 4)
    p, *_ = model.test_frame(x, model.memory, update_threshold=0.0)  # 0: the memory is not updated
    assert error.shape == (1, 32, 32) and output.shape == (1, 1, 32, 32)
    assert 10 * np.log10(1 / error.mean().item()) == pytest.approx(p, rel=1e-5)
    with pytest.raises(ValueError, match="last frame"):
        model.error_map(x, 2)


@pytest.mark.parametrize("joint", [False, True])
def test_ammc_map_mean_is_the_mse_behind_its_psnr(joint):
    torch.manual_seed(0)
    model = (AMMCNet(**TINY_AMMC) if joint else AMMCStream(stream="appearance", **TINY_AMMC)).eval()
    clips = FlowClips(torch.rand(2, 1, 5, 32, 32) * 2 - 1, torch.randn(2, 2, 4, 32, 32))
    error, prediction = model.error_map(clips, 4)
    target = clips.frames[:, :, -1]
    assert error.shape == (2, 32, 32)
    assert torch.allclose(10 * torch.log10(1 / error.flatten(1).mean(1)), psnr(prediction, target), rtol=1e-5)
    with pytest.raises(ValueError, match="last frame"):
        model.error_map(clips, 0)
    if not joint:
        with pytest.raises(ValueError, match="motion stream"):
            AMMCStream(stream="motion", **TINY_AMMC).eval().error_map(clips, 4)


def test_settings_are_checked_and_merged_per_dataset():
    config = tiny_config()
    config["localization"] = {"enabled": True, "videos": False}
    config["datasets"]["toy"]["localization"] = {"videos": True}
    assert localization_of(config, "toy")["videos"] is True
    for bad, match in (
        ({"threshold_quantile": 1.0}, "threshold_quantile"),
        ({"measure": "psnr"}, "measure"),
        ({"train_clips": 0}, "train_clips"),
        ({"videos": "yes"}, "videos"),
        ({"colour": 1}, "unknown localization key"),
    ):
        with pytest.raises(ConfigError, match=match):
            LocalizationSettings.from_dict(bad)


def test_boxes_keep_every_region_above_the_minimum_area():
    error = np.zeros((2, 20, 20), np.float16)
    error[0, 2:6, 2:6] = 1.0  # 16 px
    error[0, 10:12, 14:19] = 0.8  # 10 px
    error[0, 17, 0] = 0.9  # 1 px: below min_area
    settings = LocalizationSettings(min_area=0.005, smoothing_sigma=0.0)  # 0.005 * 400 = 2 px
    boxes = frame_boxes(error, np.array([True, False]), 0.5, settings)
    assert [(r.x0, r.y0, r.x1, r.y1, r.area) for r in boxes[0]] == [(2, 2, 6, 6, 16), (14, 10, 19, 12, 10)]
    assert boxes[1] == []  # an unscored frame has no boxes, whatever its map


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = prepare_tiny_data(tmp_path_factory.mktemp("maps"))
    config = tiny_config()
    run = run_config(config, "toy", "memae", 0)
    train_model(run, root / "arrays", root / "clips.npz", root / "model.pt", root / "checkpoint.pt")
    return root


def _maps(root, out, settings=LocalizationSettings(train_clips=8)):
    return compute_maps(
        root / "model.pt",
        root / "arrays",
        root / "clips.npz",
        Protocol.named("memae"),
        settings,
        out / "maps",
        out / "boxes.json",
        out / "boxes.csv",
    )


def test_maps_cover_the_scored_frames_and_the_threshold_ignores_the_test_split(trained, tmp_path):
    manifest = _maps(trained, tmp_path / "a")
    assert manifest["threshold_rule"]["quantile"] == 0.999 and "8 training clips" in manifest["threshold_rule"]["of"]
    saved = load_map(tmp_path / "a" / "maps", "01")
    frames = manifest["videos"]["01"]
    assert saved["error"].shape == (frames, 32, 32) and saved["error"].dtype == np.float16
    assert saved["output"].shape == (frames, 32, 32, 1) and saved["output"].dtype == np.uint8
    # MemAE scores the centre frame: frames 8 .. T-8 are scored, the edges are not
    assert np.flatnonzero(saved["scored"]).tolist() == list(range(8, frames - 7))
    assert not saved["error"][~saved["scored"]].any()
    boxes = json.loads((tmp_path / "a" / "boxes.json").read_text())
    assert boxes["threshold"] == manifest["threshold"] and len(boxes["videos"]["01"]) == frames
    header = (tmp_path / "a" / "boxes.csv").read_text().splitlines()[0]
    assert header == "video,frame,x0,y0,x1,y1,area,score"

    # scramble every test video: the maps change, the threshold (training clips only) does not
    for path in (trained / "arrays" / "test").glob("*.npy"):
        video = np.load(path)
        np.save(path, np.ascontiguousarray(video[:, ::-1]))
    try:
        other = _maps(trained, tmp_path / "b")
    finally:
        for path in (trained / "arrays" / "test").glob("*.npy"):
            video = np.load(path)
            np.save(path, np.ascontiguousarray(video[:, ::-1]))
    assert other["threshold"] == manifest["threshold"]
    assert not np.array_equal(load_map(tmp_path / "b" / "maps", "01")["error"], saved["error"])


def test_spread_clips_takes_clips_evenly_over_the_split(trained):
    from vadbench.clips import load_index

    index = load_index(trained / "clips.npz", "train")
    picked = spread_clips(index, 4)
    assert len(picked) == 4 and picked.starts[0] == index.starts[0] and picked.starts[-1] == index.starts[-1]
    assert len(spread_clips(index, 10_000)) == len(index)


def test_the_ssim_measure_is_zero_where_output_and_frame_agree(trained, tmp_path):
    from vadbench.maps import ssim_map

    image = np.random.default_rng(0).uniform(-1, 1, (32, 32, 1)).astype(np.float32)
    assert np.abs(ssim_map(image, image)).max() < 1e-6
    assert ssim_map(-image, image).mean() > 0.5  # an inverted frame is structurally unlike it
    manifest = _maps(trained, tmp_path, LocalizationSettings(train_clips=4, measure="ssim"))
    saved = load_map(tmp_path / "maps", "01")
    assert manifest["measure"] == "ssim" and 0 <= saved["error"].min() and saved["error"].max() <= 2


def test_the_mlflow_module_of_a_flow_model_reads_frames_and_flows_from_one_tensor():
    from vadbench.detect import _map_module

    torch.manual_seed(0)
    model = AMMCNet(**TINY_AMMC).eval()
    clips = FlowClips(torch.rand(2, 1, 5, 32, 32) * 2 - 1, torch.randn(2, 2, 4, 32, 32))
    packed = torch.cat([clips.frames, torch.nn.functional.pad(clips.flows, (0, 0, 0, 0, 0, 1))], dim=1)
    assert packed.shape == (2, 3, 5, 32, 32)
    module = _map_module(model, 4, channels=1, uses_flow=True)
    assert torch.equal(module(packed), model.error_map(clips, 4)[0])
