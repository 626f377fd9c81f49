"""Benchmark: the training loader against a naive per-sample JPEG loader, and training
throughput against the machine's matmul peak in the precision used (fp32, bf16). Prints ratios; asserts nothing.

    .venv/bin/python benchmarks/loader_and_training.py [--preset cpu] [--threads 2]

Frames: two training videos of the real UCSD Ped2 (360x240 JPEG) from
../shared/datasets/ped2.tar when it is there, else the synthetic scene rendered at 240x240.
The naive loader does what the official codes do per sample: open and decode each of the 16
JPEGs of a clip, convert to grayscale, resize and normalise. vadbench's loader slices the
per-video uint8 arrays decoded once by the ``resize`` rule, memory-mapped. The device-resident
loader (``data_placement: device``) copies those arrays to the device once and gathers each
batch there with one indexing operation: timed on the CPU, and on CUDA when there is a GPU
(there against the memory-mapped loader plus the copy of each batch to the GPU).
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from vadbench.arrays import decode_videos
from vadbench.clips import ClipLoader, DeviceClipLoader, build_index, load_index
from vadbench.config import run_config
from vadbench.datasets import convert_source
from vadbench.datasets.synthetic import SyntheticSpec, generate
from vadbench.host import retain_freed_memory
from vadbench.models import build_model

REPO = Path(__file__).resolve().parents[1]
PED2 = REPO.parent / "shared/datasets/ped2.tar"


def source_frames(tmp: Path) -> tuple[Path, str]:
    """A small canonical frame folder and a description of where it came from."""
    if PED2.exists():
        root = tmp / "ped2src"
        with tarfile.open(PED2) as tar:
            wanted = [
                m
                for m in tar.getmembers()
                if m.name.startswith(
                    ("ped2/training/frames/01/", "ped2/training/frames/02/", "ped2/testing/frames/01/")
                )
                or m.name == "ped2/ped2.mat"
            ]
            tar.extractall(root, members=wanted, filter="data")
        # keep the ground truth consistent with the one test video extracted
        import scipy.io

        gt = scipy.io.loadmat(root / "ped2/ped2.mat")["gt"][:, :1]
        scipy.io.savemat(root / "ped2/ped2.mat", {"gt": gt})
        what = "UCSD Ped2 training videos 01-02 (360x240 JPEG)"
    else:
        root = generate(
            tmp / "toysrc", SyntheticSpec(frame_size=240, train_videos=2, test_videos=1, frames_per_video=120)
        )
        what = "synthetic scene at 240x240 JPEG (ped2.tar not found)"
    convert_source(root, "liu", tmp / "frames")
    return tmp / "frames", what


def naive_clip(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    frames = []
    for p in paths:
        with Image.open(p) as im:
            frames.append(np.asarray(im.convert("L").resize((size[1], size[0]), Image.BICUBIC), dtype=np.float32))
    return np.stack(frames)[None] / 127.5 - 1.0  # (1, T, H, W)


def loader_rate(loader: ClipLoader, clips_wanted: int, device: str | None = None) -> float:
    """Clips per second over whole shuffled epochs until ``clips_wanted`` clips; ``device``: each
    batch is copied there (a host loader feeding a GPU), and the clock stops once it has them all."""
    t0, seen = time.perf_counter(), 0
    for epoch in range(1000):
        for _, clips in loader.batches(epoch, shuffle_seed=0):
            if device is not None:
                clips = clips.to(device, non_blocking=True)
            seen += len(clips)
        if seen >= clips_wanted:
            break
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def time_loaders(
    frames: Path, arrays: Path, index_path: Path, size, batch: int, n_batches: int
) -> tuple[dict[str, float], float]:
    """Clips/s of each loader, by row label, and of the naive loader."""
    index = load_index(index_path, "train")
    wanted = n_batches * batch * 20
    rates = {"vadbench memory-mapped arrays": loader_rate(ClipLoader(arrays, "train", index, batch), wanted)}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        if device == "cuda":
            rates["memory-mapped + copy to cuda"] = loader_rate(
                ClipLoader(arrays, "train", index, batch), wanted, "cuda"
            )
        t0 = time.perf_counter()
        resident = DeviceClipLoader(arrays, "train", index, batch, device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        print(f"  (copying the split to {device} took {time.perf_counter() - t0:.2f} s, once per job)")
        rates[f"device-resident on {device}"] = loader_rate(resident, wanted * (10 if device == "cuda" else 1))
    rng = np.random.default_rng(0)
    t0, seen = time.perf_counter(), 0
    for _ in range(n_batches):
        picks = rng.integers(0, len(index), batch)
        clips = []
        for i in picks:
            video = frames / "train" / index.videos[index.video_ids[i]]
            paths = sorted(video.iterdir())[index.starts[i] : index.starts[i] + index.clip_length]
            clips.append(naive_clip(paths, size))
        torch.from_numpy(np.stack(clips))
        seen += batch
    naive = seen / (time.perf_counter() - t0)
    return rates, naive


def matmul_peak(threads: int, n: int = 2048, reps: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of one square matmul in ``dtype``: the ceiling that training in that precision is held to."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def training_rate(
    model_name: str,
    params: dict,
    size,
    clip_length: int,
    batch: int,
    threads: int,
    steps: int,
    amp: str,
    memory_format: str = "contiguous",
):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(model_name, **params)
    x = torch.rand(batch, params["in_channels"], clip_length, *size) * 2 - 1
    if memory_format == "channels_last_3d":  # as the preset key does in training
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    with FlopCounterMode(display=False) as counter:
        model(x)
    forward_flops = counter.get_total_flops()
    for step in range(steps + 1):
        if step == 1:
            t0 = time.perf_counter()
        if amp == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss, _ = model.training_loss(x)
        else:
            loss, _ = model.training_loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    clips_per_s = steps * batch / seconds
    gflops = 3 * forward_flops * steps / seconds / 1e9  # backward ~ 2x forward
    return clips_per_s, gflops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["ae", "memae", "mnad_recon", "mnad_pred"],
        help="variants to time at the preset's scale (each with its own preset mapping)",
    )
    parser.add_argument("--skip-loader", action="store_true")
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    preset = config["presets"][args.preset]
    size, t, batch = tuple(preset["frame_size"]), preset["clip_length"], preset["batch_size"]
    kept = retain_freed_memory()  # as every job does (VADBENCH_RETAIN_FREED_MEMORY=0: malloc as it is)
    print(
        f"torch {torch.__version__}, {args.threads} threads, preset {args.preset}: {size[0]}x{size[1]}x{preset['channels']}, "
        f"{t}-frame clips, batch {batch}, widths {preset['widths']}; freed memory {'kept' if kept else 'malloc as it is'}"
    )
    if not args.skip_loader:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            frames, what = source_frames(tmp)
            decode_videos(frames, tmp / "arrays", size, 1)
            build_index(tmp / "arrays", t, 1, 1, tmp / "clips.npz")
            print(f"\nloader ({what})")
            rates, naive = time_loaders(frames, tmp / "arrays", tmp / "clips.npz", size, batch, n_batches=6)
        mapped = rates["vadbench memory-mapped arrays"]
        for label, rate in rates.items():
            print(
                f"  {label:30s}: {rate:10.1f} clips/s = {rate / naive:7.1f}x naive = {rate / mapped:5.2f}x memory-mapped"
            )
        print(f"  {'naive JPEG decode per sample':30s}: {naive:10.1f} clips/s")
    peaks = {"none": matmul_peak(args.threads), "bf16": matmul_peak(args.threads, dtype=torch.bfloat16)}
    print(f"\nfp32 matmul peak (2048x2048, {args.threads} threads): {peaks['none']:.1f} GFLOP/s")
    print(f"bf16 matmul peak (2048x2048, {args.threads} threads): {peaks['bf16']:.1f} GFLOP/s")
    config["datasets"]["toy"]["preset"] = args.preset
    for variant in args.variants:
        run = run_config(config, "toy", variant, 0)
        vp = run["preset"]
        vsize, vt, vbatch = tuple(vp["frame_size"]), vp["clip_length"], vp["batch_size"]
        formats = ("contiguous", "channels_last_3d") if run["model"] in ("ae", "memae") else ("contiguous",)
        for amp in ("none", "bf16"):
            for memory_format in formats:
                rate, gflops = training_rate(
                    run["model"], run["model_params"], vsize, vt, vbatch, args.threads, args.steps, amp, memory_format
                )
                print(
                    f"  train {variant:10s} ({run['preset_name']}, {vsize[0]}x{vsize[1]}, {vt} frames, batch {vbatch}) "
                    f"amp={amp:5s} {memory_format:16s}: {rate:7.1f} clips/s, {gflops:7.1f} GFLOP/s = "
                    f"{gflops / peaks[amp]:5.2f} x {'fp32' if amp == 'none' else 'bf16'} peak"
                )


if __name__ == "__main__":
    main()
