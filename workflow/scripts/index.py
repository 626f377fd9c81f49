"""index rule: the (video, start) of every train and test clip."""

from vadbench.clips import build_index
from vadbench.logs import redirect_to

with redirect_to(snakemake.log[0]):
    build_index(
        snakemake.input[0],
        clip_length=snakemake.params.clip_length,
        train_stride=snakemake.params.train_stride,
        test_stride=snakemake.params.test_stride,
        out_path=snakemake.output[0],
    )
