rule mlflow_store:
    """Create the MLflow store and the dataset's experiment once, before any job logs to it
    (MLflow creates a fresh SQLite schema racily when many jobs start together)."""
    output:
        "results/mlflow/{dataset}.json",
    params:
        experiment=get_experiment,
        artifact_root=config["mlflow"].get("artifact_root", "results/mlflow-artifacts"),
    log:
        "logs/{dataset}/mlflow_store.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/mlflow_store.py"
