rule aggregate:
    """Per-seed AUCs, mean and std over seeds, protocol, preset and versions in one JSON."""
    input:
        get_seed_aucs,
    output:
        "results/{dataset}_{variant}_auc.json",
    params:
        seeds=SEEDS,
        run=lambda wc: run_config(config, wc.dataset, wc.variant, SEEDS[0]),
        repo=workflow.basedir,
    log:
        "logs/{dataset}/{variant}/aggregate.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/aggregate.py"
