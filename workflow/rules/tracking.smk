rule mlflow_store:
    """Create the MLflow store and the experiment of every configured dataset once, before any
    job logs to it (MLflow creates a fresh SQLite schema racily when many jobs start together).
    The datasets are read from the config inside the job, not passed as params: adding a
    dataset must not rerun this rule and, through it, every training job (a job of the new
    dataset creates its experiment under the store lock)."""
    output:
        "results/mlflow/store.json",
    log:
        "logs/mlflow_store.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        artifact_root=config["mlflow"].get("artifact_root", "results/mlflow-artifacts"),
    script:
        "../scripts/mlflow_store.py"


rule track:
    """Log a finished (dataset, variant) to MLflow in one job: each seed's metrics, auc.json,
    plots, viewer page and boxes into its run, the means into a parent run with the seed runs
    nested; then results/{dataset}_{variant}_auc.json, the aggregate with the MLflow ids. One
    job pays for MLflow's import instead of three per seed."""
    input:
        unpack(get_track_inputs),
        aggregate="results/{dataset}/{variant}/aggregate.json",
        table="results/{dataset}/{variant}/auc_per_seed.csv",
    output:
        "results/{dataset}_{variant}_auc.json",
    log:
        "logs/{dataset}/{variant}/track.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        seed_dirs=get_seed_dirs,
        experiment=get_experiment,
    script:
        "../scripts/track.py"
