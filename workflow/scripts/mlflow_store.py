"""mlflow_store rule: create the tracking store and the experiment of every configured dataset."""

from vadbench.logs import redirect_to
from vadbench.pipeline import prepare_store
from vadbench.tracking import resolve_tracking_uri

with redirect_to(snakemake.log[0]):
    prepare_store(
        resolve_tracking_uri(snakemake.config["mlflow"]["tracking_uri"]),
        snakemake.config["mlflow"]["experiment"],
        sorted(snakemake.config["datasets"]),
        snakemake.params.artifact_root,
        snakemake.output[0],
    )
