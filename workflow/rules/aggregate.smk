rule aggregate:
    """Per-seed metrics, mean and std over seeds, protocol, preset and versions in one JSON and a
    per-seed/per-video table; the track job logs them to MLflow and publishes the JSON as
    results/{dataset}_{variant}_auc.json."""
    input:
        aucs=get_seed_aucs,
    output:
        result="results/{dataset}/{variant}/aggregate.json",
        table=report(
            "results/{dataset}/{variant}/auc_per_seed.csv",
            caption="../report/auc_table.rst",
            category="{dataset}",
            subcategory="{variant} AUC table",
            labels={"dataset": "{dataset}", "variant": "{variant}", "table": "AUC per seed and video"},
        ),
    log:
        "logs/{dataset}/{variant}/aggregate.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        seeds=SEEDS,
        run=lambda wc: run_config(config, wc.dataset, wc.variant, SEEDS[0]),
        # vadbench's own checkout (workflow/rules/../..), also when it is a module of another workflow
        repo=workflow.current_basedir.join("../..").get_path_or_uri(secret_free=True),
    script:
        "../scripts/aggregate.py"


rule summary:
    """One row per (dataset, variant) in config ``summary``: our AUCs beside the papers'."""
    input:
        results=get_summary_results,
        papers=config["papers"],
    output:
        md="results/summary.md",
        csv=report(
            "results/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "AUC summary"},
        ),
        brief="results/summary_brief.csv",
    log:
        "logs/summary.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/summary.py"
