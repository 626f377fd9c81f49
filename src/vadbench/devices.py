"""Which device a job runs on, so concurrent jobs on a multi-GPU machine spread over the GPUs.

Snakemake's local ``gpu`` resource is only a counter: it limits how many GPU jobs run at once
but tells no job which GPU to use, so every job would land on ``cuda:0``. Here each job claims
one GPU for its lifetime with an exclusive, non-blocking ``flock`` on ``<lock_dir>/gpu<i>.lock``
(released by the kernel when the process ends, even on SIGKILL). A scheduler that already
restricts the job to its own GPUs (SLURM sets ``CUDA_VISIBLE_DEVICES``) leaves one visible GPU,
and the lock is trivially free.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from vadbench.logs import get_logger

log = get_logger("devices")

LOCK_DIR_ENV = "VADBENCH_GPU_LOCK_DIR"


def default_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"vadbench-gpu-locks-{os.getuid()}")


@contextlib.contextmanager
def claim_gpu(count: int, lock_dir: str | Path | None = None) -> Iterator[int | None]:
    """Yield the index of a GPU no other vadbench job on this machine holds, or ``None``.

    Args:
        count: GPUs visible to this process (``torch.cuda.device_count()``).
        lock_dir: where the per-GPU lock files live (default: a per-user folder in the temp dir,
            or ``$VADBENCH_GPU_LOCK_DIR``).

    With more jobs than GPUs (Snakemake run without ``--resources gpu=N``), the job that finds
    every GPU taken shares the one chosen by its process id, and says so in its log.
    """
    if count <= 0:
        yield None
        return
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        handle = open(folder / f"gpu{index}.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield index
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    shared = os.getpid() % count
    log.warning("all %d GPUs are claimed by other jobs; sharing cuda:%d (run snakemake with --resources gpu=%d)",
                count, shared, count)
    yield shared


@contextlib.contextmanager
def job_device(requested: str = "auto", device_count: int | None = None,
               lock_dir: str | Path | None = None) -> Iterator[torch.device]:
    """The device for one training or scoring job, held for the ``with`` block.

    ``auto``: a claimed GPU when CUDA is present, else the CPU; ``cuda`` claims a GPU as well;
    an explicit ``cuda:N`` or ``cpu`` is used as given.
    """
    if requested not in ("auto", "cuda"):
        yield torch.device(requested)
        return
    count = torch.cuda.device_count() if device_count is None else device_count
    if count == 0:
        if requested == "cuda":
            raise RuntimeError("preset device is 'cuda' but no CUDA device is visible")
        yield torch.device("cpu")
        return
    with claim_gpu(count, lock_dir) as index:
        log.info("using cuda:%d of %d visible GPUs", index, count)
        yield torch.device(f"cuda:{index}")
