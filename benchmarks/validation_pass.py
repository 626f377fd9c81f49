"""Benchmark (issue 14): the per-epoch validation pass of a trained model (its held-out training
videos) in fp32 and under bf16 autocast, as :func:`vadbench.training.validation_loss` runs it in
the loop; prints seconds, the ratio and both losses. Asserts nothing.

    .venv/bin/python benchmarks/validation_pass.py --model results/ped2/memae/seed0/model.pt \\
        --data resources/ped2/cpu [--threads 2] [--rounds 3]

The model's preset names the held-out videos (``validation_videos``), the batch and the layout;
the two precisions are timed in turn, the order swapped round by round.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from vadbench.clips import hold_out_videos, load_index, make_loader
from vadbench.host import use_host
from vadbench.training import _autocast, configure_backend, load_trained, preset_layout, validation_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained model.pt whose preset holds out videos")
    parser.add_argument("--data", required=True, help="the preset's folder: arrays/ and clips.npz")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    use_host(args.threads)
    cpu = torch.device("cpu")
    configure_backend(cpu)
    model, run = load_trained(args.model)
    preset = run["preset"]
    layout = preset_layout(preset)
    data = Path(args.data)
    _, held_out = hold_out_videos(load_index(data / "clips.npz", "train"), preset.get("validation_videos", 0))
    if not len(held_out):
        raise SystemExit(f"{args.model}: its preset holds out no validation videos")
    loader = make_loader(data / "arrays", "train", held_out, preset["batch_size"])
    print(f"torch {torch.__version__}, {args.threads} threads; {run['model']}, {len(held_out)} held-out clips")
    precisions = ["none", "bf16"]
    seconds: dict[str, list[float]] = {p: [] for p in precisions}
    losses: dict[str, float] = {}
    for r in range(args.rounds):
        for amp in precisions if r % 2 == 0 else precisions[::-1]:
            t0 = time.perf_counter()
            losses[amp] = validation_loss(model, loader, cpu, layout, _autocast(cpu, amp))
            seconds[amp].append(time.perf_counter() - t0)
    fp32 = statistics.median(seconds["none"])
    for amp in precisions:
        med = statistics.median(seconds[amp])
        rounds = ", ".join(f"{s:.2f}" for s in seconds[amp])
        print(f"  {amp:5s}: median {med:5.2f} s ({rounds}) = {fp32 / med:4.2f}x fp32; loss {losses[amp]:.7f}")
    print(f"  the two losses {abs(losses['bf16'] - losses['none']) / losses['none']:.2%} apart")


if __name__ == "__main__":
    main()
