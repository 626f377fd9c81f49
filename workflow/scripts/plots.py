"""plots rule: per-video score curves and the ROC of one seed."""

from vadbench.logs import redirect_to
from vadbench.pipeline import plots_run
from vadbench.tracking import resolve_tracking_uri

with redirect_to(snakemake.log[0]):
    w = snakemake.wildcards
    plots_run(
        snakemake.input.scores,
        snakemake.input.auc,
        snakemake.input.run_info,
        snakemake.output[0],
        resolve_tracking_uri(snakemake.config["mlflow"]["tracking_uri"]),
        title=f"{w.dataset} {w.variant} seed {w.seed}",
    )
