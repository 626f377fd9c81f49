"""GPU placement: concurrent jobs claim different GPUs (device count faked; no GPU needed)."""

import multiprocessing as mp

import torch

from vadbench.devices import claim_gpu, job_device


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
    with job_device("auto", device_count=2, lock_dir=tmp_path) as a, job_device("auto", device_count=2, lock_dir=tmp_path) as b:
        assert {a, b} == {torch.device("cuda:0"), torch.device("cuda:1")}
    with job_device("cuda:1", device_count=2, lock_dir=tmp_path) as fixed:
        assert fixed == torch.device("cuda:1")
