"""score rule: per-frame scores of every test video."""

from pathlib import Path

from vadbench.logs import redirect_to
from vadbench.protocol import Protocol
from vadbench.scoring import score_videos

with redirect_to(snakemake.log[0]):
    score_videos(
        model_path=snakemake.input.model,
        arrays_dir=snakemake.input.arrays,
        index_path=snakemake.input.index,
        labels_path=Path(snakemake.input.labels) / "labels.npz",
        protocol=Protocol.from_dict(snakemake.params.protocol),
        out_path=snakemake.output[0],
        batch_size=snakemake.params.batch_size,
        threads=snakemake.threads,
        flow_dir=snakemake.input.flow or None,
    )
