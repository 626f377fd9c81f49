"""Benchmark: the fixed cost of one Snakemake job (Python start-up and imports) per rule of the
tiny DAG, against a naive job that imports the whole package. Prints seconds and ratios; asserts
nothing (tests/test_import_weight.py checks what each job imports, without timing).

    .venv/bin/python benchmarks/job_overhead.py [--repeat 5] [--keep DIR]

Every ``script:`` job is a fresh interpreter that runs Snakemake's preamble (unpickling the
``snakemake`` object imports parts of Snakemake) and then ``workflow/scripts/<rule>.py``. So a
light rule (frames, index, auc, summary) pays for whatever its imports pull in: torch, MLflow,
scikit-learn, matplotlib and SciPy cost 0.5-2.5 s each on 2 cores, before the job does any work.

What is measured, all in this one run so that a loaded machine shifts every number alike:

1. The tiny DAG of tests/conftest.py (dataset ``toy``, variants ``ae`` and ``memae``, seeds 0 and
   1) is run in a temporary copy of the workflow with a ``sitecustomize`` hook on ``PYTHONPATH``
   that records, at the exit of every job, its wall seconds since the process started (from
   /proc) and the modules it had loaded.
2. ``job s``: the job itself, rerun ``--repeat`` times from the script Snakemake generated for it
   (``--skip-script-cleanup``), median wall seconds; ``import s``: the seconds its imports took
   (``python -X importtime``, the top-level imports summed, Snakemake's preamble included) and
   the heavy packages among them. Rerunning rewrites that job's outputs and logs to its MLflow
   run again, all inside the temporary copy.
3. ``naive``: the imports a job paid when every module imported what it uses at the top (every
   ``vadbench`` module with torch, MLflow, scikit-learn, matplotlib and SciPy), and ``floor``:
   the interpreter with Snakemake's preamble imports alone, both measured the same way, so that
   ``import s / naive`` is a before/after ratio that a busy machine does not skew.

``--package DIR`` measures the vadbench package at ``DIR/vadbench`` instead (first on
``PYTHONPATH``), e.g. an older commit's ``src`` from ``git worktree add``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import TINY_CONFIG, copy_workflow  # noqa: E402

HEAVY = ("torch", "mlflow", "sklearn", "matplotlib", "scipy", "pandas", "sqlalchemy", "alembic", "skimage", "cv2")
# rules whose jobs should start light: data preparation and metrics (train, score and flow need torch)
LIGHT_RULES = ("download", "frames", "resize", "index", "mlflow_store", "auc", "plots", "aggregate", "summary")
PREAMBLE = "import sys, pickle; import snakemake.iocontainers, snakemake.logging, snakemake.script"
NAIVE = (
    *(f"vadbench.{m}" for m in ("datasets", "arrays", "clips", "protocol", "metrics", "scorefiles", "aggregate")),
    *(f"vadbench.{m}" for m in ("summary", "plots", "tracking", "pipeline", "config", "scoring", "training")),
    *("torch", "mlflow.tracking", "sklearn.metrics", "matplotlib.pyplot", "scipy.io", "scipy.ndimage"),
)

# Written as sitecustomize.py into a folder on PYTHONPATH: every Python process of the run imports
# it; those that run a Snakemake script (.snakemake/scripts/tmpXXXX.<rule>.py) record themselves.
HOOK = """
import atexit, json, os, sys

def _record():
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    if ".snakemake" not in sys.argv[0] or not script.startswith("tmp") or not script.endswith(".py"):
        return
    stat = open("/proc/self/stat").read()
    start = int(stat[stat.rindex(")") + 2 :].split()[19]) / os.sysconf("SC_CLK_TCK")
    uptime = float(open("/proc/uptime").read().split()[0])
    record = {"rule": script.split(".")[-2], "script": os.path.abspath(sys.argv[0]), "wall_s": uptime - start}
    record["packages"] = sorted({m.split(".")[0] for m in sys.modules})
    with open(os.environ["VADBENCH_JOB_TRACE"], "a") as out:
        out.write(json.dumps(record) + "\\n")

if os.environ.get("VADBENCH_JOB_TRACE"):
    atexit.register(_record)
