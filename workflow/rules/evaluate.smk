rule score:
    """Per-frame anomaly scores of every test video under the variant's protocol."""
    input:
        model="results/{dataset}/{variant}/seed{seed}/model.pt",
        arrays=get_arrays,
        index=get_index,
        flow=get_flow,
        labels="resources/{dataset}/frames",
    output:
        "results/{dataset}/{variant}/seed{seed}/scores.npz",
    log:
        "logs/{dataset}/{variant}/seed{seed}/score.log",
    benchmark:
        "results/benchmarks/{dataset}/{variant}/seed{seed}/score.tsv"
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        protocol=get_protocol,
        batch_size=lambda wc: get_preset(wc).get("score_batch_size", 16),
    script:
        "../scripts/score.py"


rule auc:
    """Micro AUC with a bootstrap interval, macro AUC, EER, AUPR and per-video AUCs of one seed
    under the protocol recorded in its scores; written to JSON and to the seed's MLflow run."""
    input:
        scores="results/{dataset}/{variant}/seed{seed}/scores.npz",
        run_info="results/{dataset}/{variant}/seed{seed}/run.json",
    output:
        "results/{dataset}/{variant}/seed{seed}/auc.json",
    log:
        "logs/{dataset}/{variant}/seed{seed}/auc.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/auc.py"


rule plots:
    """Per-video score curves with the anomalous frames shaded, and the ROC, also as MLflow artifacts."""
    input:
        scores="results/{dataset}/{variant}/seed{seed}/scores.npz",
        auc="results/{dataset}/{variant}/seed{seed}/auc.json",
        run_info="results/{dataset}/{variant}/seed{seed}/run.json",
    output:
        report(
            directory("results/{dataset}/{variant}/seed{seed}/plots"),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="{dataset}",
            subcategory="{variant} seed {seed}",
            labels={"dataset": "{dataset}", "variant": "{variant}", "seed": "{seed}", "figure": "{name}"},
        ),
    log:
        "logs/{dataset}/{variant}/seed{seed}/plots.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/plots.py"
