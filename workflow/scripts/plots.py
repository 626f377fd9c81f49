"""plots rule: per-video score curves and the ROC of one seed."""

from vadbench.logs import redirect_to
from vadbench.pipeline import plots_run

with redirect_to(snakemake.log[0]):
    w = snakemake.wildcards
    plots_run(
        snakemake.input.scores,
        snakemake.input.auc,
        snakemake.output[0],
        title=f"{w.dataset} {w.variant} seed {w.seed}",
    )
