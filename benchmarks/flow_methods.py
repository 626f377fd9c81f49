"""Benchmark: speed and accuracy of every optical-flow method of :mod:`vadbench.flow`, and the
``flow`` rule on the real UCSD Ped2. Prints tables; asserts nothing.

    .venv/bin/python benchmarks/flow_methods.py [--quick] [--threads 2] [--skip-ped2]

Accuracy: a synthetic 256x256 scene whose true motion is known per pixel: a static textured
background with sensor noise, and textured rectangles sliding over it at sub-pixel velocities
(occluding it, as pedestrians do). Endpoint error (EPE) is the distance in pixels between the
estimated and the true flow, averaged over all pixels, over the moving ones (the rectangles in
the first frame of a pair) and over the static ones. Speed: gray uint8 pairs per second with
``cv2.setNumThreads(threads)``, the estimator built once as ``flow_videos`` does (scikit-image's
methods run single-threaded numpy whatever ``threads`` says).

Ped2 (when ``../shared/datasets/ped2.tar`` exists and unless ``--skip-ped2``): every frame decoded
as the ``resize`` rule does (Pillow gray, bicubic, 256x256), then ``flow_videos`` with ``dis``.
"""

from __future__ import annotations

import argparse
import datetime
import tarfile
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from vadbench.arrays import decode_frame, save_array
from vadbench.fileio import write_json
from vadbench.flow import METHODS, flow_videos, make_estimator

REPO = Path(__file__).resolve().parents[1]
PED2 = REPO.parent / "shared/datasets/ped2.tar"
PED2_PAIRS = 4532  # 16 training + 12 test videos, 4,560 frames
SIZE = 256
# (top, left, height, width) in the first frame, (vy, vx) in pixels per frame
OBJECTS = [((40, 30, 60, 40), (0.0, 1.5)), ((150, 180, 50, 30), (2.25, -0.75)), ((90, 120, 70, 50), (-1.2, 3.3))]


