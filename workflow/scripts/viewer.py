"""viewer rule: one seed's viewer page (and annotated videos where switched on)."""

from vadbench.logs import redirect_to
from vadbench.pipeline import viewer_run

with redirect_to(snakemake.log[0]):
    viewer_run(
        scores_path=snakemake.input.scores,
        auc_path=snakemake.input.auc,
        maps_dir=snakemake.input.maps,
        boxes_path=snakemake.input.boxes,
        arrays_dir=snakemake.input.arrays,
        localization=snakemake.params.localization,
        out_dir=snakemake.output[0],
        title=snakemake.params.title,
    )
