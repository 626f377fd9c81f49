"""How a job ends when it is stopped from outside: cleanly, and never as an orphan.

Snakemake runs each job as a child process. When Snakemake itself is killed (SIGKILL, the OOM
killer), its running jobs are not: they keep computing and writing outputs that the next
``snakemake`` is about to recompute, and their MLflow runs stay RUNNING. :func:`stop_when_orphaned`
watches the parent and sends the job SIGTERM when it is gone, and :func:`stop_on_signals`
turns SIGTERM (and SIGINT) into an exception so that ``finally`` blocks (temporary files removed, MLflow run
marked KILLED) run before the job exits with status 143. Training installs its own SIGTERM
handler on top, which first saves a resumable checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Iterator

from vadbench.logs import get_logger

log = get_logger("lifetime")


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/<pid>/stat), or None when the process
    is gone or there is no /proc: with the pid, it names a process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def process_alive(pid: int, start_time: str | None = None) -> bool:
    """Whether ``pid`` exists on this host and, given the ``start_time`` recorded with it (see
    :func:`process_start_time`) and /proc to compare with, is still that same process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = process_start_time(pid)
    return start_time is None or started is None or started == start_time


class Terminated(SystemExit):
    """The job received SIGTERM or SIGINT; exit status 128 + the signal number (143, 130)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + signum)
        self.signal = signal.Signals(signum)

    def __str__(self) -> str:
        return f"stopped by {self.signal.name}"


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGTERM or SIGINT inside the block, so ``finally`` blocks run
    (main thread only; elsewhere a no-op); the previous handlers come back afterwards. Training
    installs its own handlers on top, which first save a checkpoint."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_when_orphaned(interval: float = 1.0) -> threading.Thread | None:
    """Send this process SIGTERM within ``interval`` seconds of its parent process ending.

    A process whose parent dies is re-parented (to init or a subreaper), so a changed
    ``getppid()`` means the Snakemake that started the job is gone. Returns the watcher thread,
    or None when the process has no parent to watch (started by init).
    """
    parent = os.getppid()
    if parent <= 1:
        return None

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.warning("the process that started this job (pid %d) is gone: stopping the job", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="vadbench-parent-watch", daemon=True)
    thread.start()
    return thread
