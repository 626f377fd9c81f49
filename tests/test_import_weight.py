"""Light jobs start light: a data or metric job does not import torch, scikit-learn, matplotlib or
MLflow unless it uses them (each costs 0.5-2.5 s of every job's start-up on 2 cores; see
benchmarks/job_overhead.py for the seconds).

What a job imports is read from the code itself, not timed: the imports of its
``workflow/scripts/<rule>.py`` and those inside the body of each vadbench function the script
calls (the package imports heavy libraries there, where they are needed), all imported in a
fresh interpreter whose ``sys.modules`` is then checked.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vadbench.metrics import average_precision, roc_auc, roc_curve

REPO = Path(__file__).resolve().parents[1]

# rule -> the heavy libraries its job must not load; MLflow is loaded by the jobs that log to
# it, but only when they log (vadbench.tracking imports it inside its functions)
HEAVY = ("torch", "sklearn", "matplotlib", "mlflow", "scipy", "pandas", "cv2")
MUST_NOT_LOAD = {
    "download": tuple(h for h in HEAVY if h != "scipy"),  # the synthetic scene is rendered with SciPy
    "frames": HEAVY,
    "resize": HEAVY,
    "index": HEAVY,
    "mlflow_store": HEAVY,
    "auc": HEAVY,
    "aggregate": HEAVY,
    "summary": HEAVY,
    "plots": ("torch", "sklearn", "mlflow", "pandas", "cv2"),
}


def job_imports(rule: str, names: bool = False) -> list[str]:
    """The modules a job of ``rule`` imports: its script's, and those inside each vadbench function
    it calls; with ``names``, what it imports from them as ``module.name`` (``from m import n``)."""
    tree = ast.parse((REPO / "workflow/scripts" / f"{rule}.py").read_text())
    modules = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            modules += [f"{node.module}.{a.name}" for a in node.names] if names else [node.module]
            for alias in node.names:
                function = getattr(importlib.import_module(node.module), alias.name)
                if callable(function) and getattr(function, "__module__", "").startswith("vadbench"):
                    modules += imports_in_body(function, names)
        elif isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
    return modules


def imports_in_body(function, names: bool = False) -> list[str]:
    """The modules imported by ``import`` statements inside ``function``'s body, conditional ones
    included (with ``names``: ``module.name`` for each name a ``from`` import takes)."""
    source = Path(sys.modules[function.__module__].__file__).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == function.__name__:
            found = []
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module and inner.level == 0:
                    found += [f"{inner.module}.{a.name}" for a in inner.names] if names else [inner.module]
                elif isinstance(inner, ast.Import):
                    found += [alias.name for alias in inner.names]
            return found
    raise AssertionError(f"{function.__module__}.{function.__name__} is not a top-level function of its module")


def loaded_after_importing(modules: list[str]) -> dict:
    """Top-level packages in ``sys.modules``, and matplotlib's backend, after importing ``modules`` afresh."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "mpl = sys.modules.get('matplotlib')\n"
        "print(json.dumps({'packages': sorted({m.split('.')[0] for m in sys.modules}),"
        " 'backend': mpl.get_backend() if mpl else None}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("rule", sorted(MUST_NOT_LOAD))
def test_a_light_job_does_not_import_heavy_libraries_it_does_not_use(rule):
    modules = job_imports(rule)
    loaded = loaded_after_importing(modules)
    heavy = sorted(set(loaded["packages"]) & set(MUST_NOT_LOAD[rule]))
    assert not heavy, f"the {rule} job imports {', '.join(heavy)} through {', '.join(sorted(set(modules)))}"


def test_the_plots_job_draws_with_the_headless_agg_backend():
    loaded = loaded_after_importing(job_imports("plots"))
    assert loaded["backend"].lower() == "agg"
    assert not {"tkinter", "PyQt5", "PyQt6", "PySide2", "PySide6", "gi", "wx"} & set(loaded["packages"])


def test_the_job_import_reader_sees_imports_inside_functions():
    # the check above is only as good as this reader: the auc job's evaluate_run imports the
    # metrics module inside its body, the track job's track_run the tracking module
    assert {"vadbench.pipeline", "vadbench.metrics"} <= set(job_imports("auc"))
    assert "vadbench.tracking.RunLogger" in job_imports("track", names=True)


@pytest.mark.parametrize("rule", ["auc", "plots", "viewer", "aggregate"])
def test_the_metric_jobs_leave_mlflow_to_the_one_track_job(rule):
    # MLflow is imported inside vadbench.tracking's functions, so the check above cannot see a
    # job that logs at run time: these jobs must take nothing from the tracking module that opens
    # a run or a client (importing MLflow and opening the store cost about 3 s a job on 2 cores;
    # the track job pays it once per dataset and variant). Its pure helpers (redact_uri) may stay.
    opens = {"RunLogger", "tracked", "parent_run", "nest_runs", "init_store", "_client", "clean_runs"}
    taken = [m for m in job_imports(rule, names=True) if m.startswith("vadbench.tracking.")]
    assert not [m for m in taken if m.rsplit(".", 1)[1] in opens], taken


def _cases(rng: np.random.Generator):
    """Label/score pairs with ties, float32 scores, tiny magnitudes and imbalance, as the metrics meet them."""
    for trial in range(400):
        size = int(rng.integers(2, 3000))
        y = (rng.random(size) < rng.uniform(0.01, 0.9)).astype(np.uint8)
        if y.min() == y.max():
            continue
        kind = trial % 5
        if kind == 0:
            s = rng.random(size)
        elif kind == 1:
            s = rng.integers(0, 5, size).astype(np.float64)  # long runs of tied scores
        elif kind == 2:
            s = rng.random(size).astype(np.float32)
        elif kind == 3:
            s = np.round(rng.normal(size=size) + y, 2)  # informative, with ties
        else:
            s = rng.random(size) * 1e-300
        yield y, s


def test_numpy_metrics_equal_scikit_learn_bit_for_bit():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    cases = 0
    for y, s in _cases(np.random.default_rng(7)):
        cases += 1
        assert roc_auc(y, s) == sklearn_metrics.roc_auc_score(y, s)
        assert average_precision(y, s) == sklearn_metrics.average_precision_score(y, s)
        for ours, theirs in zip(roc_curve(y, s), sklearn_metrics.roc_curve(y, s)):
            assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    assert cases > 300


def test_a_roc_of_one_class_is_refused_with_the_counts():
    from vadbench.errors import DatasetError

    with pytest.raises(DatasetError, match="0 anomalous and 3 normal frames"):
        roc_auc(np.zeros(3, np.uint8), np.array([0.1, 0.2, 0.3]))
