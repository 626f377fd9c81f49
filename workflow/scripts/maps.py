"""maps rule: per-pixel anomaly maps and boxes of one seed's test videos."""

from vadbench.logs import redirect_to
from vadbench.pipeline import maps_run
from vadbench.tracking import resolve_tracking_uri

with redirect_to(snakemake.log[0]):
    maps_run(
        model_path=snakemake.input.model,
        arrays_dir=snakemake.input.arrays,
        index_path=snakemake.input.index,
        run_info_path=snakemake.input.run_info,
        protocol=snakemake.params.protocol,
        localization=snakemake.params.localization,
        out_dir=snakemake.output.maps,
        boxes_path=snakemake.output.boxes,
        boxes_csv=snakemake.output.boxes_csv,
        tracking_uri=resolve_tracking_uri(snakemake.config["mlflow"]["tracking_uri"]),
        log_model=snakemake.config["mlflow"].get("log_model", True),
        batch_size=snakemake.params.batch_size,
        threads=snakemake.threads,
        flow_dir=snakemake.input.flow or None,
    )