def texture(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    noise = gaussian_filter(rng.standard_normal(shape), sigma)
    return 40 + 175 * (noise - noise.min()) / (noise.max() - noise.min())


def synthetic_scene(pairs: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """``pairs`` + 1 gray uint8 frames, the true flow (H, W, 2) of each pair and its moving mask."""
    rng = np.random.default_rng(seed)
    background = texture((SIZE, SIZE), 2.0, rng)
    patches = [texture((h, w), 1.5, rng) for (_, _, h, w), _ in OBJECTS]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    frames, flows, masks = [], [], []
    for t in range(pairs + 1):
        frame, flow = background.copy(), np.zeros((SIZE, SIZE, 2), np.float32)
        moving = np.zeros((SIZE, SIZE), bool)
        for ((top, left, h, w), (vy, vx)), patch in zip(OBJECTS, patches):
            ly, lx = yy - (top + vy * t), xx - (left + vx * t)  # object coordinates, sub-pixel
            inside = (ly >= 0) & (ly <= h - 1) & (lx >= 0) & (lx <= w - 1)
            frame[inside] = map_coordinates(patch, [ly[inside], lx[inside]], order=3)
            flow[inside], moving[inside] = (vx, vy), True
        noisy = frame + rng.normal(0, 2.0, frame.shape)
        frames.append(np.clip(noisy, 0, 255).round().astype(np.uint8))
        flows.append(flow)
        masks.append(moving)
    return frames, flows[:-1], masks[:-1]


def measure(
    method: str, frames: list[np.ndarray], truth: list[np.ndarray], masks: list[np.ndarray], min_seconds: float
) -> dict[str, float]:
    """EPE over the scene's pairs, and pairs/s over passes repeated for at least ``min_seconds``."""
    estimate = make_estimator(method)
    estimate(frames[0], frames[1])  # warm-up: allocations, thread pool
    errors, done, start = [], 0, time.perf_counter()
    while not errors or time.perf_counter() - start < min_seconds:
        for t in range(len(truth)):
            flow = estimate(frames[t], frames[t + 1])
            if len(errors) < len(truth):
                errors.append(np.hypot(*(flow - truth[t]).transpose(2, 0, 1)))
        done += len(truth)
    rate = done / (time.perf_counter() - start)
    epe, moving = np.stack(errors), np.stack(masks)
    return {
        "pairs_s": rate,
        "epe": float(epe.mean()),
        "epe_moving": float(epe[moving].mean()),
        "epe_static": float(epe[~moving].mean()),
    }


def hms(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


def print_methods(results: dict[str, dict[str, float]], threads: int) -> None:
    fastest = max(r["pairs_s"] for r in results.values())
    print(f"\n256x256 gray, {threads} threads; EPE in pixels; Ped2 = {PED2_PAIRS:,} pairs")
    print("| method | pairs/s | slower than fastest | EPE all | EPE moving | EPE static | Ped2 projected |")
    print("|---|---|---|---|---|---|---|")
    for method, r in results.items():
        print(
            f"| {method} | {r['pairs_s']:,.1f} | {fastest / r['pairs_s']:,.1f}x | {r['epe']:.3f} | "
            f"{r['epe_moving']:.3f} | {r['epe_static']:.3f} | {hms(PED2_PAIRS / r['pairs_s'])} |"
        )


def ped2_arrays(tmp: Path, quick: bool) -> Path:
    """Every Ped2 video (``--quick``: two of each split) as 256x256 gray arrays with a manifest."""
    with tarfile.open(PED2) as tar:
        members = [m for m in tar.getmembers() if "/frames/" in m.name]
        tar.extractall(tmp / "src", members=members, filter="data")
    arrays, splits, checksums = tmp / "arrays", {}, {}
    for split, folder in (("train", "training"), ("test", "testing")):
        (arrays / split).mkdir(parents=True)
        videos = sorted(p for p in (tmp / "src/ped2" / folder / "frames").iterdir() if p.is_dir())
        splits[split], checksums[split] = {}, {}
        for video in videos[:2] if quick else videos:
            frames = np.stack([decode_frame(p, (SIZE, SIZE), 1) for p in sorted(video.glob("*.jpg"))])
            splits[split][video.name] = len(frames)
            checksums[split][video.name] = save_array(arrays / split / f"{video.name}.npy", frames)
    write_json(
        arrays / "manifest.json",
        {"size": [SIZE, SIZE], "channels": 1, "splits": splits, "arrays": checksums, "sources": None},
    )
    return arrays


def run_ped2(threads: int, quick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        arrays = ped2_arrays(Path(tmp), quick)
        decoded = time.perf_counter() - start
        start = time.perf_counter()
        info = flow_videos(arrays, Path(tmp) / "flow", method="dis", threads=threads)
        seconds = time.perf_counter() - start
    pairs = sum(sum(videos.values()) for videos in info["splits"].values())
    print(
        f"\nPed2{' (2 videos per split)' if quick else ''}: decode+resize {decoded:.1f} s; flow_videos dis, "
        f"{threads} threads: {pairs:,} pairs in {seconds:.1f} s = {pairs / seconds:,.1f} pairs/s"
    )
    print("| split | max abs dx | max abs dy | 99.9th pct magnitude |")
    print("|---|---|---|---|")
    for split, m in info["magnitude"].items():
        print(f"| {split} | {m['max_abs_dx']:.2f} | {m['max_abs_dy']:.2f} | {m['p99_9_magnitude']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 pairs per method, 1 s timing, 2 Ped2 videos per split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-ped2", action="store_true")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    frames, truth, masks = synthetic_scene(8 if args.quick else 30)
    moving = np.stack(masks).mean()
    print(
        f"synthetic scene: {len(truth)} pairs, {len(OBJECTS)} moving rectangles ({moving:.1%} of pixels), "
        f"speeds {', '.join(f'{np.hypot(*v):.2f}' for _, v in OBJECTS)} px/frame"
    )
    results = {m: measure(m, frames, truth, masks, 1.0 if args.quick else 5.0) for m in METHODS}
    print_methods(results, args.threads)
    if PED2.exists() and not args.skip_ped2:
        run_ped2(args.threads, args.quick)
    elif not args.skip_ped2:
        print(f"\n{PED2} not found: Ped2 timing skipped")


if __name__ == "__main__":
    main()
