"""auc rule: AUCs of one seed, written to JSON (the track job logs them to MLflow)."""

from vadbench.logs import redirect_to
from vadbench.pipeline import evaluate_run

with redirect_to(snakemake.log[0]):
    evaluate_run(
        snakemake.input.scores,
        snakemake.input.run_info,
        snakemake.output[0],
        maps_dir=snakemake.input.get("maps"),
        boxes_path=snakemake.input.get("boxes"),
        frames_dir=snakemake.input.get("frames"),
    )
