rule download:
    """Put the dataset's source in place: download and verify a URL (SHA-256 required), link a
    local archive (its digest recorded) or folder, or generate the synthetic one."""
    output:
        directory("resources/{dataset}/source"),
    log:
        "logs/{dataset}/download.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        dataset=lambda wc: config["datasets"][wc.dataset],
    script:
        "../scripts/download.py"
