"""Training is deterministic for a seed on CPU and resumes exactly after an interruption."""

from pathlib import Path

import pytest
import torch
from conftest import prepare_tiny_data, tiny_config

from vadbench.config import run_config
from vadbench.errors import ConfigError
from vadbench.training import load_trained, train_model


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = prepare_tiny_data(tmp_path_factory.mktemp("prepared"))
    config = tiny_config()
    config["presets"]["tiny"]["epochs"] = 3
    return root, run_config(config, "toy", "memae", 7)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_same_seed_gives_identical_weights(prepared, tmp_path):
    root, run = prepared
    for name in ("a", "b"):
        train_model(run, root / "arrays", root / "clips.npz", tmp_path / f"{name}.pt", tmp_path / f"{name}.ckpt")
    a, b = weights(tmp_path / "a.pt"), weights(tmp_path / "b.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = dict(run, seed=8)
    train_model(other, root / "arrays", root / "clips.npz", tmp_path / "c.pt", tmp_path / "c.ckpt")
    c = weights(tmp_path / "c.pt")
    assert not all(torch.equal(a[k], c[k]) for k in a)


class Interrupt(Exception):
    pass


class StopAfter:
    """A tracker that records losses and raises after ``n`` epochs, as a killed job would stop."""

    def __init__(self, n: int | None) -> None:
        self.n, self.steps = n, []

    def log_params(self, params):
        pass

    def set_tags(self, tags):
        pass

    def log_metrics(self, metrics, step=None):
        self.steps.append(step)
        if self.n is not None and len(self.steps) >= self.n:
            raise Interrupt


def test_interrupted_training_resumes_to_the_same_weights(prepared, tmp_path):
    root, run = prepared
    args = (run, root / "arrays", root / "clips.npz")
    train_model(*args, tmp_path / "full.pt", tmp_path / "full.ckpt")
    with pytest.raises(Interrupt):
        train_model(*args, tmp_path / "resumed.pt", tmp_path / "resumed.ckpt", tracker=StopAfter(1))
    assert not (tmp_path / "resumed.pt").exists() and (tmp_path / "resumed.ckpt").exists()
    tracker = StopAfter(None)
    result = train_model(*args, tmp_path / "resumed.pt", tmp_path / "resumed.ckpt", tracker=tracker)
    assert tracker.steps == [1, 2]  # epoch 0 was not trained again
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2]
    full, resumed = weights(tmp_path / "full.pt"), weights(tmp_path / "resumed.pt")
    assert all(torch.equal(full[k], resumed[k]) for k in full)


class TermAfterFirstEpoch(StopAfter):
    """Sends this process SIGTERM when epoch 0 is logged: training stops after batch 1 of epoch 1."""

    def __init__(self) -> None:
        super().__init__(None)

    def log_metrics(self, metrics, step=None):
        import os
        import signal

        super().log_metrics(metrics, step)
        if step == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_mid_epoch_and_resumes_to_the_same_weights(prepared, tmp_path):
    from vadbench.training import Preempted

    root, run = prepared
    args = (run, root / "arrays", root / "clips.npz")
    train_model(*args, tmp_path / "full.pt", tmp_path / "full.ckpt")
    with pytest.raises(Preempted) as stopped:
        train_model(*args, tmp_path / "resumed.pt", tmp_path / "resumed.ckpt", tracker=TermAfterFirstEpoch())
    assert stopped.value.code == 143 and not (tmp_path / "resumed.pt").exists()
    state = torch.load(tmp_path / "resumed.ckpt", weights_only=True)
    assert state["epoch"] == 0 and state["partial"]["epoch"] == 1 and state["partial"]["next_batch"] == 1
    tracker = StopAfter(None)
    train_model(*args, tmp_path / "resumed.pt", tmp_path / "resumed.ckpt", tracker=tracker)
    assert tracker.steps == [1, 2]
    full, resumed = (
        torch.load(tmp_path / "full.pt", weights_only=True),
        torch.load(tmp_path / "resumed.pt", weights_only=True),
    )
    assert all(torch.equal(full["state_dict"][k], resumed["state_dict"][k]) for k in full["state_dict"])
    assert [h["loss"] for h in full["history"]] == [h["loss"] for h in resumed["history"]]


def test_more_epochs_extend_a_finished_run_to_the_weights_of_a_fresh_one(prepared, tmp_path):
    root, run = prepared
    short = {**run, "preset": {**run["preset"], "epochs": 2}}
    args = (root / "arrays", root / "clips.npz")
    train_model(short, *args, tmp_path / "short.pt", tmp_path / "x.ckpt")
    train_model(run, *args, tmp_path / "fresh.pt", tmp_path / "fresh.ckpt")
    tracker = StopAfter(None)
    result = train_model(run, *args, tmp_path / "long.pt", tmp_path / "x.ckpt", tracker=tracker)
    assert tracker.steps == [0, 1, 2]  # the new MLflow run gets the 2 earlier epochs replayed, then epoch 2
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2]
    fresh, long = weights(tmp_path / "fresh.pt"), weights(tmp_path / "long.pt")
    assert all(torch.equal(fresh[k], long[k]) for k in fresh)


