"""The device-resident loader and the prefetching host loader yield ClipLoader's batches bit for
bit, and the preset's ``data_placement`` changes where batches are built, never the weights."""

import threading

import numpy as np
import pytest
import torch
from conftest import prepare_tiny_data, tiny_config
from test_training import Interrupt, StopAfter, TermAfterFirstEpoch

from vadbench.arrays import decode_videos
from vadbench.clips import (
    ClipLoader,
    DeviceClipLoader,
    FlowInput,
    PrefetchingClipLoader,
    build_index,
    hold_out_videos,
    load_index,
    make_loader,
    prefetched,
)
from vadbench.config import run_config, stream_run_config
from vadbench.errors import ConfigError
from vadbench.flow import flow_videos
from vadbench.training import Preempted, resume_mode, train_model


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Tiny gray arrays with their flow and clip indices (16 and 5 frames), the same frames decoded in RGB, and flows
    of the same shapes that hold every finite float16 (``every_float16``)."""
    root = prepare_tiny_data(tmp_path_factory.mktemp("device_loader"))
    flow_videos(root / "arrays", root / "flow", method="dis_fast")
    decode_videos(root / "frames", root / "rgb", (32, 32), 3)
    build_index(root / "rgb", 16, 4, 1, root / "rgb_clips.npz")
    build_index(root / "arrays", 5, 2, 1, root / "clips5.npz")  # AMMC-Net's 5-frame clips
    finite = np.arange(65536, dtype=np.uint16).view(np.float16)
    finite = finite[~np.isnan(finite)]
    (root / "every_float16" / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for path in sorted((root / "flow" / "train").glob("*.npy")):
        shape = np.load(path, mmap_mode="r").shape
        values = np.resize(rng.permutation(finite), int(np.prod(shape))).reshape(shape)
        np.save(root / "every_float16" / "train" / path.name, values, allow_pickle=False)
    return root


def same_batches(reference, other) -> int:
    """Assert two batch streams are identical (ids, values, dtype, shape and strides); their length."""
    count = 0
    for (ids_a, a), (ids_b, b) in zip(reference, other, strict=True):
        assert np.array_equal(ids_a, ids_b) and ids_a.dtype == ids_b.dtype
        pairs = [(a.frames, b.frames), (a.flows, b.flows)] if hasattr(a, "flows") else [(a, b)]
        for x, y in pairs:
            assert x.dtype == y.dtype == torch.float32 and x.stride() == y.stride() and torch.equal(x, y)
        count += 1
    return count


def no_prefetch_thread() -> bool:
    return not any(t.name == "vadbench-prefetch" for t in threading.enumerate())


@pytest.mark.parametrize("arrays, index_file", [("arrays", "clips.npz"), ("rgb", "rgb_clips.npz")])
def test_device_loader_yields_the_host_batches_bit_for_bit(prepared, arrays, index_file):
    index = load_index(prepared / index_file, "train")
    train, held_out = hold_out_videos(index, 1)
    for part in (index, train, held_out):  # a part copies only the videos its clips use
        host = ClipLoader(prepared / arrays, "train", part, 5)
        device = DeviceClipLoader(prepared / arrays, "train", part, 5, device="cpu")
        assert len(device) == len(host) and device.index is part
        for epoch, seed in [(0, None), (0, 7), (3, 7)]:
            assert same_batches(host.batches(epoch, seed), device.batches(epoch, seed)) == len(host)
    used = np.unique(held_out.video_ids)
    assert len(DeviceClipLoader(prepared / arrays, "train", held_out, 5).frames) == sum(
        len(np.load(prepared / arrays / "train" / f"{index.videos[v]}.npy", mmap_mode="r")) for v in used
    )


@pytest.mark.parametrize("flows", ["flow", "every_float16"])
@pytest.mark.parametrize("normalisation, max_displacement", [("clip", 0.7), ("frame_size", 1.0), ("none", 1.0)])
def test_device_loader_flows_are_the_host_flows_bit_for_bit(prepared, flows, normalisation, max_displacement):
    flow = FlowInput(prepared / flows, normalisation, max_displacement)
    index = load_index(prepared / "clips.npz", "train")
    host = ClipLoader(prepared / "arrays", "train", index, 4, flow=flow)
    device = DeviceClipLoader(prepared / "arrays", "train", index, 4, flow=flow, device="cpu")
    assert device.flow_frames.dtype == torch.float16
    assert same_batches(host.batches(2, 5), device.batches(2, 5)) == len(host)


def test_prefetching_loader_yields_the_host_batches_and_leaves_no_thread(prepared):
    index = load_index(prepared / "clips.npz", "train")
    flow = FlowInput(prepared / "flow", "clip", 2.0)
    for flow_input in (None, flow):
        host = ClipLoader(prepared / "arrays", "train", index, 4, flow=flow_input)
        ahead = PrefetchingClipLoader(prepared / "arrays", "train", index, 4, flow=flow_input)
        assert same_batches(host.batches(1, 3), ahead.batches(1, 3)) == len(host)
        assert no_prefetch_thread()
    batches = ahead.batches(0, 3)
    next(batches)
    assert not no_prefetch_thread()  # building the next batches while this one trains
    batches.close()  # the loop stopped midway (SIGTERM, an exception)
    assert no_prefetch_thread()
    batches = ahead.batches(0, 3)
    next(batches)
    del batches  # dropped without close
    assert no_prefetch_thread()

    def fails_after_one():
        yield 1
        raise ValueError("video 02 is truncated")

    with pytest.raises(ValueError, match="truncated"):
        list(prefetched(fails_after_one(), 2))
    assert no_prefetch_thread()


def test_make_loader_places_as_asked_on_cpu(prepared):
    index = load_index(prepared / "clips.npz", "train")
    args = (prepared / "arrays", "train", index, 4, None, "cpu")
    assert type(make_loader(*args, "auto")) is ClipLoader  # CPU training builds batches as before
    assert type(make_loader(*args, "host")) is ClipLoader
    assert type(make_loader(*args, "device")) is DeviceClipLoader  # the CPU always has room
    with pytest.raises(ConfigError, match="data_placement 'gpu'"):
        make_loader(*args, "gpu")


def test_data_placement_is_no_part_of_the_run_config():
    config = tiny_config()
    config["presets"]["tiny"]["data_placement"] = "device"
    run = run_config(config, "toy", "memae", 0)
    assert "data_placement" not in run["preset"]  # a rule param: changing it must not rerun the job
    data = {"digest": "d" * 64}
    saved = {"config": {**run, "preset": {**run["preset"], "data_placement": "host"}}, "epoch": 0, "fingerprint": data}
    assert resume_mode(saved, {**run, "preset": {**run["preset"], "data_placement": "device"}}, data)[0] == "same"


def with_placement(run, placement):
    return {**run, "preset": {**run["preset"], "data_placement": placement}}


def trained(path):
    state = torch.load(path, weights_only=True)
    return state["state_dict"], [{k: v for k, v in h.items() if k != "clips_per_s"} for h in state["history"]]


def same_training(a, b) -> bool:
    (wa, ha), (wb, hb) = trained(a), trained(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa) and ha == hb


def test_training_on_the_device_path_gives_the_host_weights_and_resumes_across_placements(prepared, tmp_path):
    config = tiny_config()
    config["presets"]["tiny"]["epochs"] = 3
    config["presets"]["tiny"]["validation_videos"] = 1
    run = run_config(config, "toy", "memae", 7)
    data = (prepared / "arrays", prepared / "clips.npz")
    train_model(with_placement(run, "host"), *data, tmp_path / "host.pt", tmp_path / "host.ckpt")
    train_model(with_placement(run, "device"), *data, tmp_path / "device.pt", tmp_path / "device.ckpt")
    assert same_training(tmp_path / "host.pt", tmp_path / "device.pt")  # weights, losses, val_loss
    # stopped after epoch 0 on the device path, resumed on the host path: not retrained, same weights
    with pytest.raises(Interrupt):
        train_model(with_placement(run, "device"), *data, tmp_path / "r.pt", tmp_path / "r.ckpt", tracker=StopAfter(1))
    tracker = StopAfter(None)
    train_model(with_placement(run, "host"), *data, tmp_path / "r.pt", tmp_path / "r.ckpt", tracker=tracker)
    assert tracker.steps == [1, 2] and same_training(tmp_path / "host.pt", tmp_path / "r.pt")
    # SIGTERM mid-epoch on the device path: the checkpoint holds the partial sums as floats
    with pytest.raises(Preempted):
        device = with_placement(run, "device")
        train_model(device, *data, tmp_path / "s.pt", tmp_path / "s.ckpt", tracker=TermAfterFirstEpoch())
    partial = torch.load(tmp_path / "s.ckpt", weights_only=True)["partial"]
    assert partial["next_batch"] == 1 and all(type(v) is float for v in partial["sums"].values())
    train_model(device, *data, tmp_path / "s.pt", tmp_path / "s.ckpt", tracker=StopAfter(None))
    assert same_training(tmp_path / "host.pt", tmp_path / "s.pt")


def test_a_flow_stream_trains_the_same_on_the_device_path(prepared, tmp_path):
    config = tiny_config()
    run = stream_run_config(config, "toy", "ammc", 0, "motion")
    run["preset"]["epochs"] = 1
    data = (prepared / "arrays", prepared / "clips5.npz")
    for placement in ("host", "device"):
        train_model(
            with_placement(run, placement),
            *data,
            tmp_path / f"{placement}.pt",
            tmp_path / f"{placement}.ckpt",
            flow_dir=prepared / "flow",
        )
    assert same_training(tmp_path / "host.pt", tmp_path / "device.pt")
