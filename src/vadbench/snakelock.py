"""Recover from a Snakemake process that was killed while it held the working-directory lock.

Snakemake locks the outputs of a run in ``.snakemake/locks/`` and removes the lock when it
exits, but a SIGKILL (the OOM killer, a lost node, ``kill -9``) leaves the lock behind, and
the next ``snakemake`` refuses to start until someone runs ``snakemake --unlock``. The lock
files do not say who wrote them, so Snakemake cannot tell a stale lock from a live run.

vadbench records who may hold the lock: every main Snakemake process that parses the
workflow leaves ``.snakemake/vadbench-owners/<host>-<pid>.json`` with its start time. On
the next start, when lock files exist and every recorded owner is a process of this host
that no longer exists (a pid not running, or running but started at another time, i.e. a
reused pid), the lock is stale and is removed with a warning. A lock with a live owner, an
owner on another host (a shared filesystem), or no owner record at all is left to
Snakemake, which reports it as before.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

from vadbench.lifetime import process_alive, process_start_time

OWNERS = Path(".snakemake") / "vadbench-owners"
LOCKS = Path(".snakemake") / "locks"


def _alive(record: dict) -> bool:
    if record.get("host") != socket.gethostname():
        return True  # cannot be checked from here: assume it runs
    return process_alive(int(record["pid"]), record.get("start_time") or "unrecorded")


def _records(workdir: Path) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted((workdir / OWNERS).glob("*.json")):
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # half-written by a process killed at that moment: not an owner
    return out


def recover_stale_locks(workdir: str | Path = ".", register: bool = True) -> list[Path]:
    """Remove Snakemake's lock files if every process that could hold them is gone.

    Args:
        workdir: the Snakemake working directory (holds ``.snakemake/``).
        register: record the calling process as a possible lock owner (the main Snakemake
            process; not a remote job step).

    Returns:
        The lock files removed (empty when there was nothing stale).
    """
    workdir = Path(workdir)
    records = _records(workdir)
    dead = [path for path, record in records if not _alive(record)]
    locks = sorted((workdir / LOCKS).glob("*.lock"))
    removed: list[Path] = []
    if locks and records and len(dead) == len(records):
        owners = ", ".join(f"pid {r['pid']}" for _, r in records)
        for lock in locks:
            lock.unlink(missing_ok=True)
            removed.append(lock)
        print(
            f"vadbench: removed a stale Snakemake lock left by a killed run ({owners} on this host, no longer "
            "running); outputs it left incomplete are rerun (rerun-incomplete in profiles/default)",
            file=sys.stderr,
        )
    for path in dead:
        path.unlink(missing_ok=True)
    if register:
        folder = workdir / OWNERS
        folder.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": process_start_time(os.getpid())}
        target = folder / f"{me['host']}-{me['pid']}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(me))
        os.replace(tmp, target)
    return removed
