"""train and train_stream rules: one model (or AMMC-Net stage-1 stream) per (dataset, variant,
seed), logged to MLflow; a stream is trained as any model is, from the run config it is given.

The MLflow settings and the preset's execution keys (``data_placement``) are read from the
config here, not passed as rule params: a changed param reruns the job, and pointing at another
store, switching system metrics or moving the data to the GPU must not retrain."""

from pathlib import Path

from vadbench.config import execution_of
from vadbench.logs import redirect_to
from vadbench.pipeline import train_run
from vadbench.tracking import resolve_tracking_uri

mlflow_config = snakemake.config["mlflow"]
run = snakemake.params.run
execution = execution_of(snakemake.config, snakemake.wildcards.dataset, snakemake.wildcards.variant)
run = {**run, "preset": {**run["preset"], **execution}}
with redirect_to(snakemake.log[0]):
    train_run(
        run=run,
        arrays_dir=snakemake.input.arrays,
        index_path=snakemake.input.index,
        model_path=snakemake.output.model,
        checkpoint_path=snakemake.params.checkpoint,
        run_info_path=snakemake.output.run_info,
        tracking_uri=resolve_tracking_uri(mlflow_config["tracking_uri"]),
        experiment=snakemake.params.experiment,
        threads=snakemake.threads,
        flow_dir=snakemake.input.flow or None,
        streams={Path(p).stem.removeprefix("stream_"): p for p in snakemake.input.get("streams", [])},
        model_from=next(iter(snakemake.input.get("source", [])), None),
        system_metrics=mlflow_config.get("system_metrics", "auto"),
        system_metrics_interval=mlflow_config.get("system_metrics_interval", 10),
    )
