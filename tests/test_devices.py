"""GPU placement: concurrent jobs claim different GPUs (device count faked; no GPU needed), and
the lock folder cannot be used to make a job overwrite another file."""

import multiprocessing as mp
import os
import stat
import tempfile
from pathlib import Path

import pytest
import torch

from vadbench.devices import LOCK_DIR_ENV, LockDirError, claim_gpu, default_lock_dir, job_device


def test_jobs_spread_over_the_gpus_and_release_them(tmp_path):
    with claim_gpu(3, tmp_path) as a, claim_gpu(3, tmp_path) as b, claim_gpu(3, tmp_path) as c:
        assert sorted([a, b, c]) == [0, 1, 2]
    with claim_gpu(3, tmp_path) as again:
        assert again == 0  # released when the jobs ended


def _hold(lock_dir, ready, done, out):
    with claim_gpu(2, lock_dir) as index:
        out.put(index)
        ready.set()
        done.wait(30)


def test_a_gpu_held_by_another_process_is_skipped(tmp_path):
    ctx = mp.get_context("spawn")
    ready, done, out = ctx.Event(), ctx.Event(), ctx.Queue()
    other = ctx.Process(target=_hold, args=(tmp_path, ready, done, out))
    other.start()
    try:
        assert ready.wait(60)
        assert out.get(timeout=5) == 0
        with claim_gpu(2, tmp_path) as mine:
            assert mine == 1
    finally:
        done.set()
        other.join(30)
    with claim_gpu(2, tmp_path) as freed:  # the lock died with the process
        assert freed == 0


def test_more_jobs_than_gpus_share_one_and_cpu_without_cuda(tmp_path):
    with claim_gpu(1, tmp_path) as first, claim_gpu(1, tmp_path) as second:
        assert first == 0 and second == 0
    with job_device("auto", device_count=0, lock_dir=tmp_path) as device:
        assert device == torch.device("cpu")
    with (
        job_device("auto", device_count=2, lock_dir=tmp_path) as a,
        job_device("auto", device_count=2, lock_dir=tmp_path) as b,
    ):
        assert {a, b} == {torch.device("cuda:0"), torch.device("cuda:1")}
    with job_device("cuda:1", device_count=2, lock_dir=tmp_path) as fixed:
        assert fixed == torch.device("cuda:1")


def test_a_symlinked_lock_file_is_refused_and_its_target_left_alone(tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (locks / "gpu0.lock").symlink_to(victim)
    with pytest.raises(LockDirError, match=r"gpu0\.lock is a symlink.*VADBENCH_GPU_LOCK_DIR"):
        with claim_gpu(2, locks):
            pass
    assert victim.read_text() == "precious\n"


def test_a_symlinked_lock_folder_is_refused(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    (tmp_path / "locks").symlink_to(real)
    with pytest.raises(LockDirError, match=r"locks is a symlink or not a directory.*VADBENCH_GPU_LOCK_DIR"):
        with claim_gpu(1, tmp_path / "locks"):
            pass
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o722])
def test_a_lock_folder_others_can_write_is_refused(tmp_path, mode):
    locks = tmp_path / "locks"
    locks.mkdir()
    locks.chmod(mode)
    with pytest.raises(LockDirError, match=rf"{locks} is writable by group or others.*chmod 700"):
        with claim_gpu(1, locks):
            pass
    assert list(locks.iterdir()) == []


def test_a_lock_folder_of_another_user_is_refused(tmp_path, monkeypatch):
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)
    with pytest.raises(LockDirError, match=rf"{locks} belongs to uid {real_uid}, not to you.*VADBENCH_GPU_LOCK_DIR"):
        with claim_gpu(1, locks):
            pass


def test_lock_folder_is_private_and_lock_files_hold_the_pid(tmp_path):
    locks = tmp_path / "new" / "locks"
    with claim_gpu(1, locks) as index:
        assert index == 0
        assert stat.S_IMODE(locks.stat().st_mode) == 0o700
        lock = locks / "gpu0.lock"
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert lock.read_text() == f"{os.getpid()}\n"


def test_default_lock_folder_prefers_a_private_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(LOCK_DIR_ENV, raising=False)
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert default_lock_dir() == runtime / "vadbench-gpu-locks"
    runtime.chmod(0o777)  # not private: fall back to the temp dir
    assert default_lock_dir() == Path(tempfile.gettempdir()) / f"vadbench-gpu-locks-{os.getuid()}"
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "mine"))
    assert default_lock_dir() == tmp_path / "mine"
