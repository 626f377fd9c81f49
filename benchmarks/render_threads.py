"""Benchmark: annotated-MP4 rendering (`vadbench.render.render_video`) with one and two x264
threads, on 180 synthetic 256x256 frames. Prints frames/s and the ratio; asserts nothing.

    .venv/bin/python benchmarks/render_threads.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

import vadbench.render as render


def main() -> None:
    t, h, w = 180, 256, 256
    rng = np.random.default_rng(0)
    base = rng.integers(40, 200, (h, w)).astype(np.uint8)
    frames = np.stack([np.roll(base, i, axis=1) for i in range(t)])
    outputs = np.stack([np.roll(base, i + 1, axis=1) for i in range(t)])
    errors = (np.abs(frames.astype(np.float32) - outputs) / 255).astype(np.float16)
    scores = np.linspace(0.1, 0.9, t)
    labels = np.zeros(t, np.int64)
    labels[60:120] = 1
    boxes = [[[10, 10, 60, 80]] if 60 <= i < 120 else [] for i in range(t)]
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (1, 2, 1, 2):  # interleaved, the first pair warms up
            render.THREADS = threads
            t0 = time.perf_counter()
            out = Path(tmp) / f"{threads}.mp4"
            render.render_video(out, frames, outputs, errors, boxes, scores, labels, vmax=1.0, title="bench")
            rates[threads] = t / (time.perf_counter() - t0)
            print(f"x264 threads {threads}: {rates[threads]:6.1f} frames/s, {out.stat().st_size / 1e3:6.0f} kB")
    print(f"1 thread / 2 threads: {rates[1] / rates[2]:.2f}x")


if __name__ == "__main__":
    main()
