rule train_stream:
    """AMMC-Net stage 1: one stream (appearance or motion) alone, per (dataset, variant, seed)."""
    input:
        arrays=get_arrays,
        index=get_index,
        flow=get_flow,
        store="results/mlflow/store.json",
    output:
        model="results/{dataset}/{variant}/seed{seed}/stream_{stream}.pt",
        run_info="results/{dataset}/{variant}/seed{seed}/stream_{stream}.json",
    log:
        "logs/{dataset}/{variant}/seed{seed}/train_stream_{stream}.log",
    benchmark:
        "results/benchmarks/{dataset}/{variant}/seed{seed}/train_stream_{stream}.tsv"
    # training is the long part of every path through the DAG: start the next one before the
    # short evaluation jobs of models already trained (3 seeds on 2 cores: 8 s earlier in make demo)
    priority: 10
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        run=get_stream_run,
        experiment=get_experiment,
        checkpoint=lambda wc: f"results/{wc.dataset}/{wc.variant}/seed{wc.seed}/stream_{wc.stream}_checkpoint.pt",
    script:
        "../scripts/train.py"


rule train:
    """Train one model per (dataset, variant, seed); per-epoch checkpoint, losses to MLflow.
    AMMC-Net's stage 2 starts from the stage-1 streams of ``train_stream``; a ``model_from``
    variant takes over its owner's trained model instead of training the same one again."""
    input:
        arrays=get_arrays,
        index=get_index,
        flow=get_flow,
        streams=get_stream_models,
        source=get_source_model,
        store="results/mlflow/store.json",
    output:
        model="results/{dataset}/{variant}/seed{seed}/model.pt",
        run_info="results/{dataset}/{variant}/seed{seed}/run.json",
    log:
        "logs/{dataset}/{variant}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/{dataset}/{variant}/seed{seed}/train.tsv"
    # training is the long part of every path through the DAG: start the next one before the
    # short evaluation jobs of models already trained (3 seeds on 2 cores: 8 s earlier in make demo)
    priority: 10
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        run=get_run,
        experiment=get_experiment,
        checkpoint=lambda wc: f"results/{wc.dataset}/{wc.variant}/seed{wc.seed}/checkpoint.pt",
    script:
        "../scripts/train.py"
