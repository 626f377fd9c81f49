"""Benchmark (issue 14): where a MemAE training step's oneDNN time goes, by primitive, pass and
kernel. Prints milliseconds per step; asserts nothing.

    .venv/bin/python benchmarks/onednn_kernels.py [--preset cpu] [--threads 2] [--steps 3] [--amp bf16] [--top 20]

The model trains as the preset says (layout, and the precision ``--amp`` names; the `cpu` preset
resolves ``auto`` to bf16 on a CPU with AVX512-BF16) through the loop's own ``training_step``,
with freed memory kept as the jobs keep it. After warm-up steps, ``--steps`` steps run under
``torch.backends.mkldnn.verbose``, and oneDNN's own execution times are summed by (primitive, pass,
implementation, shape). Which kernel runs is the point: ``brg*`` kernels are the brgemm ones near
the matmul peak, ``jit_bf16`` the older direct ones.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    """Run the steps with oneDNN's verbose output on (it goes to stdout, which the parent reads)."""
    import torch
    import yaml

    from vadbench.config import run_config
    from vadbench.host import use_host
    from vadbench.models import build_model
    from vadbench.training import _autocast, make_optimizers, preset_layout, training_step

    use_host(args.threads)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["datasets"]["toy"]["preset"] = args.preset
    run = run_config(config, "toy", "memae", 0)
    preset = run["preset"]
    b, t, (h, w), c = preset["batch_size"], preset["clip_length"], preset["frame_size"], preset["channels"]
    layout = preset_layout(preset)
    torch.manual_seed(0)
    model = build_model(run["model"], **run["model_params"]).to(memory_format=layout)
    clips = (torch.rand(b, c, t, h, w) * 2 - 1).contiguous(memory_format=layout)
    optimizers = make_optimizers(model, preset)
    autocast = _autocast(torch.device("cpu"), args.amp)
    for _ in range(3):
        training_step(model, clips, optimizers, autocast)
    print("=== measured ===", flush=True)  # before oneDNN writes to the same stdout
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        for _ in range(args.steps):
            training_step(model, clips, optimizers, autocast)


def summarise(lines: list[str], steps: int, top: int) -> None:
    per_key: dict[tuple[str, str, str, str], float] = collections.defaultdict(float)
    per_kind: dict[tuple[str, str], float] = collections.defaultdict(float)
    for line in lines:
        fields = line.strip().split(",")
        if len(fields) < 6 or fields[0] != "onednn_verbose" or "exec" not in fields:
            continue
        at = fields.index("exec")
        try:
            ms = float(fields[-1]) / steps
        except ValueError:
            continue
        primitive, implementation, direction = fields[at + 2], fields[at + 3], fields[at + 4]
        per_key[(primitive, direction, implementation, fields[-2])] += ms
        kernel = implementation.split("+")[-1]  # "conv:any+jit_bf16:..." runs a convolution's jit_bf16 kernel
        family = "brgemm" if "brg" in kernel else kernel.split(":")[0]
        per_kind[(f"{primitive} {direction}", family)] += ms
    total = sum(per_key.values())
    print(f"oneDNN time per step: {total:.1f} ms\n\nby primitive and pass, and kernel family:")
    for (what, family), ms in sorted(per_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {ms:7.2f} ms  {ms / total:5.1%}  {what:40s} {family}")
    print(f"\nthe {top} largest (primitive, pass, implementation, problem):")
    for (primitive, direction, implementation, shape), ms in sorted(per_key.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {ms:7.2f} ms  {primitive:13s} {direction:17s} {implementation:45s} {shape}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--amp", default="bf16", choices=["none", "bf16"])
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    argv = [sys.executable, __file__, "--worker", *sys.argv[1:]]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    lines = out.split("=== measured ===", 1)[-1].splitlines()
    print(f"MemAE training steps, preset {args.preset}, {args.threads} threads, amp {args.amp}, {args.steps} steps")
    summarise(lines, args.steps, args.top)


if __name__ == "__main__":
    main()
