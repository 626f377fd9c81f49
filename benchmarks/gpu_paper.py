"""Benchmark (issue 14): training steps of the `paper` presets on a GPU against that device's own
measured matmul peak, the device-resident loader's share of a step, and what the Ped2 paper table
would cost. Prints figures and ratios; asserts nothing.

    python benchmarks/gpu_paper.py                                   # CUDA: AE and MemAE, paper presets
    python benchmarks/gpu_paper.py --device cpu --preset toy --steps 2 --threads 2   # the same code on a CPU

Every row trains ``--steps`` steps (after ``--warmup``) through the training loop's own
``training_step`` on a batch already on the device, the backend set up as a training job sets it
(``configure_backend``: cuDNN's autotuner on CUDA), timed with the device synchronised. FLOPs are
counted once per model with ``FlopCounterMode`` on a forward pass and tripled for forward and
backward. The peak is a square matmul in the same precision on the same device; on CUDA the fp32
peak is taken with TF32 as cuDNN's convolutions compute fp32 (``torch.backends.cudnn.allow_tf32``).

The loader row gathers every batch of one epoch of clips of synthetic uint8 videos at the preset's
frame size with :class:`vadbench.clips.DeviceClipLoader` on the device, as ``data_placement: device``
does, so its time per batch is what the GPU could wait on the host per step (nothing, if the data
sits on the device). The projection is ``seeds x epochs x clips per epoch / clips per second``
for each variant at its fastest row, training only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from vadbench.clips import DeviceClipLoader, build_index, load_index
from vadbench.config import run_config
from vadbench.fileio import write_json
from vadbench.host import use_host
from vadbench.models import build_model
from vadbench.training import _autocast, configure_backend, make_optimizers, training_step

REPO = Path(__file__).resolve().parents[1]
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
PRECISIONS = {"none": torch.float32, "bf16": torch.bfloat16}


def flops(rate: float) -> str:
    return f"{rate / 1e12:7.2f} TFLOP/s" if rate >= 1e12 else f"{rate / 1e9:7.1f} GFLOP/s"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int = 10) -> float:
    """FLOP/s of an ``n`` x ``n`` matmul in ``dtype`` on ``device`` (mean of ``reps`` after a warm-up)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def step_rate(run: dict, device: torch.device, amp: str, layout: str, steps: int, warmup: int) -> tuple[float, float]:
    """(clips/s, FLOP/s) of the loop's training step for ``run`` on one fixed batch on ``device``."""
    preset = run["preset"]
    fmt = LAYOUTS[layout]
    torch.manual_seed(0)
    model = build_model(run["model"], **run["model_params"]).to(device, memory_format=fmt)
    b, t, (h, w), c = preset["batch_size"], preset["clip_length"], preset["frame_size"], preset["channels"]
    clips = (torch.rand(b, c, t, h, w, device=device) * 2 - 1).contiguous(memory_format=fmt)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clips)
    flops_per_step = 3 * counter.get_total_flops()
    optimizers = make_optimizers(model, preset)
    autocast = _autocast(device, amp)
    for _ in range(warmup):  # cuDNN's autotuner times its algorithms in the first steps
        training_step(model, clips, optimizers, autocast)
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        training_step(model, clips, optimizers, autocast)
    synchronize(device)
    seconds = time.perf_counter() - t0
    return steps * b / seconds, steps * flops_per_step / seconds


def loader_seconds_per_batch(preset: dict, device: torch.device, batches: int = 50) -> float:
    """Seconds to gather and convert one batch on ``device`` (DeviceClipLoader, synthetic frames)."""
    h, w = preset["frame_size"]
    t, batch = preset["clip_length"], preset["batch_size"]
    frames = t + batch * batches  # one video, enough clips at stride 1 for ``batches`` batches
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        arrays = Path(tmp) / "arrays"
        for split in ("train", "test"):
            (arrays / split).mkdir(parents=True)
            np.save(arrays / split / "01.npy", rng.integers(0, 256, (frames, h, w, 1), dtype=np.uint8))
        splits = {"train": {"01": frames}, "test": {"01": frames}}
        write_json(arrays / "manifest.json", {"size": [h, w], "channels": 1, "splits": splits})
        build_index(arrays, t, 1, 1, Path(tmp) / "clips.npz")
        index = load_index(Path(tmp) / "clips.npz", "train")
        loader = DeviceClipLoader(arrays, "train", index, batch, device=device)
        for _ in loader.batches(0, shuffle_seed=0):  # warm-up pass
            pass
        synchronize(device)
        t0 = time.perf_counter()
        n = 0
        for _, clips in loader.batches(1, shuffle_seed=0):
            clips.float().sum()  # the clips are used, as the first convolution would
            n += 1
        synchronize(device)
        return (time.perf_counter() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="paper", help="the AE/MemAE preset; MNAD variants use their own")
    parser.add_argument("--variants", nargs="+", default=["ae", "memae"])
    parser.add_argument("--amps", nargs="+", default=["none", "bf16"], choices=sorted(PRECISIONS))
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (a CPU run)")
    parser.add_argument("--clips-per-epoch", type=int, default=2310, help="Ped2 at 16-frame clips, stride 1")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    use_host(args.threads)
    configure_backend(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32  # fp32 as the convolutions do it
        name = f"{torch.cuda.get_device_name(device)}, cuDNN {torch.backends.cudnn.version()}"
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    n = 8192 if device.type == "cuda" else 2048
    peaks = {amp: matmul_peak(device, dtype, n) for amp, dtype in PRECISIONS.items() if amp in args.amps}
    print(f"torch {torch.__version__} on {name}")
    for amp, peak in peaks.items():
        tf32 = " (TF32, as cuDNN computes fp32)" if amp == "none" and device.type == "cuda" else ""
        print(f"  {'fp32' if amp == 'none' else 'bf16'} matmul peak ({n}x{n}){tf32}: {flops(peak)}")
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["datasets"]["toy"]["preset"] = args.preset
    best: dict[str, float] = {}
    epochs: dict[str, int] = {}
    for variant in args.variants:
        run = run_config(config, "toy", variant, 0)
        preset = run["preset"]
        epochs[variant] = preset["epochs"]
        gather = loader_seconds_per_batch(preset, device)
        print(
            f"\n{variant} ({run['preset_name']}: {preset['frame_size'][0]}x{preset['frame_size'][1]}, "
            f"{preset['clip_length']} frames, batch {preset['batch_size']}, widths {preset['widths']})"
        )
        for amp in args.amps:
            for layout in args.layouts:
                clips_s, flops_s = step_rate(run, device, amp, layout, args.steps, args.warmup)
                best[variant] = max(best.get(variant, 0.0), clips_s)
                step = preset["batch_size"] / clips_s
                print(
                    f"  amp={amp:4s} {layout:16s}: {clips_s:8.1f} clips/s, {flops(flops_s)} = "
                    f"{flops_s / peaks[amp]:5.2f} x {'fp32' if amp == 'none' else 'bf16'} peak; "
                    f"epoch of {args.clips_per_epoch} clips {args.clips_per_epoch / clips_s:7.1f} s; "
                    f"loader {gather / step:5.1%} of a step"
                )
    total = sum(args.seeds * epochs[v] * args.clips_per_epoch / best[v] for v in best)
    print(
        f"\nprojected: {' + '.join(f'{v} {args.seeds} x {epochs[v]} epochs' for v in best)} "
        f"at each one's fastest row = {total / 60:.1f} device-minutes of training"
    )


if __name__ == "__main__":
    main()
