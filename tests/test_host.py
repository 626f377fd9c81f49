"""vadbench.host: a job keeps its freed memory for the next step, unless the user chose otherwise."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from vadbench import host

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Training steps of MemAE at the toy preset's size (fp32, one thread), as a train job runs them:
# the median page faults of 6 steps after 3 warm-up steps (a step may now and then grow the heap).
STEPS = """
import json, resource, torch
from vadbench.host import retain_freed_memory, use_host
from vadbench.models.memae import MemAE
from vadbench.training import training_step

use_host(1)
torch.manual_seed(0)
model = MemAE(1, (16, 32, 64, 64), 2000, 0.001, 0.0002)
optimizers = {"model": torch.optim.Adam(model.parameters(), 5e-4)}
clips = torch.rand(8, 1, 16, 64, 64) * 2 - 1
def step():
    training_step(model, clips, optimizers, lambda: torch.autocast("cpu", enabled=False))
for _ in range(3):
    step()
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
faults = sorted(faults)[len(faults) // 2]
print(json.dumps({"applied": retain_freed_memory(), "faults": faults}))
"""


APPLIED = "from vadbench.host import retain_freed_memory; print(retain_freed_memory())"


def _run(code: str, **env: str) -> str:
    """The last line ``code`` prints in a fresh process with ``env`` (no malloc settings but those)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**environ, **env}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def _steps(**env: str) -> dict:
    return json.loads(_run(STEPS, **env))


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's")
def test_retained_memory_stops_the_page_faults_of_a_repeated_step():
    kept, as_it_is = _steps(VADBENCH_RETAIN_FREED_MEMORY="1"), _steps(VADBENCH_RETAIN_FREED_MEMORY="0")
    assert kept["applied"] and not as_it_is["applied"]
    # glibc as it is maps thousands of pages afresh for every step's activations (9,000 here)
    assert as_it_is["faults"] > 1_000, as_it_is
    assert kept["faults"] < as_it_is["faults"] / 10, (kept, as_it_is)


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's")
def test_a_user_s_own_malloc_setting_is_left_alone():
    assert _run(APPLIED) == "True"
    assert _run(APPLIED, MALLOC_TRIM_THRESHOLD_="131072") == "False"
    assert _run(APPLIED, GLIBC_TUNABLES="glibc.malloc.mmap_threshold=65536") == "False"


@pytest.mark.parametrize(
    "environ, chosen",
    [
        ({}, None),
        ({"MALLOC_ARENA_MAX": "2", "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"}, None),  # other settings
        ({"MALLOC_MMAP_THRESHOLD_": "1"}, "MALLOC_MMAP_THRESHOLD_"),
        ({"MALLOC_TOP_PAD_": "1"}, "MALLOC_TOP_PAD_"),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, "GLIBC_TUNABLES"),
        ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "LD_PRELOAD"),
    ],
)
def test_which_settings_count_as_the_user_s_choice(environ, chosen):
    assert host._user_chose_allocator(environ) == chosen


def test_once_per_process_and_said_in_the_log(monkeypatch, caplog):
    monkeypatch.setattr(host, "_applied", None)
    with caplog.at_level("INFO", logger="vadbench.host"):
        assert host.retain_freed_memory({host.DISABLE_ENV: "0"}) is False
        assert host.retain_freed_memory({}) is False  # decided once: a process does not switch halfway
    assert [r.getMessage() for r in caplog.records] == [f"host memory: malloc as it is ({host.DISABLE_ENV}=0)"]
