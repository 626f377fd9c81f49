"""aggregate rule: mean and std over seeds for one (dataset, variant), and its per-seed table."""

from vadbench.logs import redirect_to
from vadbench.pipeline import aggregate_run

with redirect_to(snakemake.log[0]):
    aggregate_run(
        list(snakemake.input.aucs),
        snakemake.params.seeds,
        snakemake.params.run,
        snakemake.output.result,
        snakemake.output.table,
        repo_dir=snakemake.params.repo,
    )
