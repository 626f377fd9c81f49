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


rule maps:
    """Per-pixel anomaly maps of the frames each test clip scores, the box threshold from training
    clips, and every box; the model logged to the seed's MLflow run for vadbench detect (config
    mlflow.log_model)."""
    input:
        model="results/{dataset}/{variant}/seed{seed}/model.pt",
        arrays=get_arrays,
        index=get_index,
        flow=get_flow,
        run_info="results/{dataset}/{variant}/seed{seed}/run.json",
    output:
        maps=directory("results/{dataset}/{variant}/seed{seed}/maps"),
        boxes="results/{dataset}/{variant}/seed{seed}/boxes.json",
        boxes_csv="results/{dataset}/{variant}/seed{seed}/boxes.csv",
    log:
        "logs/{dataset}/{variant}/seed{seed}/maps.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        protocol=get_protocol,
        localization=get_localization,
        batch_size=lambda wc: get_preset(wc).get("score_batch_size", 16),
    script:
        "../scripts/maps.py"


rule auc:
    """Micro AUC with a bootstrap interval, macro AUC, EER, AUPR and per-video AUCs of one seed
    under the protocol recorded in its scores, and pixel-level AUC/EER, RBDC and TBDC where the
    dataset has pixel masks; written to JSON (the track job logs them to the seed's MLflow run)."""
    input:
        unpack(get_localization_inputs),
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
        mem_mb=4000,
        runtime=10,
    script:
        "../scripts/auc.py"


rule plots:
    """Per-video score curves with the anomalous frames shaded, and the ROC (MLflow artifacts of
    the seed's run through the track job)."""
    input:
        scores="results/{dataset}/{variant}/seed{seed}/scores.npz",
        auc="results/{dataset}/{variant}/seed{seed}/auc.json",
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


rule viewer:
    """A static HTML page of one seed (pick a test video, play and scrub it, the score curve in
    sync, ground truth shaded, boxes), with an annotated MP4 per test video where switched on
    (MLflow artifacts of the seed's run through the track job)."""
    input:
        scores="results/{dataset}/{variant}/seed{seed}/scores.npz",
        auc="results/{dataset}/{variant}/seed{seed}/auc.json",
        maps="results/{dataset}/{variant}/seed{seed}/maps",
        boxes="results/{dataset}/{variant}/seed{seed}/boxes.json",
        arrays=get_arrays,
    output:
        report(
            directory("results/{dataset}/{variant}/seed{seed}/viewer"),
            htmlindex="index.html",
            caption="../report/viewer.rst",
            category="{dataset}",
            subcategory="{variant} seed {seed}",
            labels={"dataset": "{dataset}", "variant": "{variant}", "seed": "{seed}", "figure": "viewer"},
        ),
    log:
        "logs/{dataset}/{variant}/seed{seed}/viewer.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        localization=get_localization,
        title=lambda wc: f"{wc.dataset} / {wc.variant} / seed {wc.seed}",
    script:
        "../scripts/viewer.py"


rule viewer_index:
    """results/viewer.html: one page linking every viewer page in results/ (rerun after a run)."""
    input:
        get_existing_viewers,
    output:
        "results/viewer.html",
    log:
        "logs/viewer_index.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/viewer_index.py"
