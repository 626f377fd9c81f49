"""viewer_index rule: results/viewer.html over every viewer page in results/."""

from vadbench.logs import redirect_to
from vadbench.viewer import collect_index_entries, write_index

with redirect_to(snakemake.log[0]):
    write_index(snakemake.output[0], collect_index_entries("results"))
