"""A model is only reused for the data it was trained on, a crafted model file cannot run code,
one job at a time trains a checkpoint, and Ctrl-C keeps the epoch."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import prepare_tiny_data, tiny_config
from test_training import StopAfter

from vadbench.clips import build_index
from vadbench.config import run_config
from vadbench.errors import DatasetError
from vadbench.protocol import Protocol
from vadbench.scoring import score_videos
from vadbench.training import checkpoint_meta, load_trained, train_model


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """The toy dataset decoded twice with the same shapes and preset: A, and B rendered from another
    synthetic seed (as another source or a re-download of the same dataset would differ)."""
    root = tmp_path_factory.mktemp("data")
    return {name: prepare_tiny_data(root / name, seed=seed) for name, seed in (("A", 0), ("B", 1))}


@pytest.fixture(scope="module")
def run() -> dict:
    return run_config(tiny_config(), "toy", "memae", 7)


@pytest.fixture(scope="module")
def model_a(data, run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model_a")
    train_model(run, data["A"] / "arrays", data["A"] / "clips.npz", out / "model.pt", out / "checkpoint.pt")
    return out / "model.pt"


def install(dataset: Path, where: Path) -> tuple[Path, Path]:
    """Put ``dataset``'s arrays and clip index where a job reads them, replacing what was there."""
    shutil.rmtree(where / "arrays", ignore_errors=True)
    shutil.copytree(dataset / "arrays", where / "arrays")
    shutil.copy2(dataset / "clips.npz", where / "clips.npz")
    return where / "arrays", where / "clips.npz"


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def Epochs() -> StopAfter:
    """A tracker that records which epochs were trained."""
    return StopAfter(None)


