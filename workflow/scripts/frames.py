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
        label_source=snakemake.params.label_source,
    )
    print({split: len(videos) for split, videos in manifest["splits"].items()}, "videos")
    print(
        f"{manifest['anomalous_test_frames']} anomalous test frames, labels from {manifest['label_file']} "
        f"(label_source {manifest['label_source']})"
    )