def test_resume_modes():
    from vadbench.training import resume_mode

    data = {"digest": "d" * 64, "arrays_manifest": "a" * 64, "index": "i" * 64, "sources": None}
    run = {"seed": 0, "preset": {"epochs": 10, "lr": 1e-4}}
    saved = {"config": {"seed": 0, "preset": {"epochs": 5, "lr": 1e-4}}, "epoch": 4, "fingerprint": data}
    assert resume_mode({"config": run, "epoch": 3, "fingerprint": data}, run, data) == ("same", "")
    assert resume_mode(saved, run, data)[0] == "extend"
    mode, why = resume_mode({**saved, "config": {"seed": 0, "preset": {"epochs": 5, "lr": 2e-4}}}, run, data)
    assert mode is None and "preset.lr 0.0002 -> 0.0001" in why
    assert resume_mode({**saved, "epoch": 10}, run, data)[0] is None  # trained beyond the new schedule
    cosine = {"seed": 0, "preset": {"epochs": 10, "lr": 1e-4, "lr_schedule": "cosine"}}
    assert (
        resume_mode({**saved, "config": {"seed": 0, "preset": {**cosine["preset"], "epochs": 5}}}, cosine, data)[0]
        is None
    )
    assert resume_mode(None, run, data)[0] is None
    other = {**data, "digest": "e" * 64, "index": "j" * 64}
    mode, why = resume_mode({"config": run, "epoch": 3, "fingerprint": other}, run, data)
    assert mode is None and "other data" in why and "clip index jjjjjjjjjjjj -> iiiiiiiiiiii" in why
    mode, why = resume_mode({"config": run, "epoch": 3}, run, data)
    assert mode is None and "no data fingerprint" in why


def test_saved_model_holds_weights_and_resolved_config(prepared, tmp_path):
    root, run = prepared
    train_model(
        run, root / "arrays", root / "clips.npz", tmp_path / "m.pt", tmp_path / "m.ckpt", meta={"mlflow_run_id": "x"}
    )
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state["config"] == run and state["meta"] == {"mlflow_run_id": "x"}
    assert state["versions"]["torch"] == torch.__version__ and type(state["versions"]["torch"]) is str
    assert len(state["fingerprint"]["digest"]) == 64
    model, loaded_run = load_trained(tmp_path / "m.pt", torch.device("cpu"))
    assert loaded_run == run and not model.training


def test_a_checkpoint_of_the_single_optimiser_format_still_resumes(prepared, tmp_path):
    """Checkpoints written before models could own several optimisers hold one optimiser state."""
    root, run = prepared
    args = (run, root / "arrays", root / "clips.npz")
    train_model(*args, tmp_path / "full.pt", tmp_path / "full.ckpt")
    with pytest.raises(Interrupt):
        train_model(*args, tmp_path / "old.pt", tmp_path / "old.ckpt", tracker=StopAfter(1))
    state = torch.load(tmp_path / "old.ckpt", weights_only=True)
    state["optimizer"], state["scheduler"] = state["optimizer"]["model"], None
    torch.save(state, tmp_path / "old.ckpt")
    tracker = StopAfter(None)
    train_model(*args, tmp_path / "old.pt", tmp_path / "old.ckpt", tracker=tracker)
    assert tracker.steps == [1, 2]
    full, resumed = weights(tmp_path / "full.pt"), weights(tmp_path / "old.pt")
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_drop_last_reaches_the_training_loader(prepared, tmp_path):
    """27 training clips: at batch 9 dropping the last incomplete batch changes nothing, at batch 8 it
    leaves 3 clips out of every epoch (MNAD's loader), so the weights differ; no full batch is refused."""
    root, run = prepared
    args = (root / "arrays", root / "clips.npz")
    trained = {}
    for batch, drop in ((9, False), (9, True), (8, False), (8, True)):
        preset = {**run["preset"], "epochs": 1, "batch_size": batch, "drop_last": drop}
        train_model({**run, "preset": preset}, *args, tmp_path / f"{batch}{drop}.pt", tmp_path / f"{batch}{drop}.ckpt")
        trained[batch, drop] = weights(tmp_path / f"{batch}{drop}.pt")
    assert all(torch.equal(trained[9, False][k], trained[9, True][k]) for k in trained[9, False])
    assert not all(torch.equal(trained[8, False][k], trained[8, True][k]) for k in trained[8, False])
    with pytest.raises(ConfigError, match="drop_last: true with batch_size 64, but the train split has only 27"):
        preset = {**run["preset"], "batch_size": 64, "drop_last": True}
        train_model({**run, "preset": preset}, *args, tmp_path / "none.pt", tmp_path / "none.ckpt")


def test_the_backend_is_deterministic_on_cpu_and_autotuned_on_cuda(monkeypatch):
    from vadbench.training import configure_backend

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        configure_backend(torch.device("cuda"))  # setting the flag needs no GPU
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
        torch.backends.cudnn.benchmark = False
        configure_backend(torch.device("cpu"))
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(deterministic)
