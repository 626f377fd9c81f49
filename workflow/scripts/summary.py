"""summary rule: results/summary.md and summary.csv."""

from vadbench.logs import redirect_to
from vadbench.summary import write_summary

with redirect_to(snakemake.log[0]):
    write_summary(
        list(snakemake.input.results),
        snakemake.input.papers,
        snakemake.output.md,
        snakemake.output.csv,
        snakemake.output.brief,
    )
