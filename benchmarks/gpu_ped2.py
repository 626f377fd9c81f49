"""Benchmark (issue 14): one MemAE (or AE) `paper` model trained on the real Ped2 on a GPU lent for
a few minutes, with its epoch seconds and test AUC. Two steps, because such a machine gets the
checkout only (64 MiB at most) and has no MLflow or Snakemake:

    # here, once: Ped2's canonical frames (the `frames` rule's output) at 256x256 gray, JPEG q90,
    # 54 MiB, into gpu_carry/ (git-ignored)
    .venv/bin/python benchmarks/gpu_ped2.py pack --frames resources/ped2/frames --to gpu_carry/ped2

    # there (the device tool's run, carry ["gpu_carry"]; the checkout is not installed there, so
    # src/ goes on the path, as benchmarks/gpu_session.sh does): decode, index, train, score, AUC
    PYTHONPATH=src python3 benchmarks/gpu_ped2.py train --frames gpu_carry/ped2 --out $OUT --minutes 6

``train`` runs the package as the DAG's jobs do (``decode_videos``, ``build_index``,
``train_model``, ``score_videos``, ``evaluate``), without MLflow. It trains one epoch, measures
it, and extends the run (``train_model``'s own "extend" resume) to the preset's epochs, or to as
many as fit in ``--minutes``, saying which; the JSON in ``--out`` has every epoch's seconds and
clips/s, the micro AUC and what ran where.

Not the DAG's data to the bit: the frames are resized here with the `resize` rule's own filter and
then stored as JPEG (quality 90, so that Ped2 travels in 54 MiB), and their pixels differ from the
arrays a local run decodes from the original 360x240 JPEGs by 1.0 grey level on average (99th
percentile 5; test video 02, 60 frames).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from vadbench.arrays import decode_frame, decode_videos
from vadbench.clips import build_index, load_index
from vadbench.datasets.canonical import canonical_frames
from vadbench.fileio import read_json

REPO = Path(__file__).resolve().parents[1]


def pack(frames: Path, to: Path, size: int, quality: int) -> None:
    """Canonical frames at ``size`` x ``size`` gray (the `resize` rule's filter), JPEG ``quality``,
    with the labels and the manifest, in the canonical layout ``decode_videos`` reads."""
    from PIL import Image

    manifest = read_json(frames / "manifest.json")
    if to.exists():
        shutil.rmtree(to)
    for split, videos in manifest["splits"].items():
        for video in videos:
            out = to / split / video
            out.mkdir(parents=True)
            for path in canonical_frames(frames, split, video):
                pixels = decode_frame(path, (size, size), 1)[..., 0]
                Image.fromarray(pixels).save(out / path.name, quality=quality)
    for name in ("manifest.json", "labels.npz"):
        shutil.copy2(frames / name, to / name)
    total = sum(p.stat().st_size for p in to.rglob("*") if p.is_file())
    print(f"{to}: {sum(len(v) for v in manifest['splits'].values())} videos, {total / 2**20:.1f} MiB")


def train(args: argparse.Namespace) -> None:
    import torch
    import yaml

    from vadbench.config import protocol_of, run_config
    from vadbench.metrics import evaluate
    from vadbench.scorefiles import load_scores
    from vadbench.scoring import score_videos
    from vadbench.training import train_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")  # the jobs' progress lines
    began = time.monotonic()
    out, work = Path(args.out), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["datasets"]["ped2"]["preset"] = args.preset
    run = run_config(config, "ped2", args.variant, args.seed)
    if args.amp:
        run["preset"]["amp"] = args.amp
    preset = run["preset"]
    size = tuple(preset["frame_size"])
    arrays, index = work / "arrays", work / "clips.npz"
    t0 = time.monotonic()
    decode_videos(args.frames, arrays, size, preset["channels"])
    build_index(arrays, preset["clip_length"], preset["train_stride"], preset["test_stride"], index)
    data_s = time.monotonic() - t0
    model, checkpoint = work / "model.pt", work / "checkpoint.pt"
    wanted = min(preset["epochs"], args.epochs or preset["epochs"])
    t0 = time.monotonic()
    first = train_model(
        {**run, "preset": {**preset, "epochs": 1}}, arrays, index, model, checkpoint, threads=args.threads
    )
    first_s = time.monotonic() - t0  # start-up, cuDNN's autotuning and one epoch
    epoch_s = len(load_index(index, "train")) / first["history"][0]["clips_per_s"]
    left = args.minutes * 60 - (time.monotonic() - began) - 60  # a minute for scoring
    epochs = max(1, min(wanted, 1 + math.floor(left / epoch_s)))
    print(
        f"first epoch {first_s:.1f} s (with start-up); training {epochs} epochs of the {wanted} asked for "
        f"(the preset has {preset['epochs']})",
        flush=True,
    )
    t0 = time.monotonic()
    trained = train_model(
        {**run, "preset": {**preset, "epochs": epochs}}, arrays, index, model, checkpoint, threads=args.threads
    )
    rest_s = time.monotonic() - t0
    scores = work / "scores.npz"
    protocol = protocol_of(config, "ped2", args.variant)
    t0 = time.monotonic()
    score_videos(
        model, arrays, index, Path(args.frames) / "labels.npz", protocol, scores, batch_size=64, threads=args.threads
    )
    score_s = time.monotonic() - t0
    saved = load_scores(scores)
    metrics = evaluate(saved["raw"], saved["label"], saved["protocol"])
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    result = {
        "variant": args.variant,
        "seed": args.seed,
        "preset": args.preset,
        "amp": trained["amp"],
        "epochs": epochs,
        "preset_epochs": preset["epochs"],
        "device": device,
        "torch": torch.__version__,
        "seconds": {"data": data_s, "first_epoch_with_startup": first_s, "other_epochs": rest_s, "score": score_s},
        "epoch_clips_per_s": [h["clips_per_s"] for h in trained["history"]],
        "loss": [h["loss"] for h in trained["history"]],
        "micro_auc": metrics["micro_auc"],
        "macro_auc": metrics["macro_auc"],
        "micro_auc_raw": metrics["micro_auc_raw"],
    }
    out.mkdir(parents=True, exist_ok=True)
    name = f"ped2_{args.variant}_{args.preset}_seed{args.seed}.json"
    (out / name).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("loss", "epoch_clips_per_s")}, indent=2))
    print(f"clips/s per epoch: {', '.join(f'{c:.0f}' for c in result['epoch_clips_per_s'])}")
    print(f"mean of the epochs after the first: {np.mean(result['epoch_clips_per_s'][1:] or [np.nan]):.0f} clips/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="here: canonical frames -> small gray JPEGs to carry")
    p.add_argument("--frames", type=Path, required=True, help="the frames rule's output, e.g. resources/ped2/frames")
    p.add_argument("--to", type=Path, required=True)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--quality", type=int, default=90, help="90: Ped2 in 54 MiB, under the 64 MiB a device call carries")
    t = sub.add_parser("train", help="there: decode, index, train, score, AUC")
    t.add_argument("--frames", type=Path, required=True, help="a folder made by pack")
    t.add_argument("--out", required=True)
    t.add_argument("--work", default="/tmp/vadbench_gpu")
    t.add_argument("--variant", default="memae")
    t.add_argument("--preset", default="paper")
    t.add_argument("--amp", default=None, help="override the preset's amp (none, bf16, auto)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=8, help="CPU threads of the job (the device machine has 16 cores)")
    t.add_argument("--minutes", type=float, default=6.0, help="budget for the whole command")
    t.add_argument("--epochs", type=int, default=None, help="at most this many (default: the preset's)")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.frames, args.to, args.size, args.quality)
    else:
        train(args)


if __name__ == "__main__":
    main()
