"""MLflow system metrics of training runs (config ``mlflow.system_metrics``): a run trained with
them on ends with CPU and memory samples in a real SQLite store, one with them off (or ``auto``
on the CPU) has none, a resumed run continues their steps, and however the run ends, no sampler
thread is left and no sample lands after the run's end."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO

import vadbench.tracking as tracking
from vadbench.config import validate_config
from vadbench.errors import ConfigError
from vadbench.tracking import SYSTEM_METRICS_PREFIX, SYSTEM_METRICS_THREAD, RunLogger, system_metrics_on, tracked

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
EXPERIMENT = "vadbench-toy"
CPU_AND_MEMORY = {
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/system_memory_usage_percentage",
}


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory) -> str:
    """One store for the module (creating one takes seconds); every test logs its own runs."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    tracking.init_store(uri, [EXPERIMENT], root / "artifacts")
    return uri


@pytest.fixture
def store(shared_store, monkeypatch) -> str:
    for name in (
        "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL",
        "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING",
        "MLFLOW_SYSTEM_METRICS_NODE_ID",
    ):
        monkeypatch.delenv(name, raising=False)  # MLflow's overrides of what the config says
    return shared_store


def samplers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == SYSTEM_METRICS_THREAD and t.is_alive()]


def system_metrics(uri: str, run_id: str) -> dict[str, list]:
    """key -> history of every ``system/`` metric of the run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    keys = [k for k in client.get_run(run_id).data.metrics if k.startswith(SYSTEM_METRICS_PREFIX)]
    return {k: client.get_metric_history(run_id, k) for k in keys}


def run_info(uri: str, run_id: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri).get_run(run_id).info


def train_for(seconds: float, seen: dict, error: BaseException | None = None, until_sampled: bool = False):
    """A stand-in for ``train_model`` that trains for ``seconds`` (with ``until_sampled``, then
    until the run holds a system metric) and writes a model, or raises ``error``."""

    def train(run, arrays_dir, index_path, model_path, checkpoint_path, tracker, **kwargs):
        seen["run_id"], seen["samplers"] = tracker.run_id, len(samplers())
        time.sleep(seconds)
        deadline = time.monotonic() + 30
        while until_sampled and not any(
            k.startswith(SYSTEM_METRICS_PREFIX) for k in tracker.client.get_run(tracker.run_id).data.metrics
        ):
            assert time.monotonic() < deadline, "no system metrics sample arrived"
            time.sleep(0.1)
        if error is not None:
            raise error
        torch.save({"state_dict": {}}, model_path)
        return {"history": [], "amp": "none"}  # what train_model returns

    return train


def train(
    store: str,
    tmp_path: Path,
    monkeypatch,
    seconds: float,
    device: str = "auto",
    error: BaseException | None = None,
    seen: dict | None = None,
    until_sampled: bool = False,
    **switch,
) -> dict:
    """The real ``train_run`` against the real store, with a training that only takes time; what
    the training saw (its run id, the sampler threads) goes into ``seen``."""
    import vadbench.training as training
    from vadbench.pipeline import train_run

    seen = {} if seen is None else seen
    monkeypatch.setattr(training, "train_model", train_for(seconds, seen, error, until_sampled))
    run = {"dataset": "toy", "variant": "memae", "seed": 0, "preset_name": "tiny", "preset": {"device": device}}
    train_run(
        run,
        tmp_path,
        tmp_path / "clips.npz",
        tmp_path / "model.pt",
        tmp_path / "ckpt.pt",
        tmp_path / "run.json",
        store,
        EXPERIMENT,
        **switch,
    )
    return seen


def assert_nothing_after_the_end(store: str, run_id: str, metrics: dict[str, list]) -> None:
    end = run_info(store, run_id).end_time
    assert end is not None
    assert all(m.timestamp <= end for history in metrics.values() for m in history)


def test_a_training_run_with_system_metrics_on_ends_with_cpu_and_memory_samples(store, tmp_path, monkeypatch):
    seen = train(store, tmp_path, monkeypatch, 2.5, until_sampled=True, system_metrics=True, system_metrics_interval=1)

    assert seen["samplers"] == 1
    metrics = system_metrics(store, seen["run_id"])
    assert CPU_AND_MEMORY <= set(metrics), sorted(metrics)
    steps = [m.step for m in metrics["system/cpu_utilization_percentage"]]
    assert steps == list(range(len(steps))), steps  # one sample a second, numbered from 0
    assert 0 < metrics["system/system_memory_usage_megabytes"][-1].value
    assert run_info(store, seen["run_id"]).status == "FINISHED"
    assert_nothing_after_the_end(store, seen["run_id"], metrics)
    assert samplers() == []


@pytest.mark.parametrize(
    "switch, device",
    [(False, "auto"), ("auto", "cpu"), ("auto", "auto")],
    ids=["false", "auto-cpu-preset", "auto-no-gpu-visible"],
)
def test_system_metrics_off_or_auto_on_the_cpu_log_none(store, tmp_path, monkeypatch, switch, device):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # a CPU machine, even on a GPU box
    seen = train(store, tmp_path, monkeypatch, 1.3, device=device, system_metrics=switch, system_metrics_interval=1)

    assert seen["samplers"] == 0
    assert system_metrics(store, seen["run_id"]) == {}
    assert run_info(store, seen["run_id"]).status == "FINISHED"


def test_a_stopped_training_leaves_no_sampler_and_no_sample_after_its_end(store, tmp_path, monkeypatch):
    seen: dict = {}
    with pytest.raises(KeyboardInterrupt):
        train(
            store,
            tmp_path,
            monkeypatch,
            0.5,
            error=KeyboardInterrupt(),
            seen=seen,
            until_sampled=True,
            system_metrics=True,
            system_metrics_interval=1,
        )

    assert run_info(store, seen["run_id"]).status == "KILLED"
    metrics = system_metrics(store, seen["run_id"])
    assert CPU_AND_MEMORY <= set(metrics)
    assert_nothing_after_the_end(store, seen["run_id"], metrics)
    assert samplers() == []


def cpu_steps(store: str, run_id: str) -> list[int]:
    return [m.step for m in system_metrics(store, run_id).get("system/cpu_utilization_percentage", [])]


def wait_for_sample(store: str, run_id: str, more_than: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(cpu_steps(store, run_id)) <= more_than:
        assert time.monotonic() < deadline, "no system metrics sample arrived"
        time.sleep(0.1)


def test_a_resumed_run_continues_its_system_metrics_steps(store):
    with tracked(
        RunLogger, store, EXPERIMENT, run_name="seed0", system_metrics=True, system_metrics_interval=1
    ) as first:
        wait_for_sample(store, first.run_id, more_than=0)
    before = cpu_steps(store, first.run_id)
    with tracked(
        RunLogger, store, EXPERIMENT, run_id=first.run_id, system_metrics=True, system_metrics_interval=1
    ) as resumed:
        assert resumed.run_id == first.run_id and len(samplers()) == 1
        wait_for_sample(store, first.run_id, more_than=len(before))

    steps = cpu_steps(store, first.run_id)
    assert steps == list(range(len(steps))) and len(steps) > len(before), (before, steps)  # continued, not restarted
    assert samplers() == []


def test_without_nvidia_ml_py_sampling_starts_with_cpu_metrics_only(store, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` fails, as when it is not installed
    monkeypatch.delitem(sys.modules, "mlflow.system_metrics.metrics.gpu_monitor", raising=False)
    monkeypatch.delitem(sys.modules, "mlflow.system_metrics.system_metrics_monitor", raising=False)
    with caplog.at_level(logging.INFO, logger="vadbench"):
        tracker = RunLogger(store, EXPERIMENT, run_name="seed0", system_metrics=True, system_metrics_interval=1)
        tracker.finish()

    started = [r.getMessage() for r in caplog.records if r.getMessage().startswith("logging system metrics")]
    assert started and "CPU" in started[0] and "GPU" not in started[0], started
    assert run_info(store, tracker.run_id).status == "FINISHED" and samplers() == []


def test_short_runs_do_not_sample(store):
    tracker = RunLogger(store, EXPERIMENT, run_name="auc")  # the auc, plots and aggregate jobs' runs
    assert samplers() == []
    tracker.finish()


@pytest.mark.parametrize(
    "setting, device, gpus, on",
    [
        (True, "cpu", 0, True),
        (False, "cuda", 1, False),
        ("auto", "cpu", 1, False),
        ("auto", "cuda", 0, True),
        ("auto", "cuda:1", 0, True),
        ("auto", "auto", 1, True),
        ("auto", "auto", 0, False),
    ],
)
def test_auto_follows_the_device_the_job_trains_on(setting, device, gpus, on):
    assert system_metrics_on(setting, device, cuda_devices=lambda: gpus) is on


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_the_shipped_config_samples_gpu_jobs_every_ten_seconds(config):
    validate_config(config, SCHEMA)
    assert config["mlflow"]["system_metrics"] == "auto" and config["mlflow"]["system_metrics_interval"] == 10


@pytest.mark.parametrize(
    "key, value",
    [
        ("system_metrics", "yes"),
        ("system_metrics", 1),
        ("system_metrics", None),
        ("system_metrics_interval", 0),
        ("system_metrics_interval", 3601),
        ("system_metrics_interval", "10s"),
    ],
)
def test_a_bad_system_metrics_setting_is_refused_naming_the_key(config, key, value):
    config["mlflow"][key] = value
    with pytest.raises(ConfigError, match=rf"config key mlflow\.{key}:"):
        validate_config(config, SCHEMA)


def test_a_bad_switch_passed_to_a_function_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"mlflow\.system_metrics"):
        system_metrics_on("on", "cuda")
