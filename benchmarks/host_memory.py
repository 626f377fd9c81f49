"""Benchmark: training steps with glibc's malloc as it is against malloc keeping freed blocks
(``vadbench.host.retain_freed_memory``, what every train, score, maps and detect job now does).
Prints per-step wall time, user and system CPU time and page faults, and the ratios; asserts nothing.

    .venv/bin/python benchmarks/host_memory.py [--rounds 3] [--steps 15] [--amp none]

Each measurement is a fresh process (the malloc settings hold for a process's life), the two kinds
alternating round by round so that a change in the host's load hits both. Models are MemAE at the
shipped ``toy`` preset on 1 thread (as the demo trains) and at the ``cpu`` preset on 2 threads (as
the Ped2 README command trains), in the memory format of the preset and the precision it resolves
to here (``--amp none`` for fp32, what ``amp: auto`` gives on a CPU without bf16), through the
training loop's own ``training_step``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = (("toy", "toy", 1), ("cpu", "ped2", 2))  # (preset, a dataset that uses it, threads)


def worker(dataset: str, threads: int, steps: int, amp: str) -> dict:
    """Time ``steps`` training steps of MemAE as ``dataset``'s shipped preset trains it."""
    import torch
    import yaml

    from vadbench.config import run_config
    from vadbench.host import use_host
    from vadbench.models import build_model
    from vadbench.precision import resolve_amp
    from vadbench.training import _autocast, make_optimizers, preset_layout, training_step

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    run = run_config(config, dataset, "memae", 0)
    preset, device = run["preset"], torch.device("cpu")
    use_host(threads)
    torch.manual_seed(0)
    layout = preset_layout(preset)
    model = build_model(run["model"], **run["model_params"]).to(memory_format=layout)
    optimizers = make_optimizers(model, preset)
    amp = resolve_amp(preset["amp"] if amp == "preset" else amp, device)
    shape = (preset["batch_size"], preset["channels"], preset["clip_length"], *preset["frame_size"])
    clips = (torch.rand(shape) * 2 - 1).contiguous(memory_format=layout)
    autocast = _autocast(device, amp)
    for _ in range(3):
        training_step(model, clips, optimizers, autocast)
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        training_step(model, clips, optimizers, autocast)
    wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return {
        "amp": amp,
        "layout": preset.get("memory_format", "contiguous"),
        "step_ms": 1000 * wall / steps,
        "user_ms": 1000 * (after.ru_utime - before.ru_utime) / steps,
        "sys_ms": 1000 * (after.ru_stime - before.ru_stime) / steps,
        "faults": (after.ru_minflt - before.ru_minflt) / steps,
    }


def measure(dataset: str, threads: int, steps: int, amp: str, retain: bool) -> dict:
    env = {**os.environ, "VADBENCH_RETAIN_FREED_MEMORY": "1" if retain else "0"}
    command = [sys.executable, __file__, "--worker", dataset, str(threads), str(steps), amp]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--amp", default="preset", choices=("preset", "none", "bf16"))
    parser.add_argument("--worker", nargs=4, metavar=("DATASET", "THREADS", "STEPS", "AMP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        dataset, threads, steps, amp = args.worker
        print(json.dumps(worker(dataset, int(threads), int(steps), amp)))
        return
    print(f"load average {os.getloadavg()[0]:.2f}; {args.rounds} rounds of {args.steps} steps, medians")
    print("| preset (threads, precision, layout) | malloc | step ms | user ms | sys ms | page faults | x as it is |")
    print("|---|---|---|---|---|---|---|")
    for preset, dataset, threads in CASES:
        rows: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.rounds):
            for retain in (False, True):
                rows[retain].append(measure(dataset, threads, args.steps, args.amp, retain))
        base = statistics.median(r["step_ms"] for r in rows[False])
        for retain in (False, True):
            med = {k: statistics.median(r[k] for r in rows[retain]) for k in ("step_ms", "user_ms", "sys_ms", "faults")}
            first = rows[retain][0]
            name = f"`{preset}` ({threads}, {first['amp']}, {first['layout']})"
            kind = "keeps freed blocks" if retain else "as it is"
            steps = ", ".join(f"{r['step_ms']:.0f}" for r in rows[retain])
            print(
                f"| {name} | {kind} | {med['step_ms']:.1f} ({steps}) | {med['user_ms']:.0f} | {med['sys_ms']:.1f} "
                f"| {med['faults']:.0f} | {base / med['step_ms']:.2f}x |"
            )


if __name__ == "__main__":
    main()
