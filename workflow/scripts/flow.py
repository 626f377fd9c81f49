"""flow rule: optical flow between consecutive frames of every video (AMMC-Net)."""

from vadbench.flow import flow_videos
from vadbench.logs import redirect_to

with redirect_to(snakemake.log[0]):
    flow_videos(snakemake.input[0], snakemake.output[0], method=snakemake.params.method, threads=snakemake.threads)
