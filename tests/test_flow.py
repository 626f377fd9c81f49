"""Optical flow for AMMC-Net: every method recovers a known motion in OpenCV's convention, the
``flow`` rule's arrays and manifest, its refusal of missing frames, and the normalisations."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter, shift

from vadbench.arrays import save_array
from vadbench.errors import ConfigError, DatasetError
from vadbench.fileio import read_json, write_json
from vadbench.flow import METHODS, estimate_flow, flow_videos, normalise_flow, to_gray

DX, DY = 2.0, -1.0  # right 2 px, up 1 px
TOLERANCE = {"dis": 0.1, "dis_fast": 0.3, "dis_ultrafast": 0.3, "farneback": 0.1, "tvl1": 0.1, "ilk": 0.1}


def texture(size: int, seed: int = 0) -> np.ndarray:
    """Smooth random texture as float in [0, 255], a few pixels larger than ``size`` each side."""
    noise = gaussian_filter(np.random.default_rng(seed).standard_normal((size + 16, size + 16)), 2.0)
    return (noise - noise.min()) / (noise.max() - noise.min()) * 255


def translated_pair(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """``prev`` and ``next`` with next(y + DY, x + DX) = prev(y, x), as uint8 (size, size)."""
    image = texture(size)
    moved = shift(image, (DY, DX), order=3, mode="nearest")  # out(y, x) = in(y - DY, x - DX)
    crop = (slice(8, 8 + size), slice(8, 8 + size))
    return (
        np.clip(image[crop], 0, 255).round().astype(np.uint8),
        np.clip(moved[crop], 0, 255).round().astype(np.uint8),
    )


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_recovers_a_translation_as_dx_dy_in_pixels(method):
    prev, next = translated_pair()
    flow = estimate_flow(prev, next, method)
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    interior = flow[12:-12, 12:-12]
    error = np.hypot(interior[..., 0] - DX, interior[..., 1] - DY)
    assert np.median(error) < TOLERANCE[method], (method, np.median(interior, axis=(0, 1)))


def test_colour_frames_flow_as_pillow_gray():
    rgb = np.random.default_rng(1).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    assert np.array_equal(to_gray(rgb), np.asarray(Image.fromarray(rgb).convert("L")))
    prev, next = translated_pair(48)
    as_rgb = estimate_flow(np.repeat(prev[..., None], 3, -1), np.repeat(next[..., None], 3, -1))
    assert np.array_equal(as_rgb, estimate_flow(prev[..., None], next[..., None]))


def make_arrays(root, videos: dict[str, dict[str, int]], size: int = 48):
    """A tiny ``decode_videos`` output: each video a texture drifting right 1 px per frame."""
    arrays = root / "arrays"
    checksums = {}
    for split, counts in videos.items():
        (arrays / split).mkdir(parents=True)
        checksums[split] = {}
        for i, (video, count) in enumerate(counts.items()):
            image = texture(size + count, seed=i)
            frames = np.stack([image[8 : 8 + size, 8 + count - t : 8 + count - t + size] for t in range(count)])
            frames = np.clip(frames, 0, 255).round().astype(np.uint8)[..., None]
            checksums[split][video] = save_array(arrays / split / f"{video}.npy", frames)
    write_json(
        arrays / "manifest.json",
        {"size": [size, size], "channels": 1, "splits": videos, "arrays": checksums, "sources": None},
    )
    return arrays


def test_flow_videos_writes_one_flow_per_frame_pair_and_a_manifest(tmp_path):
    arrays = make_arrays(tmp_path, {"train": {"01": 5, "02": 3}, "test": {"01": 4}})
    info = flow_videos(arrays, tmp_path / "flow", method="dis_ultrafast", threads=1)
    flow = np.load(tmp_path / "flow" / "train" / "01.npy")
    assert flow.shape == (4, 48, 48, 2) and flow.dtype == np.float16
    assert np.median(flow[:, 8:-8, 8:-8, 0]) == pytest.approx(1.0, abs=0.3)  # drifts right
    manifest = read_json(tmp_path / "flow" / "manifest.json")
    assert manifest == info
    assert manifest["splits"] == {"train": {"01": 4, "02": 2}, "test": {"01": 3}}
    assert manifest["method"] == "dis_ultrafast" and manifest["size"] == [48, 48]
    assert set(manifest["arrays"]["train"]["02"]) == {"bytes", "sha256"}
    train = np.concatenate([flow, np.load(tmp_path / "flow" / "train" / "02.npy")]).astype(np.float32)
    stats = manifest["magnitude"]["train"]
    assert stats["max_abs_dx"] == pytest.approx(np.abs(train[..., 0]).max(), abs=0.01)
    assert stats["max_abs_dy"] == pytest.approx(np.abs(train[..., 1]).max(), abs=0.01)
    assert stats["p99_9_magnitude"] == pytest.approx(
        np.percentile(np.hypot(*train.transpose(3, 0, 1, 2)), 99.9), abs=0.02
    )
    assert manifest["source_manifest_sha256"] == hashlib.sha256((arrays / "manifest.json").read_bytes()).hexdigest()


def test_a_missing_video_array_is_named_and_leaves_no_output(tmp_path):
    arrays = make_arrays(tmp_path, {"train": {"01": 3, "02": 3}, "test": {"01": 3}})
    (arrays / "train" / "02.npy").unlink()
    with pytest.raises(DatasetError, match=r"train/02\.npy is missing.*resize"):
        flow_videos(arrays, tmp_path / "flow")
    assert not (tmp_path / "flow").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["arrays"]


def test_an_array_of_another_shape_is_refused(tmp_path):
    arrays = make_arrays(tmp_path, {"train": {"01": 3}, "test": {"01": 3}})
    manifest = read_json(arrays / "manifest.json")
    manifest["splits"]["test"]["01"] = 4
    write_json(arrays / "manifest.json", manifest)
    with pytest.raises(DatasetError, match=r"test/01\.npy: \(3, 48, 48, 1\).*\(4, 48, 48, 1\).*resize"):
        flow_videos(arrays, tmp_path / "flow")


def test_normalise_flow_modes_on_numpy():
    flow = np.array([[[3.0, -1.0], [-20.0, 8.0]]], np.float16)  # (1, 2, 2): two pixels (dx, dy)
    assert normalise_flow(flow, "none").dtype == np.float32
    np.testing.assert_allclose(normalise_flow(flow, "none"), flow)
    np.testing.assert_allclose(
        normalise_flow(flow, "frame_size", frame_size=(10, 40)), [[[3 / 40, -1 / 10], [-20 / 40, 8 / 10]]]
    )
    np.testing.assert_allclose(normalise_flow(flow, "clip", max_displacement=4.0), [[[0.75, -0.25], [-1.0, 1.0]]])


def test_normalise_flow_on_torch_channel_axis_1():
    flow = torch.zeros(1, 2, 1, 2, 3)  # (B, 2, T, H, W)
    flow[:, 0], flow[:, 1] = 6.0, -3.0
    scaled = normalise_flow(flow, "frame_size", (2, 3), axis=1)
    assert isinstance(scaled, torch.Tensor) and scaled.dtype == torch.float32
    assert torch.allclose(scaled[:, 0], torch.full_like(scaled[:, 0], 2.0))
    assert torch.allclose(scaled[:, 1], torch.full_like(scaled[:, 1], -1.5))
    clipped = normalise_flow(flow.half(), "clip", max_displacement=4.0, axis=1)
    assert clipped.dtype == torch.float32 and set(clipped[:, 0].unique().tolist()) == {1.0}
    assert set(clipped[:, 1].unique().tolist()) == {-0.75}


def test_an_unknown_normalisation_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"flow\.normalisation 'minmax'.*none, frame_size, clip"):
        normalise_flow(np.zeros((2, 2, 2)), "minmax")
    with pytest.raises(ConfigError, match=r"flow\.method 'raft'.*dis"):
        estimate_flow(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), "raft")
