"""auc rule: AUCs of one seed, written to JSON and to its MLflow run."""

from vadbench.logs import redirect_to
from vadbench.pipeline import evaluate_run
from vadbench.tracking import resolve_tracking_uri

with redirect_to(snakemake.log[0]):
    evaluate_run(
        snakemake.input.scores,
        snakemake.input.run_info,
        snakemake.output[0],
        resolve_tracking_uri(snakemake.config["mlflow"]["tracking_uri"]),
        maps_dir=snakemake.input.get("maps"),
        boxes_path=snakemake.input.get("boxes"),
        frames_dir=snakemake.input.get("frames"),
    )
