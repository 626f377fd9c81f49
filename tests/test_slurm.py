"""The synthetic DAG through ``profiles/slurm`` on a real one-node SLURM cluster started here.

Installs Debian's slurm-wlm and munge when missing (as root, with apt), starts munged, slurmctld
and slurmd with no accounting database, runs the DAG through a test profile derived from
``profiles/slurm``, checks that every job went through sbatch (SLURM's own job logs and job ids)
and that the AUC equals a local run's, then stops every daemon it started. Deselect with
``-m "not slurm"``; it skips, saying why, only where the packages cannot be installed.
Recipe and pitfalls: ../shared/docs/ecosystem.md section 6.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, TINY_CONFIG, copy_workflow

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

ONE_SEED = TINY_CONFIG.replace("seeds: [0, 1]", "seeds: [0]")
TARGET = "results/toy_memae_auc.json"

# Snakemake with the SLURM plugin's status polling capped at POLL_EVERY_S seconds. The plugin
# (2.8.0) backs off by 10 s after every check in which no job finished (1, 11, 21, ... s, up to
# 180 s) and has no setting to bound that, so here a 10-s job was noticed 12 or 33 s after its
# submission and the cluster run took 229 s, 120 s of it waiting (128 s capped). All the rest is
# the real plugin against the real cluster: sbatch, the squeue status queries, the job steps.
POLL_EVERY_S = 2
CAPPED_POLLING = f"""
import sys
import snakemake_executor_plugin_slurm as slurm
from snakemake.cli import main
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
polling = RemoteExecutor.next_seconds_between_status_checks
slurm.Executor.next_seconds_between_status_checks = polling.setter(
    lambda self, seconds: polling.fset(self, min(seconds, {POLL_EVERY_S}))
)
main(sys.argv[1:])
"""


def _install() -> str | None:
    """Install slurm-wlm and munge if missing; the reason it cannot, or None."""
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sinfo")):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "slurm-wlm and munge are not installed and this user cannot apt-get install them (needs root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            return f"apt-get could not install slurm-wlm and munge: {proc.stderr.strip()[-300:]}"
    return None


def _write_conf(root: Path) -> Path:
    host = socket.gethostname().split(".")[0]
    memory = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    for sub in ("etc", "state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "etc/slurm.conf"
    conf.write_text(f"""ClusterName=vadbenchtest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MailProg=/bin/true
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/log/ctld.pid
SlurmdPidFile={root}/log/d.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MinJobAge=600
ReturnToService=2
NodeName={host} CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    return conf


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = _install()
    if reason:
        pytest.skip(reason)
    if Path("/etc/slurm/slurm.conf").exists() and not Path("/etc/slurm/slurm.conf").is_symlink():
        pytest.skip("/etc/slurm/slurm.conf belongs to a real SLURM installation; not replacing it")
    root = tmp_path_factory.mktemp("slurm")
    conf = _write_conf(root)
    Path("/etc/slurm").mkdir(exist_ok=True)
    if Path("/etc/slurm/slurm.conf").is_symlink():
        Path("/etc/slurm/slurm.conf").unlink()
    os.symlink(conf, "/etc/slurm/slurm.conf")  # the plugin's job step needs it there (pitfall 1)
    daemons: list[subprocess.Popen] = []
    try:
        subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", "/run/munge"], check=True)
        daemons.append(
            subprocess.Popen(
                ["setpriv", "--reuid=munge", "--regid=munge", "--init-groups", "/usr/sbin/munged", "-F"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
        )
        deadline = time.monotonic() + 30
        while subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "munged did not start"
            time.sleep(0.25)
        for daemon in ("slurmctld", "slurmd"):
            log = open(root / f"log/{daemon}.out", "w")
            daemons.append(subprocess.Popen([f"/usr/sbin/{daemon}", "-D"], stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip() != "idle":
            assert time.monotonic() < deadline, (root / "log/slurmctld.out").read_text()[-2000:]
            time.sleep(0.5)
        yield root
    finally:
        for proc in reversed(daemons):
            proc.send_signal(signal.SIGTERM)
        for proc in reversed(daemons):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if Path("/etc/slurm/slurm.conf").is_symlink():
            Path("/etc/slurm/slurm.conf").unlink()


def test_shipped_profile_submits_training_with_a_gpu():
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["set-resources"]["train"]["gpu"] == 1
    assert profile["retries"] >= 1 and profile["rerun-incomplete"] is True


def derived_profile(dest: Path) -> Path:
    """A test profile that takes everything from profiles/slurm and overrides only what a one-node
    cluster without accounting or GPUs needs."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile.update(
        {
            "jobs": 4,
            "latency-wait": 5,
            "retries": 0,
            "slurm-status-command": "squeue",  # no slurmdbd here (pitfall 2)
            "slurm-init-seconds-before-status-checks": 1,
            "slurm-keep-successful-logs": True,
            "slurm-logdir": str(dest / "slurm_logs"),
            "set-threads": {"train": 1, "score": 1},
        }
    )
    profile["default-resources"] = {"slurm_partition": "debug", "runtime": 10, "mem_mb": 1000, "cpus_per_task": 1}
    profile["set-resources"] = {
        rule: {k: v for k, v in res.items() if k not in ("gpu", "slurm_partition", "mem_mb")}
        | {"cpus_per_task": 1, "runtime": 10}
        for rule, res in profile["set-resources"].items()
    }
    folder = dest / "profile"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def cluster_run(workdir: Path, profile: Path) -> None:
    """Run the target through ``profile`` (Snakemake submitting every job with sbatch), with the
    status polling capped; SIGINT after 15 minutes (a hung plugin ignores SIGTERM, pitfall 2)."""
    proc = subprocess.run(
        [
            "timeout",
            "-s",
            "INT",
            "900",
            sys.executable,
            "-c",
            CAPPED_POLLING,
            "--profile",
            str(profile),
            "--workflow-profile",
            "none",
            TARGET,
            "--configfile",
            "tiny.yaml",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=960,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_dag_runs_as_slurm_jobs_and_matches_a_local_run(slurm_cluster, tmp_path):
    cluster_dir = copy_workflow(tmp_path / "cluster")
    local_dir = copy_workflow(tmp_path / "local")
    for d in (cluster_dir, local_dir):
        (d / "tiny.yaml").write_text(ONE_SEED)
    profile = derived_profile(tmp_path)
    # the local reference run meanwhile: the cluster run mostly waits on SLURM
    with open(tmp_path / "local.log", "w") as local_log:
        local_run = subprocess.Popen(
            [*SNAKEMAKE, "--cores", "2", TARGET, "--configfile", "tiny.yaml"],
            cwd=local_dir,
            stdout=local_log,
            stderr=subprocess.STDOUT,
        )
        try:
            cluster_run(cluster_dir, profile)
            assert local_run.wait(600) == 0, (tmp_path / "local.log").read_text()[-4000:]
        finally:
            if local_run.poll() is None:
                local_run.kill()
                local_run.wait()
    logs = sorted(p.relative_to(tmp_path / "slurm_logs") for p in (tmp_path / "slurm_logs").rglob("*.log"))
    rules = {p.parts[0] for p in logs}
    for rule in ("rule_download", "rule_frames", "rule_resize", "rule_index", "rule_train", "rule_score", "rule_auc"):
        assert rule in rules, logs
    train_log = next((tmp_path / "slurm_logs").glob("rule_train/**/*.log"))
    assert "--executor slurm-jobstep" in train_log.read_text()  # the job ran inside a SLURM allocation
    job = subprocess.run(["scontrol", "show", "job", train_log.stem], capture_output=True, text=True).stdout
    assert "JobState=COMPLETED" in job and "Partition=debug" in job, job  # SLURM's own record of the job
    cluster = json.loads((cluster_dir / TARGET).read_text())
    local = json.loads((local_dir / TARGET).read_text())
    assert (
        cluster["micro_auc"] == local["micro_auc"]
        and cluster["per_seed"][0]["per_video_auc"] == local["per_seed"][0]["per_video_auc"]
    )
