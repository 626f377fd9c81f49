"""Preset options that follow an official code: the resize filter and MNAD's ``drop_last``."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_datasets import write_liu

from vadbench.arrays import decode_frame, decode_videos
from vadbench.clips import ClipLoader, DeviceClipLoader, build_index, load_index, make_loader
from vadbench.datasets import convert_source
from vadbench.errors import ConfigError
from vadbench.fingerprint import data_fingerprint
from vadbench.training import resume_mode


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """A miniature Liu-layout dataset in the canonical layout: training videos of 7 and 6 frames."""
    root = tmp_path_factory.mktemp("paper_options")
    write_liu(root / "src", train=[7, 6], test=[5], gt=[[[2], [3]]])
    convert_source(root / "src", "liu", root / "frames")
    return root


def test_the_two_resize_filters_by_hand(tmp_path):
    """4x4 -> 2x2 of an image whose last column is 200, the rest 0 (rows equal, so only columns matter).

    opencv_bilinear: output column j samples source x = 2j + 0.5, halfway between columns 2j and 2j+1:
    (0 + 0) / 2 = 0 and (0 + 200) / 2 = 100. pillow_bicubic_aa: the bicubic kernel (a = -0.5) is
    stretched by the scale 2, so output column 1 (centre x = 3) weighs columns 0..3 at distances
    1.25, 0.75, 0.25, 0.25 source pixels / 2: k = -0.0703, 0.2266, 0.8672, 0.8672, sum 1.8906; the
    last column's share 0.8672 / 1.8906 = 0.4587 gives 91.7 -> 92; column 0 gets 200 * -0.0372 < 0 -> 0.
    """
    image = np.zeros((4, 4), np.uint8)
    image[:, 3] = 200
    Image.fromarray(image).save(tmp_path / "0000.png")
    pillow = decode_frame(tmp_path / "0000.png", (2, 2), 1)
    assert pillow.shape == (2, 2, 1) and pillow.dtype == np.uint8
    np.testing.assert_array_equal(pillow[..., 0], [[0, 92], [0, 92]])
    np.testing.assert_array_equal(decode_frame(tmp_path / "0000.png", (2, 2), 1, "pillow_bicubic_aa"), pillow)
    opencv = decode_frame(tmp_path / "0000.png", (2, 2), 1, "opencv_bilinear")
    assert opencv.shape == (2, 2, 1) and opencv.dtype == np.uint8
    np.testing.assert_array_equal(opencv[..., 0], [[0, 100], [0, 100]])
    rgb = decode_frame(tmp_path / "0000.png", (2, 2), 3, "opencv_bilinear")  # gray PNG, three equal channels
    np.testing.assert_array_equal(rgb, np.repeat(opencv, 3, axis=2))
    np.testing.assert_array_equal(decode_frame(tmp_path / "0000.png", (4, 4), 1, "opencv_bilinear")[..., 0], image)
    with pytest.raises(ConfigError, match="resize_filter 'lanczos' is not known"):
        decode_frame(tmp_path / "0000.png", (2, 2), 1, "lanczos")


def test_the_resize_filter_is_recorded_and_changes_the_data_fingerprint(frames, tmp_path):
    digests = {}
    for name in ("pillow_bicubic_aa", "opencv_bilinear"):
        info = decode_videos(frames / "frames", tmp_path / name, (16, 16), 1, resize_filter=name)
        assert info["resize_filter"] == name
        build_index(tmp_path / name, 1, 1, 1, tmp_path / f"{name}.npz")
        digests[name] = data_fingerprint(tmp_path / name, tmp_path / f"{name}.npz")["digest"]
    assert digests["pillow_bicubic_aa"] != digests["opencv_bilinear"]
    assert decode_videos(frames / "frames", tmp_path / "default", (16, 16), 1)["resize_filter"] == "pillow_bicubic_aa"


@pytest.fixture(scope="module")
def clips(frames):
    """One-frame clips of the two training videos: 7 + 6 = 13."""
    decode_videos(frames / "frames", frames / "arrays", (16, 16), 1)
    build_index(frames / "arrays", 1, 1, 1, frames / "clips.npz")
    index = load_index(frames / "clips.npz", "train")
    assert len(index) == 13
    return frames / "arrays", index


def test_drop_last_yields_only_full_batches(clips):
    arrays, index = clips
    keep = ClipLoader(arrays, "train", index, 4)
    assert len(keep) == 4 and [len(ids) for ids, _ in keep.batches(0, shuffle_seed=3)] == [4, 4, 4, 1]
    drop = ClipLoader(arrays, "train", index, 4, drop_last=True)
    assert len(drop) == 3
    left_out = set()
    for epoch in range(4):
        batches = list(drop.batches(epoch, shuffle_seed=3))
        assert [tuple(batch.shape) for _, batch in batches] == [(4, 1, 1, 16, 16)] * 3  # no partial batch
        ids = np.concatenate([ids for ids, _ in batches])
        assert len(set(ids)) == 12  # each clip at most once; the epoch's permutation cut after 12
        np.testing.assert_array_equal(ids, keep.order(epoch, shuffle_seed=3)[:12])
        left_out |= set(range(13)) - set(ids)
    assert len(left_out) > 1  # the clip left out changes with the epoch's permutation


def test_every_loader_drops_the_same_last_batch(clips):
    arrays, index = clips
    host = ClipLoader(arrays, "train", index, 5, drop_last=True)
    device = make_loader(arrays, "train", index, 5, device="cpu", placement="device", drop_last=True)
    assert isinstance(device, DeviceClipLoader) and len(device) == len(host) == 2
    for (ids_a, a), (ids_b, b) in zip(host.batches(1, shuffle_seed=0), device.batches(1, shuffle_seed=0), strict=True):
        np.testing.assert_array_equal(ids_a, ids_b)
        assert torch.equal(a, b) and len(ids_a) == 5
    with pytest.raises(ConfigError, match="drop_last: true with batch_size 16, but the train split has only 13 clips"):
        make_loader(arrays, "train", index, 16, drop_last=True)


def test_drop_last_is_part_of_the_run_identity():
    run = {"model": "mnad", "seed": 0, "preset": {"epochs": 2, "batch_size": 4, "lr_schedule": "constant"}}
    dropped = {**run, "preset": {**run["preset"], "drop_last": True}}
    assert resume_mode({"config": run, "epoch": 1}, run, None)[0] == "same"
    assert resume_mode({"config": run, "epoch": 1}, dropped, None)[0] is None  # another training: start over
