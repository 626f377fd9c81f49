"""resize rule: decode every frame once into per-video uint8 arrays."""

from vadbench.arrays import decode_videos
from vadbench.logs import redirect_to

with redirect_to(snakemake.log[0]):
    decode_videos(
        snakemake.input[0],
        snakemake.output[0],
        tuple(snakemake.params.size),
        snakemake.params.channels,
        resize_filter=snakemake.params.resize_filter,
    )
