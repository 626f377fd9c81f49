"""aggregate rule: mean and std over seeds for one (dataset, variant), and its MLflow parent run."""

from vadbench.logs import redirect_to
from vadbench.pipeline import aggregate_run
from vadbench.tracking import resolve_tracking_uri

with redirect_to(snakemake.log[0]):
    aggregate_run(
        list(snakemake.input.aucs),
        snakemake.params.seeds,
        snakemake.params.run,
        snakemake.output.result,
        snakemake.output.table,
        resolve_tracking_uri(snakemake.config["mlflow"]["tracking_uri"]),
        snakemake.params.experiment,
        repo_dir=snakemake.params.repo,
    )
