"""Which device a job runs on, so concurrent jobs on a multi-GPU machine spread over the GPUs.

Snakemake's local ``gpu`` resource is only a counter: it limits how many GPU jobs run at once
but tells no job which GPU to use, so every job would land on ``cuda:0``. Here each job claims
one GPU for its lifetime with an exclusive, non-blocking ``flock`` on ``<lock_dir>/gpu<i>.lock``
(released by the kernel when the process ends, even on SIGKILL). A scheduler that already
restricts the job to its own GPUs (SLURM sets ``CUDA_VISIBLE_DEVICES``) leaves one visible GPU,
and the lock is trivially free.

The lock folder is private to the user: a folder anyone can write to (a shared temp dir) would
let another user plant ``gpu0.lock -> ~/victim`` and have the next job overwrite the victim. So
the folder must be a real directory (not a symlink) owned by the user and writable by nobody
else, and lock files are opened with ``O_NOFOLLOW`` and never truncated before the lock is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from vadbench.errors import VadbenchError
from vadbench.fileio import open_lock_file, write_lock_owner
from vadbench.logs import get_logger

log = get_logger("devices")

LOCK_DIR_ENV = "VADBENCH_GPU_LOCK_DIR"


class LockDirError(VadbenchError):
    """The GPU lock folder or a lock file in it is not safe to use."""


def _owned_private_dir(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def default_lock_dir() -> Path:
    """``$VADBENCH_GPU_LOCK_DIR``; else a folder in ``$XDG_RUNTIME_DIR`` when that is the user's
    own private folder; else ``<temp dir>/vadbench-gpu-locks-<uid>``."""
    if os.environ.get(LOCK_DIR_ENV):
        return Path(os.environ[LOCK_DIR_ENV])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and _owned_private_dir(Path(runtime)):
        return Path(runtime) / "vadbench-gpu-locks"
    return Path(tempfile.gettempdir()) / f"vadbench-gpu-locks-{os.getuid()}"


def private_lock_dir(folder: str | Path) -> Path:
    """Create ``folder`` (mode 0700) if missing and check it is safe to keep lock files in.

    Raises:
        LockDirError: the folder is a symlink or not a directory, belongs to another user, or
            can be written by group or others.
    """
    folder = Path(folder)
    fix = f"remove it if it is yours, or set {LOCK_DIR_ENV} to a folder only you can write to"
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = folder.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise LockDirError(f"GPU lock folder {folder} is a symlink or not a directory; {fix}")
    if st.st_uid != os.getuid():
        raise LockDirError(
            f"GPU lock folder {folder} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}); {fix}"
        )
    if st.st_mode & 0o022:
        mode = stat.S_IMODE(st.st_mode)
        raise LockDirError(
            f"GPU lock folder {folder} is writable by group or others (mode {mode:o}); "
            f"run chmod 700 {folder}, or set {LOCK_DIR_ENV} to a folder only you can write to"
        )
    return folder


def _open_lock(path: Path) -> int:
    """Open a GPU lock file (see :func:`vadbench.fileio.open_lock_file`)."""
    return open_lock_file(
        path,
        lambda symlink: LockDirError(
            f"GPU lock file {path} is {'a symlink' if symlink else 'not a regular file of yours'}; remove it, or set "
            f"{LOCK_DIR_ENV} to a folder only you can write to"
        ),
    )


@contextlib.contextmanager
def claim_gpu(count: int, lock_dir: str | Path | None = None) -> Iterator[int | None]:
    """Yield the index of a GPU no other vadbench job on this machine holds, or ``None``.

    Args:
        count: GPUs visible to this process (``torch.cuda.device_count()``).
        lock_dir: where the per-GPU lock files live (default: :func:`default_lock_dir`); it must be
            the user's own folder, writable by nobody else (checked, see :func:`private_lock_dir`).

    With more jobs than GPUs (Snakemake run without ``--resources gpu=N``), the job that finds
    every GPU taken shares the one chosen by its process id, and says so in its log.
    """
    if count <= 0:
        yield None
        return
    folder = private_lock_dir(lock_dir if lock_dir is not None else default_lock_dir())
    for index in range(count):
        fd = _open_lock(folder / f"gpu{index}.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            write_lock_owner(fd)  # only now that the lock is ours
            yield index
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    shared = os.getpid() % count
    log.warning(
        "all %d GPUs are claimed by other jobs; sharing cuda:%d (run snakemake with --resources gpu=%d)",
        count,
        shared,
        count,
    )
    yield shared


@contextlib.contextmanager
def job_device(
    requested: str = "auto", device_count: int | None = None, lock_dir: str | Path | None = None
) -> Iterator[torch.device]:
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
