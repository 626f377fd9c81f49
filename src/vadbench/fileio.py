"""Writes that never leave a half-finished file or folder behind.

Snakemake deletes the outputs of a failed job, but not when it is itself killed, and a
half-written checkpoint that a rerun trusts would silently corrupt a result. Everything
vadbench writes goes to a temporary sibling first and is renamed into place on success.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import shutil
import socket
import stat
from pathlib import Path
from typing import Any, Callable, Iterator

from vadbench.lifetime import process_alive


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (file or folder) and rename it to ``path`` on success.

    On an exception the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    remove_orphaned_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{host}-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink() and tmp.is_dir():
            # two renames, then delete: the folder is missing for an instant, not for an rmtree
            old = path.with_name(f".{path.name}.tmp-{host}-{os.getpid()}-old")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def remove_orphaned_temporaries(path: str | Path) -> None:
    """Remove the temporaries ``.<name>.tmp-<host>-<pid>...`` of ``path`` left by processes of this
    host that no longer exist (a job killed with SIGKILL cannot clean up); those of live
    processes and of other hosts (a shared filesystem) stay."""
    path = Path(path)
    prefix = f".{path.name}.tmp-{socket.gethostname()}-"
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid = re.match(r"\d+", tmp.name[len(prefix) :])
        if pid is None or int(pid.group()) == os.getpid():
            continue
        if not process_alive(int(pid.group())):
            _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, rows: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    """Atomically write ``rows`` (dicts with the same keys) as CSV with a header; ``fields``
    names the columns (and so the header of a file with no rows)."""
    import csv

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields or (list(rows[0]) if rows else []))
            writer.writeheader()
            writer.writerows(rows)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def open_lock_file(path: str | Path, refuse: Callable[[bool], Exception]) -> int:
    """Open (create, mode 0600) a lock file for ``flock``: never through a symlink, never truncated,
    and only a regular file of this user's. ``refuse(is_symlink)`` builds the error to raise, so
    each caller names its own fix; returns the file descriptor."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise refuse(True) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
        os.close(fd)
        raise refuse(False)
    return fd


def write_lock_owner(fd: int) -> None:
    """Record this process as the holder of a lock just taken on ``fd`` (for a waiting job's log)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
