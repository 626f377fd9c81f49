"""What a killed process leaves behind is recovered: Snakemake's stale lock, a job's temporaries,
and a job whose Snakemake is gone stops instead of running on as an orphan."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from vadbench.fileio import atomic_path
from vadbench.snakelock import LOCKS, OWNERS, recover_stale_locks


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def lock_left_by(workdir: Path, pid: int, start_time: str | None = "1") -> None:
    (workdir / LOCKS).mkdir(parents=True)
    (workdir / LOCKS / "0.output.lock").write_text("results/x\n")
    (workdir / OWNERS).mkdir(parents=True)
    record = {"host": socket.gethostname(), "pid": pid, "start_time": start_time}
    (workdir / OWNERS / f"{record['host']}-{pid}.json").write_text(json.dumps(record))


def test_a_lock_whose_owner_was_killed_is_removed(tmp_path, capsys):
    lock_left_by(tmp_path, dead_pid())
    removed = recover_stale_locks(tmp_path)
    assert [p.name for p in removed] == ["0.output.lock"]
    assert not list((tmp_path / LOCKS).iterdir())
    assert "removed a stale Snakemake lock" in capsys.readouterr().err
    # the caller is now the recorded owner, and the dead one's record is gone
    assert [p.name for p in (tmp_path / OWNERS).iterdir()] == [f"{socket.gethostname()}-{os.getpid()}.json"]


def test_a_lock_of_a_live_run_is_kept(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        from vadbench.lifetime import process_start_time

        lock_left_by(tmp_path, live.pid, process_start_time(live.pid))
        assert recover_stale_locks(tmp_path, register=False) == []
        assert (tmp_path / LOCKS / "0.output.lock").exists()
    finally:
        live.kill()


def test_a_reused_pid_does_not_keep_a_stale_lock(tmp_path):
    lock_left_by(tmp_path, os.getpid(), start_time="0")  # our pid, but started at another time
    assert len(recover_stale_locks(tmp_path, register=False)) == 1


def test_locks_with_an_owner_on_another_host_or_no_owner_are_left_to_snakemake(tmp_path):
    lock_left_by(tmp_path, dead_pid())
    record = next((tmp_path / OWNERS).iterdir())
    record.write_text(json.dumps({"host": "elsewhere", "pid": 1, "start_time": "1"}))
    assert recover_stale_locks(tmp_path, register=False) == []
    record.unlink()
    assert recover_stale_locks(tmp_path, register=False) == []
    assert (tmp_path / LOCKS / "0.output.lock").exists()


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    host = socket.gethostname()
    killed = tmp_path / f".frames.tmp-{host}-{dead_pid()}"
    killed.mkdir()
    (killed / "0000.jpg").write_bytes(b"half")
    other_host = tmp_path / ".frames.tmp-otherhost-1"
    other_host.mkdir()
    mine_alive = tmp_path / f".frames.tmp-{host}-{os.getppid()}"
    mine_alive.mkdir()
    with atomic_path(tmp_path / "frames") as tmp:
        tmp.mkdir()
    assert not killed.exists() and other_host.exists() and mine_alive.exists()
    assert (tmp_path / "frames").is_dir()


def test_a_job_whose_parent_is_killed_gets_sigterm_and_cleans_up(tmp_path):
    """parent -> job; SIGKILL the parent; the job's finally block runs and it exits 143."""
    job = textwrap.dedent(f"""
        import sys, time
        from vadbench.lifetime import stop_on_signals, stop_when_orphaned
        stop_when_orphaned(interval=0.05)
        open({str(tmp_path / "started")!r}, "w").close()
        with stop_on_signals():
            try:
                time.sleep(60)
            finally:
                open({str(tmp_path / "cleaned")!r}, "w").close()
    """)
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {job!r}]); time.sleep(60)",
        ]
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    while not (tmp_path / "cleaned").exists():
        assert time.monotonic() < deadline, "the orphaned job kept running"
        time.sleep(0.02)
