"""How a job ends when it is stopped from outside: cleanly, and never as an orphan.

Snakemake runs each job as a child process. When Snakemake itself is killed (SIGKILL, the OOM
killer), its running jobs are not: they keep computing and writing outputs that the next
``snakemake`` is about to recompute, and their MLflow runs stay RUNNING. :func:`stop_when_orphaned`
watches the parent and sends the job SIGTERM when it is gone, and :func:`terminate_cleanly`
turns SIGTERM into an exception so that ``finally`` blocks (temporary files removed, MLflow run
marked KILLED) run before the job exits with status 143. Training installs its own SIGTERM
handler on top, which first saves a resumable checkpoint.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from vadbench.logs import get_logger

log = get_logger("lifetime")


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/<pid>/stat), or None when the process
    is gone or there is no /proc: with the pid, it names a process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


class Terminated(SystemExit):
    """The job received SIGTERM; exit status 143 (128 + 15)."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)

    def __str__(self) -> str:
        return "stopped by SIGTERM"


def terminate_cleanly() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (a no-op in other threads)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):  # noqa: ARG001
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


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
