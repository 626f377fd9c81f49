"""frames rule: convert the source layout into canonical frames and labels."""

from vadbench.datasets import convert_source
from vadbench.logs import redirect_to

with redirect_to(snakemake.log[0]):
    manifest = convert_source(
        snakemake.input[0],
        snakemake.params.layout,
        snakemake.output[0],
        snakemake.params.options,
        archive_limits=snakemake.params.archives,
    )
    print({split: len(videos) for split, videos in manifest["splits"].items()}, "videos")
