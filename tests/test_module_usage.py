"""vadbench used as a Snakemake ``module`` by another workflow with its own config: the outer
workflow's default target reads a vadbench result, the real DAG runs in the outer working
directory, and the report, the default target of vadbench and the stale-lock recovery work there."""

import json
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_snakemake, tiny_config

pytestmark = pytest.mark.workflow

# the README's example, with the local checkout instead of github(...)
OUTER_SNAKEFILE = """
configfile: "config/config.yaml"


module vadbench:
    snakefile:
        "{snakefile}"
    config:
        config["vadbench"]


use rule * from vadbench as vadbench_*


rule all:
    input:
        "results/ae_micro_auc.txt",
    default_target: True


rule ae_micro_auc:
    input:
        "results/toy_ae_auc.json",
    output:
        "results/ae_micro_auc.txt",
    run:
        import json

        auc = json.loads(open(input[0]).read())["micro_auc"]["mean"]
        open(output[0], "w").write(f"{{auc:.4f}}\\n")
"""


def outer_workflow(root: Path) -> Path:
    """A project of its own that imports vadbench: its Snakefile and a config whose ``vadbench``
    key holds the tiny config (one seed), next to a copy of ``config/papers.yaml`` (which the
    default ``papers:`` names relative to the working directory, as snakedeploy copies config/)."""
    (root / "config").mkdir(parents=True)
    config = tiny_config()
    config["seeds"] = [0]
    (root / "config/config.yaml").write_text(yaml.safe_dump({"project": "outer", "vadbench": config}))
    shutil.copy2(REPO / "config/papers.yaml", root / "config/papers.yaml")
    (root / "Snakefile").write_text(OUTER_SNAKEFILE.format(snakefile=REPO / "Snakefile"))
    return root


@pytest.fixture(scope="module")
def outer(tmp_path_factory) -> Path:
    root = outer_workflow(tmp_path_factory.mktemp("outer"))
    run_snakemake(root, configfile=None)
    return root


def test_the_outer_default_target_runs_the_vadbench_dag_in_the_outer_working_directory(outer):
    result = json.loads((outer / "results/toy_ae_auc.json").read_text())
    assert (result["dataset"], result["variant"], result["seeds"]) == ("toy", "ae", [0])
    assert result["preset"]["name"] == "tiny" and result["preset"]["widths"] == [4, 8, 8, 8]
    micro = result["micro_auc"]["mean"]
    assert 0.5 < micro <= 1.0 and result["micro_auc"]["std"] == 0.0  # one seed; the tiny model beats chance
    assert 0.0 <= result["macro_auc"]["mean"] <= 1.0 and 0.0 <= result["eer"]["mean"] <= 1.0
    assert (outer / "results/ae_micro_auc.txt").read_text() == f"{micro:.4f}\n"
    # every output, log and the MLflow store are under the outer working directory
    assert (outer / "results/toy/ae/seed0/auc.json").is_file()
    assert "host memory: " in (outer / "logs/toy/ae/seed0/train.log").read_text()  # vadbench.host ran
    assert (outer / "results/mlflow.db").is_file()
    assert (
        json.loads((outer / "results/mlflow/store.json").read_text())["tracking_uri"] == "sqlite:///results/mlflow.db"
    )
    assert result["mlflow_parent_run_id"]


def test_the_result_records_the_vadbench_commit_when_used_as_a_module(outer):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    commit = json.loads((outer / "results/toy_ae_auc.json").read_text())["git_commit"]
    assert commit is not None and commit.startswith(head)


def test_the_report_of_the_outer_workflow_holds_the_vadbench_results_and_captions(outer):
    run_snakemake(outer, "--report", "report.zip", configfile=None)
    with zipfile.ZipFile(outer / "report.zip") as archive:
        names = archive.namelist()
        html = archive.read(next(n for n in names if n.endswith("report.html"))).decode()
    assert any(n.endswith("auc_per_seed.csv") for n in names), names
    assert "one row per seed" in html  # workflow/report/auc_table.rst, found from inside the module
    assert "Memory-augmented video anomaly detection" in html  # workflow/report/workflow.rst


def test_vadbench_default_target_resolves_from_the_outer_workflow(outer):
    out = run_snakemake(outer, "-n", "vadbench_all", configfile=None).stdout
    for rule in ("vadbench_train", "vadbench_plots", "vadbench_summary", "vadbench_all"):
        assert rule in out


def test_a_stale_lock_in_the_outer_working_directory_is_removed(outer):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    locks, owners = outer / ".snakemake/locks", outer / ".snakemake/vadbench-owners"
    locks.mkdir(parents=True, exist_ok=True)
    (locks / "0.output.lock").write_text(str(outer / "results/ae_micro_auc.txt") + "\n")
    record = {"host": socket.gethostname(), "pid": proc.pid, "start_time": "1"}
    (owners / f"{record['host']}-{proc.pid}.json").write_text(json.dumps(record))
    done = run_snakemake(outer, configfile=None)
    assert "removed a stale Snakemake lock" in done.stderr
    assert "Nothing to be done" in done.stdout + done.stderr
    assert not list(locks.glob("*.lock"))
