"""Benchmark: the test pass of the ``score`` job (every test clip through a trained AE/MemAE) by
layout of the model and batches, and batch size. Prints clips/s per setting and the ratio to the
contiguous layout at batch 16 (how the job ran until 2026-12-04); asserts nothing but checks that
every setting gives the same errors, bit for bit.

    .venv/bin/python benchmarks/score_pass.py --model results/ped2/memae/seed0/model.pt \\
        --data resources/ped2/cpu [--threads 2] [--rounds 3] [--batches 8 16]

The pass is :func:`vadbench.scoring.clip_errors` as the job runs it (fp32, no gradient, the
preset's error measure), after ``use_host`` as in the job; the settings are timed in turn, the
order rotated round by round, so that a change in the host's load falls on all of them alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from vadbench.clips import ClipLoader, load_index
from vadbench.host import use_host
from vadbench.scoring import clip_errors
from vadbench.training import load_trained

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained AE/MemAE model.pt")
    parser.add_argument("--data", required=True, help="the preset's folder: arrays/ and clips.npz")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--measure", default="memae_l2")
    args = parser.parse_args()
    use_host(args.threads)
    model, run = load_trained(args.model)
    data = Path(args.data)
    index = load_index(data / "clips.npz", "test")
    preset = run["preset"]
    print(
        f"torch {torch.__version__}, {args.threads} threads; {run['model']} trained at "
        f"{preset.get('memory_format', 'contiguous')}, amp {preset.get('amp', 'none')}; {len(index)} test clips"
    )
    settings = [(layout, batch) for layout in LAYOUTS for batch in args.batches]
    seconds: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
    errors: dict[tuple[str, int], np.ndarray] = {}
    for r in range(args.rounds):
        for layout, batch in settings[r % len(settings) :] + settings[: r % len(settings)]:
            fmt = LAYOUTS[layout]
            model.to(memory_format=fmt)
            loader = ClipLoader(data / "arrays", "test", index, batch)
            t0 = time.perf_counter()
            errors[(layout, batch)] = clip_errors(model, loader, torch.device("cpu"), args.measure, fmt)
            seconds[(layout, batch)].append(time.perf_counter() - t0)
    ref_setting = ("contiguous", 16) if ("contiguous", 16) in seconds else settings[0]
    ref = statistics.median(seconds[ref_setting])
    reference = errors[ref_setting]
    print(
        f"\n{'layout':18s} {'batch':>5s} {'median s':>9s} {'clips/s':>8s} {'x ' + ref_setting[0] + ' ' + str(ref_setting[1]):>16s}  rounds (s)"
    )
    for setting in settings:
        med = statistics.median(seconds[setting])
        same = "same errors" if np.array_equal(errors[setting], reference) else "ERRORS DIFFER"
        rounds = ", ".join(f"{s:.1f}" for s in seconds[setting])
        print(
            f"{setting[0]:18s} {setting[1]:5d} {med:9.1f} {len(index) / med:8.1f} {ref / med:15.2f}x  ({rounds}) {same}"
        )


if __name__ == "__main__":
    main()