"""

_IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)")


def parse_importtime(stderr: str) -> tuple[float, dict[str, float]]:
    """``(seconds of all imports, seconds per heavy package)`` from ``python -X importtime`` output:
    the cumulative times of the top-level imports summed, and each heavy package's own."""
    total, heavy = 0.0, {}
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if not match:
            continue
        cumulative, depth, name = int(match[1]) / 1e6, len(match[2]), match[3]
        if depth == 1:
            total += cumulative
        if name in HEAVY:  # the package itself (printed after its submodules, with their time)
            heavy[name] = max(heavy.get(name, 0.0), cumulative)
    return total, heavy


def median_run(command: list[str], cwd: Path, env: dict[str, str], repeat: int, importtime: bool = False):
    """Median wall seconds of ``command`` over ``repeat`` runs or, with ``importtime``, the median
    ``(import seconds, heavy package seconds)`` of ``python -X importtime`` runs."""
    results = []
    for _ in range(repeat):
        cmd = [command[0], "-X", "importtime", *command[1:]] if importtime else command
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        results.append(parse_importtime(proc.stderr) if importtime else (wall,))
    results.sort(key=lambda r: r[0])
    middle = results[len(results) // 2]
    return middle if importtime else middle[0]


def naive_imports() -> str:
    """Python code that imports what a naive job would: the package's workflow modules and every
    heavy library they use, as if each module imported its dependencies at the top."""
    return PREAMBLE + "\nimport importlib\nfor m in %r:\n    importlib.import_module(m)\n" % list(NAIVE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per median (default 5)")
    parser.add_argument("--keep", type=Path, help="run the DAG here and keep it (default: a temporary folder)")
    parser.add_argument("--package", type=Path, help="measure the vadbench package in this folder instead")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="job_overhead-"))
    workdir = (args.keep or tmp / "workflow").resolve()
    copy_workflow(workdir)
    (workdir / "tiny.yaml").write_text(TINY_CONFIG)
    hook = tmp / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    trace = tmp / "trace.jsonl"
    front = [str(args.package.resolve())] if args.package else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*front, os.environ.get("PYTHONPATH", "")])}
    traced = {**env, "PYTHONPATH": os.pathsep.join([str(hook), env["PYTHONPATH"]]), "VADBENCH_JOB_TRACE": str(trace)}

    start = time.perf_counter()
    dag = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--skip-script-cleanup", "--configfile", "tiny.yaml"],
        cwd=workdir,
        env=traced,
        capture_output=True,
        text=True,
    )
    dag_s = time.perf_counter() - start
    if dag.returncode != 0:
        raise SystemExit(f"the tiny DAG failed in {workdir} ({dag.returncode}):\n{dag.stderr[-4000:]}")
    by_rule: dict[str, list[dict]] = {}
    for line in trace.read_text().splitlines():
        job = json.loads(line)
        by_rule.setdefault(job["rule"], []).append(job)

    floor, _ = median_run([sys.executable, "-c", PREAMBLE], tmp, env, args.repeat, importtime=True)
    naive, _ = median_run([sys.executable, "-c", naive_imports()], tmp, env, args.repeat, importtime=True)
    jobs = sum(len(r) for r in by_rule.values())
    print(f"tiny DAG: {jobs} script jobs in {dag_s:.1f} s on 2 cores; medians of {args.repeat} runs")
    print(f"imports: floor (Snakemake preamble) {floor:.2f} s, naive (whole package) {naive:.2f} s\n")
    print("| rule | jobs | job s in DAG | job s rerun | import s | import / naive | heavy imports (s) |")
    print("|---|---|---|---|---|---|---|")
    for rule in sorted(by_rule, key=lambda r: (r not in LIGHT_RULES, r)):
        records = by_rule[rule]
        dag = statistics.median(r["wall_s"] for r in records)
        cells = ["-", "-", "-", ", ".join(sorted(set(records[0]["packages"]) & set(HEAVY))) or "-"]
        if rule in LIGHT_RULES:
            script = [sys.executable, records[0]["script"]]
            rerun = median_run(script, workdir, env, args.repeat)
            imported, heavy = median_run(script, workdir, env, args.repeat, importtime=True)
            named = ", ".join(f"{k} {v:.2f}" for k, v in sorted(heavy.items(), key=lambda kv: -kv[1]) if v >= 0.05)
            cells = [f"{rerun:.2f}", f"{imported:.2f}", f"{imported / naive:.2f}", named or "-"]
        print(f"| {rule} | {len(records)} | {dag:.2f} | " + " | ".join(cells) + " |")
    if args.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(hook, ignore_errors=True)


if __name__ == "__main__":
    main()
