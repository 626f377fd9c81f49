"""Shared fixtures: a copy of the workflow in a temporary directory and a tiny config overlay."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# Small enough that the whole DAG runs in well under a minute on 2 cores, big enough that a
# trained model separates the anomalies (64x64 would be slower, 32x32 keeps the same shapes).
TINY_CONFIG = """
seeds: [0, 1]
datasets:
  toy:
    source: synthetic
    layout: liu
    preset: tiny
    synthetic: {frame_size: 32, train_videos: 3, test_videos: 3, frames_per_video: 48, seed: 0}
presets:
  tiny:
    frame_size: [32, 32]
    channels: 1
    clip_length: 16
    train_stride: 4
    test_stride: 1
    widths: [4, 8, 8, 8]
    epochs: 2
    batch_size: 8
    optimizer: adam
    lr: 0.001
    amp: none
  tiny_mnad_recon: &tiny_mnad
    frame_size: [32, 32]
    channels: 1
    clip_length: 1
    train_stride: 1
    test_stride: 1
    widths: [4, 8, 8, 16]
    epochs: 2
    batch_size: 4
    optimizer: adam
    lr: 0.001
    lr_schedule: cosine
    amp: none
  tiny_mnad_pred:
    <<: *tiny_mnad
    clip_length: 5
  tiny_ammc:
    frame_size: [32, 32]
    channels: 1
    clip_length: 5
    train_stride: 2
    test_stride: 1
    widths: [4, 8, 8, 8]
    discriminator_widths: [8, 8]
    epochs: 1
    batch_size: 8
    stage1: {epochs: 2, batch_size: 8}
    optimizer: adam
    lr: 0.001
    amp: none
    flow: {method: dis, normalisation: clip, max_displacement: 2.0}
variants:
  mnad_recon: {presets: {tiny: tiny_mnad_recon}}
  mnad_pred: {presets: {tiny: tiny_mnad_pred}}
  ammc: {presets: {tiny: tiny_ammc}, params: {n_embed: 16, embed_dim: 8}}
  ammc_appearance: {presets: {tiny: tiny_ammc}}
summary:
  datasets: [toy]
  variants: [ae, memae]
localization: {enabled: false}
"""


# where: maps, boxes, pixel metrics, MP4s and viewer pages, and the model logged to MLflow for detect
LOCALIZED_CONFIG = TINY_CONFIG.replace(
    "localization: {enabled: false}", "localization: {enabled: true, videos: true, fps: 10}"
)

# one seed, more clips per epoch and more epochs than the tiny preset: time to interrupt training
SLOW_CONFIG = (
    TINY_CONFIG.replace("seeds: [0, 1]", "seeds: [0]")
    .replace("train_stride: 4", "train_stride: 1")
    .replace("epochs: 2", "epochs: 6")
)
SLOW_TARGET = "results/toy_memae_auc.json"


def _merge(base: dict, overlay: dict) -> dict:
    """``overlay`` merged into a copy of ``base`` key by key, as Snakemake merges a ``--configfile``."""
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def tiny_config() -> dict:
    """config/config.yaml with the tiny overlay merged in."""
    import yaml

    return _merge(yaml.safe_load((REPO / "config/config.yaml").read_text()), yaml.safe_load(TINY_CONFIG))


def prepare_tiny_data(root: Path, clip_length: int = 16, train_stride: int = 4, seed: int = 0) -> Path:
    """The tiny synthetic dataset (rendered from ``seed``) converted, decoded at 32x32 gray and
    indexed under ``root``: ``root/arrays`` and ``root/clips.npz``, as the rules write them."""
    import yaml

    from vadbench.arrays import decode_videos
    from vadbench.clips import build_index
    from vadbench.datasets import convert_source
    from vadbench.datasets.synthetic import SyntheticSpec, generate

    spec = yaml.safe_load(TINY_CONFIG)["datasets"]["toy"]["synthetic"]
    generate(root / "source", SyntheticSpec(**{**spec, "seed": seed}))
    convert_source(root / "source", "liu", root / "frames")
    decode_videos(root / "frames", root / "arrays", (32, 32), 1)
    build_index(root / "arrays", clip_length, train_stride, 1, root / "clips.npz")
    return root


def finished_workflow(root: Path, config: str, *targets: str) -> Path:
    """A copy of the workflow under ``root`` with ``config`` as ``tiny.yaml``, run to ``targets``."""
    workdir = copy_workflow(root)
    (workdir / "tiny.yaml").write_text(config)
    run_snakemake(workdir, *targets)
    return workdir


def copy_workflow(dest: Path) -> Path:
    """Copy what a clone holds for running the workflow (not results) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "profiles", "envs"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def run_snakemake(
    workdir: Path, *args: str, configfile: str | None = "tiny.yaml", check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the real Snakemake CLI in ``workdir`` (with ``--configfile`` last: it takes several values)."""
    extra = ["--configfile", configfile] if configfile else []
    proc = subprocess.run(
        [*SNAKEMAKE, "--cores", "2", *args, *extra],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    """A fresh copy of the workflow plus ``tiny.yaml`` in a temporary directory."""
    copy_workflow(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG)
    return tmp_path


def slow_workdir(root: Path) -> Path:
    """A copy of the workflow with the slow overlay as ``tiny.yaml``."""
    copy_workflow(root)
    (root / "tiny.yaml").write_text(SLOW_CONFIG)
    return root


@pytest.fixture(scope="session")
def slow_reference(tmp_path_factory) -> Path:
    """The slow overlay's target run once, never interrupted: what every interrupted run must match."""
    root = slow_workdir(tmp_path_factory.mktemp("uninterrupted"))
    run_snakemake(root, SLOW_TARGET)
    return root
