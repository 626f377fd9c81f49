"""Benchmark: MemAE training at a preset's scale in fp32 and bf16 with oneDNN held to each x86
instruction set users' CPUs have, to decide where ``amp: auto`` may pick bf16. Prints ratios;
asserts nothing.

    .venv/bin/python benchmarks/cpu_isa.py [--preset cpu] [--threads 2] [--steps 5] [--timeout 120]

``ONEDNN_MAX_CPU_ISA`` caps the kernels oneDNN dispatches to: ``AVX512_CORE_BF16`` (Cooper Lake,
Zen 4), ``AVX512_CORE`` (AVX-512 without bf16: Skylake to Ice Lake Xeons) and ``AVX2`` (most
laptops and desktops). Only the oneDNN side is emulated: PyTorch itself still sees the real CPU,
so on a real AVX2 machine it takes its own (also slow) bf16 path instead of oneDNN's reference
kernels. Each setting runs in a fresh process (oneDNN reads the variable once), killed after
``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ISAS = ("DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE", "AVX2")


def child(preset_name: str, threads: int, steps: int, amp: str) -> None:
    """One timing in this process: MemAE clips/s at the preset's scale (its ``training_rate``)."""
    import yaml

    sys.path.insert(0, str(REPO / "benchmarks"))
    from loader_and_training import training_rate

    from vadbench.config import run_config

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["datasets"]["toy"]["preset"] = preset_name
    run = run_config(config, "toy", "memae", 0)
    p = run["preset"]
    rate, gflops = training_rate(
        "memae", run["model_params"], tuple(p["frame_size"]), p["clip_length"], p["batch_size"], threads, steps, amp
    )
    print(json.dumps({"clips_per_s": rate, "gflops": gflops}))


def timed(isa: str, args: argparse.Namespace, amp: str) -> float | None:
    env = dict(os.environ)
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if isa != "DEFAULT":
        env["ONEDNN_MAX_CPU_ISA"] = isa
    command = [sys.executable, __file__, "--child", amp, "--preset", args.preset]
    command += ["--threads", str(args.threads), "--steps", str(args.steps)]
    try:
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["clips_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--child", choices=("none", "bf16"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.preset, args.threads, args.steps, args.child)
    import torch

    from vadbench.precision import native_bf16

    print(
        f"torch {torch.__version__}, MemAE at preset {args.preset}, {args.threads} threads, {args.steps} steps; "
        f"this CPU: AVX512-BF16 {torch.cpu._is_avx512_bf16_supported()}, AMX {torch.cpu._is_amx_tile_supported()}"
    )
    baseline = None
    for isa in ISAS:
        fp32 = timed(isa, args, "none")
        bf16 = timed(isa, args, "bf16")
        os.environ.pop("ONEDNN_MAX_CPU_ISA", None)
        if isa != "DEFAULT":
            os.environ["ONEDNN_MAX_CPU_ISA"] = isa
        auto = "bf16" if native_bf16(torch.device("cpu")) else "none"
        baseline = baseline or fp32

        def show(rate: float | None) -> str:
            return f"> {args.timeout:.0f} s for {args.steps + 1} steps" if rate is None else f"{rate:6.1f} clips/s"

        ratio = f"{bf16 / fp32:5.2f}x" if fp32 and bf16 else "  n/a"
        print(
            f"  oneDNN {isa:17s}: fp32 {show(fp32)}, bf16 {show(bf16)}; bf16/fp32 {ratio}; "
            f"fp32 vs unrestricted {fp32 / baseline if fp32 and baseline else float('nan'):4.2f}x; amp auto -> {auto}"
        )
    os.environ.pop("ONEDNN_MAX_CPU_ISA", None)


if __name__ == "__main__":
    main()
