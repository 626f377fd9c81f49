"""viewer rule: one seed's viewer page (and annotated videos where switched on)."""

from vadbench.logs import redirect_to
from vadbench.pipeline import viewer_run
from vadbench.tracking import resolve_tracking_uri

with redirect_to(snakemake.log[0]):
    viewer_run(
        scores_path=snakemake.input.scores,
        auc_path=snakemake.input.auc,
        maps_dir=snakemake.input.maps,
        boxes_path=snakemake.input.boxes,
        arrays_dir=snakemake.input.arrays,
        run_info_path=snakemake.input.run_info,
        localization=snakemake.params.localization,
        out_dir=snakemake.output[0],
        tracking_uri=resolve_tracking_uri(snakemake.config["mlflow"]["tracking_uri"]),
        title=snakemake.params.title,
    )
