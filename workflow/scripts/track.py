"""track rule: one (dataset, variant) logged to MLflow, seed runs and parent run, in one job."""

from vadbench.logs import redirect_to
from vadbench.pipeline import track_run
from vadbench.tracking import resolve_tracking_uri

with redirect_to(snakemake.log[0]):
    track_run(
        snakemake.input.aggregate,
        snakemake.input.table,
        snakemake.params.seed_dirs,
        resolve_tracking_uri(snakemake.config["mlflow"]["tracking_uri"]),
        snakemake.params.experiment,
        snakemake.output[0],
    )