def test_training_on_replaced_arrays_starts_over_and_learns_the_new_data(data, run, model_a, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vadbench")
    arrays, index = install(data["A"], tmp_path)
    train_model(run, arrays, index, tmp_path / "model.pt", tmp_path / "checkpoint.pt")
    install(data["B"], tmp_path)  # same config, same shapes, other data
    tracker = Epochs()
    train_model(run, arrays, index, tmp_path / "model.pt", tmp_path / "checkpoint.pt", tracker=tracker)
    assert tracker.steps == [0, 1]  # nothing "resumed" after A's last epoch
    assert "starting over: it was trained on other data" in caplog.text and "arrays manifest" in caplog.text
    train_model(run, data["B"] / "arrays", data["B"] / "clips.npz", tmp_path / "fresh_b.pt", tmp_path / "fresh_b.ckpt")
    assert same(weights(tmp_path / "model.pt"), weights(tmp_path / "fresh_b.pt"))
    assert not same(weights(tmp_path / "model.pt"), weights(model_a))


def test_unchanged_data_still_resumes_and_the_model_records_its_data(data, run, model_a, tmp_path, caplog):
    from vadbench.fingerprint import data_fingerprint

    caplog.set_level(logging.INFO, logger="vadbench")
    checkpoint = model_a.with_name("checkpoint.pt")
    shutil.copy2(checkpoint, tmp_path / "checkpoint.pt")
    tracker = Epochs()
    train_model(
        run,
        data["A"] / "arrays",
        data["A"] / "clips.npz",
        tmp_path / "model.pt",
        tmp_path / "checkpoint.pt",
        tracker=tracker,
    )
    assert tracker.steps == [] and "resuming from" in caplog.text
    assert same(weights(tmp_path / "model.pt"), weights(model_a))
    fingerprint = data_fingerprint(data["A"] / "arrays", data["A"] / "clips.npz")
    assert torch.load(model_a, weights_only=True)["fingerprint"] == fingerprint
    build_index(data["A"] / "arrays", 16, 4, 1, tmp_path / "rebuilt.npz")  # same clips, a new zip timestamp
    assert data_fingerprint(data["A"] / "arrays", tmp_path / "rebuilt.npz") == fingerprint


def test_scoring_a_model_on_other_arrays_is_refused_naming_both_digests(data, model_a, tmp_path):
    b = data["B"]
    with pytest.raises(DatasetError) as refused:
        score_videos(
            model_a, b / "arrays", b / "clips.npz", b / "frames/labels.npz", Protocol(), tmp_path / "scores.npz"
        )
    from vadbench.fingerprint import data_fingerprint

    trained_on = data_fingerprint(data["A"] / "arrays", data["A"] / "clips.npz")["digest"][:12]
    asked = data_fingerprint(b / "arrays", b / "clips.npz")["digest"][:12]
    message = str(refused.value)
    assert str(model_a) in message and trained_on in message and str(b / "arrays") in message and asked in message
    assert "snakemake --forcerun train" in message and not (tmp_path / "scores.npz").exists()
    a = data["A"]
    score_videos(model_a, a / "arrays", a / "clips.npz", a / "frames/labels.npz", Protocol(), tmp_path / "scores.npz")
    assert (tmp_path / "scores.npz").exists()


def test_checkpoint_without_a_data_fingerprint_is_ignored_with_the_reason(data, run, model_a, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vadbench")
    old = torch.load(model_a.with_name("checkpoint.pt"), weights_only=True)
    old.pop("fingerprint", None)  # as an older vadbench wrote it
    torch.save(old, tmp_path / "checkpoint.pt")
    tracker = Epochs()
    train_model(
        run,
        data["A"] / "arrays",
        data["A"] / "clips.npz",
        tmp_path / "model.pt",
        tmp_path / "checkpoint.pt",
        tracker=tracker,
    )
    assert tracker.steps == [0, 1] and "records no data fingerprint" in caplog.text


def test_array_file_replaced_by_hand_is_refused(data, run, tmp_path):
    from vadbench.fingerprint import data_fingerprint

    arrays, index = install(data["A"], tmp_path)
    video = next((arrays / "train").glob("*.npy"))
    original = np.load(video)
    np.save(video, original[:-1])  # one frame short
    with pytest.raises(DatasetError, match="replaced or truncated") as refused:
        train_model(run, arrays, index, tmp_path / "model.pt", tmp_path / "checkpoint.pt")
    assert str(video) in str(refused.value) and "--forcerun resize" in str(refused.value)
    assert not (tmp_path / "model.pt").exists()
    shutil.copy2(data["B"] / "arrays/train" / video.name, video)  # same size, other frames
    data_fingerprint(arrays, index)  # a stat cannot tell; a full check can
    with pytest.raises(DatasetError, match="other bytes"):
        data_fingerprint(arrays, index, verify="full")


class Payload:
    """Unpickled in full, this writes ``marker``: what a crafted model.pt could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


@pytest.mark.parametrize("entry", ["load_trained", "resume", "checkpoint_meta"])
def test_a_crafted_pickle_is_refused_without_running_it(entry, data, run, tmp_path):
    marker, crafted = tmp_path / "marker", tmp_path / "crafted.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "config": Payload(marker), "epoch": 0}, crafted)
    with pytest.raises(DatasetError) as refused:
        if entry == "load_trained":
            load_trained(crafted)
        elif entry == "resume":
            train_model(run, data["A"] / "arrays", data["A"] / "clips.npz", tmp_path / "model.pt", crafted)
        else:
            checkpoint_meta(crafted, run)
    assert not marker.exists()
    message = str(refused.value)
    assert str(crafted) in message and "not a vadbench" in message and "non-tensor objects" in message
    assert "Delete it and retrain" in message and not (tmp_path / "model.pt").exists()


class InterruptAfterFirstEpoch(StopAfter):
    """Presses Ctrl-C (SIGINT to this process) when epoch 0 is logged: training stops after batch 1 of epoch 1."""

    def log_metrics(self, metrics, step=None):
        super().log_metrics(metrics, step)
        if step == 0:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_mid_epoch_and_resumes_to_the_same_weights(data, run, tmp_path):
    from vadbench.training import Preempted

    cosine = {**run, "preset": {**run["preset"], "lr_schedule": "cosine"}}  # scheduler state in the checkpoint
    args = (cosine, data["A"] / "arrays", data["A"] / "clips.npz")
    train_model(*args, tmp_path / "full.pt", tmp_path / "full.ckpt")
    try:
        with pytest.raises(Preempted) as stopped:
            train_model(
                *args, tmp_path / "resumed.pt", tmp_path / "resumed.ckpt", tracker=InterruptAfterFirstEpoch(None)
            )
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped as KeyboardInterrupt: the epoch was lost")
    assert stopped.value.code == 130 and not (tmp_path / "resumed.pt").exists()
    state = torch.load(tmp_path / "resumed.ckpt", weights_only=True)
    assert (
        state["partial"]["epoch"] == 1
        and state["partial"]["next_batch"] == 1
        and state["scheduler"]["model"]["last_epoch"] == 1
    )
    tracker = Epochs()
    train_model(*args, tmp_path / "resumed.pt", tmp_path / "resumed.ckpt", tracker=tracker)
    assert tracker.steps == [1]
    assert same(weights(tmp_path / "full.pt"), weights(tmp_path / "resumed.pt"))


JOB = """
import json, logging, sys, time
from pathlib import Path
from vadbench.training import train_model

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
run, arrays, index, model, checkpoint, gate = sys.argv[1:]


class Gate:
    '''Holds the job after epoch 0 until the test creates the gate file.'''
    steps = []
    def log_params(self, params): pass
    def set_tags(self, tags): pass
    def log_metrics(self, metrics, step=None):
        self.steps.append(step)
        deadline = time.monotonic() + 120
        while step == 0 and not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.05)


train_model(json.loads(Path(run).read_text()), arrays, index, model, checkpoint, tracker=Gate())
print(json.dumps(Gate.steps))
"""


def test_a_second_job_on_the_same_checkpoint_waits_then_resumes_the_finished_model(data, run, tmp_path):
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "run.json").write_text(json.dumps(run))
    checkpoint, gate = tmp_path / "checkpoint.pt", tmp_path / "gate"

    def start(model: str) -> subprocess.Popen:
        log = open(tmp_path / f"{model}.log", "w")
        return subprocess.Popen(
            [
                sys.executable,
                tmp_path / "job.py",
                tmp_path / "run.json",
                data["A"] / "arrays",
                data["A"] / "clips.npz",
                tmp_path / model,
                checkpoint,
                gate,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )

    def wait_for(condition, what: str, *alive: subprocess.Popen) -> None:
        deadline = time.monotonic() + 120
        while not condition():
            for proc in alive:
                assert proc.poll() is None, f"{proc.args[5]} ended before {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    first = start("first.pt")
    second = None
    try:
        wait_for(checkpoint.exists, "the first job's epoch 0", first)  # it now holds the lock, gated
        lock = checkpoint.with_name("checkpoint.pt.lock")
        assert lock.read_text() == f"{first.pid}\n" and lock.stat().st_mode & 0o777 == 0o600
        second = start("second.pt")
        wait_for(
            lambda: (
                f"waiting for pid {first.pid}, which is training the same model"
                in (tmp_path / "second.pt.log").read_text()
            ),
            "the second job to wait",
            first,
            second,
        )
        gate.touch()
        first_steps, second_steps = (json.loads(p.communicate(timeout=300)[0]) for p in (first, second))
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert first.returncode == 0 and second.returncode == 0
    assert first_steps == [0, 1] and second_steps == []  # the second trained nothing twice
    assert "resuming from" in (tmp_path / "second.pt.log").read_text()
    assert same(weights(tmp_path / "first.pt"), weights(tmp_path / "second.pt"))


def test_the_fingerprint_follows_the_source_digest_not_where_the_archive_lies(data, tmp_path):
    from vadbench.fingerprint import data_fingerprint, describe

    arrays, index = install(data["A"], tmp_path)
    manifest = json.loads((arrays / "manifest.json").read_text())

    def with_sources(sources):
        (arrays / "manifest.json").write_text(json.dumps({**manifest, "sources": sources}))
        return data_fingerprint(arrays, index)

    here = with_sources([{"source": "/data/ped2.tar.gz", "sha256": "ab" * 32}])
    moved = with_sources([{"source": "/scratch/ped2.tar.gz", "sha256": "ab" * 32}])
    other = with_sources([{"source": "/data/ped2.tar.gz", "sha256": "cd" * 32}])
    assert here["digest"] == moved["digest"] != other["digest"]
    assert "source ped2.tar.gz SHA-256 abababababab" in describe(here)


def test_a_lock_file_planted_as_a_symlink_is_refused_and_its_target_untouched(data, run, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (tmp_path / "checkpoint.pt.lock").symlink_to(victim)
    with pytest.raises(DatasetError, match=r"checkpoint\.pt\.lock is a symbolic link"):
        train_model(
            run, data["A"] / "arrays", data["A"] / "clips.npz", tmp_path / "model.pt", tmp_path / "checkpoint.pt"
        )
    assert victim.read_text() == "keep me\n"
