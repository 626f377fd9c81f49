"""Diagnostic: how many MemAE queries survive hard shrinkage at initialisation, per lambda.

    .venv/bin/python benchmarks/memae_shrinkage_at_init.py \
        --arrays resources/ped2/cpu/arrays --index resources/ped2/cpu/clips.npz [--preset cpu]

A query whose every addressing weight falls below the shrink threshold lambda reads an all-zero
code and sends no gradient to the encoder or the memory, so the share of live queries at
initialisation says how fast training can start. It uses training clips only (never test
labels), which is what the ``memae`` variant's lambda was chosen on: the largest value of the
paper's range {1/N, 2/N, 3/N} that keeps at least 99% of the queries live for every seed.
Build the arrays and the index first, e.g. for the local Ped2 copy:

    snakemake --cores 2 resources/ped2/cpu/clips.npz --configfile config/ped2_local.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from vadbench.clips import ClipLoader, load_index
from vadbench.models import build_model
from vadbench.models.memory import raw_max_weights

REPO = Path(__file__).resolve().parents[1]


def live_shares(
    widths: list[int], clips: torch.Tensor, seed: int, memory_size: int, thresholds: list[float]
) -> tuple[int, dict[float, float]]:
    """``(queries, share of them with a softmax weight above each threshold)`` for a fresh model."""
    torch.manual_seed(seed)
    model = build_model("memae", in_channels=clips.shape[1], widths=widths, memory_size=memory_size)
    model.train()  # batch statistics, as in the first training step
    with torch.no_grad():
        z = model.encoder(clips)
        top = raw_max_weights(model.memory, z.permute(0, 2, 3, 4, 1).reshape(-1, z.shape[1]))
    return len(top), {lam: float((top > lam).float().mean()) for lam in thresholds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", required=True, help="resize rule output: resources/<dataset>/<preset>/arrays")
    parser.add_argument("--index", required=True, help="index rule output: resources/<dataset>/<preset>/clips.npz")
    parser.add_argument("--preset", default="cpu", help="preset in config/config.yaml whose widths to use")
    parser.add_argument("--widths", type=int, nargs=4, help="override the preset's widths")
    parser.add_argument("--memory-size", type=int, default=2000)
    parser.add_argument("--clips", type=int, default=32, help="training clips in the batch")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    widths = args.widths or config["presets"][args.preset]["widths"]
    loader = ClipLoader(args.arrays, "train", load_index(args.index, "train"), args.clips)
    _, clips = next(loader.batches(0, shuffle_seed=0))
    n = args.memory_size
    thresholds = [1 / n, 2 / n, 3 / n, 0.0025]
    print(f"widths {widths}, N = {n}, {len(clips)} training clips {tuple(clips.shape[1:])}")
    print("| seed | queries | " + " | ".join(f"lambda {lam:g} ({lam * n:g}/N)" for lam in thresholds) + " |")
    print("|---" * (len(thresholds) + 2) + "|")
    for seed in args.seeds:
        queries, shares = live_shares(widths, clips, seed, n, thresholds)
        print(f"| {seed} | {queries} | " + " | ".join(f"{shares[lam]:.1%}" for lam in thresholds) + " |")


if __name__ == "__main__":
    main()
