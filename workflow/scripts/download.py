"""download rule: put the dataset's source under resources/{dataset}/source."""

from vadbench.datasets import fetch_source
from vadbench.logs import redirect_to

with redirect_to(snakemake.log[0]):
    fetch_source(snakemake.wildcards.dataset, snakemake.params.dataset, snakemake.output[0])
