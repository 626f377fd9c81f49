rule train:
    """Train one model per (dataset, variant, seed); per-epoch checkpoint, losses to MLflow."""
    input:
        arrays=get_arrays,
        index=get_index,
        store="results/mlflow/store.json",
    output:
        model="results/{dataset}/{variant}/seed{seed}/model.pt",
        run_info="results/{dataset}/{variant}/seed{seed}/run.json",
    params:
        run=get_run,
        experiment=get_experiment,
        checkpoint=lambda wc: f"results/{wc.dataset}/{wc.variant}/seed{wc.seed}/checkpoint.pt",
    log:
        "logs/{dataset}/{variant}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/{dataset}/{variant}/seed{seed}/train.tsv"
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    script:
        "../scripts/train.py"
