"""train rule: one model per (dataset, variant, seed), logged to MLflow."""
from vadbench.logs import redirect_to
from vadbench.pipeline import train_run
from vadbench.tracking import resolve_tracking_uri

with redirect_to(snakemake.log[0]):
    train_run(
        run=snakemake.params.run,
        arrays_dir=snakemake.input.arrays,
        index_path=snakemake.input.index,
        model_path=snakemake.output.model,
        checkpoint_path=snakemake.params.checkpoint,
        run_info_path=snakemake.output.run_info,
        tracking_uri=resolve_tracking_uri(snakemake.config["mlflow"]["tracking_uri"]),
        experiment=snakemake.params.experiment,
        threads=snakemake.threads,
    )
