#!/usr/bin/env bash
# Issue 14's GPU figures in one command, for a GPU machine lent for a few minutes (the workplace's
# device tool sends the checkout only and starts bare: its python3 has PyTorch but no MLflow or
# Snakemake, so this runs the package from src/ without them). Here, first:
#
#   .venv/bin/python benchmarks/gpu_ped2.py pack --frames resources/ped2/frames --to gpu_carry/ped2   # git-ignored
#
# then run `bash benchmarks/gpu_session.sh` there with gpu_carry carried (about 9 minutes; the
# outputs land in $OUT). The two steps are bounded so that the whole fits a 10-minute call.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-results/gpu_session}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src
{ nvidia-smi -L; python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } 2>&1 |
    tee "$out/device.txt"
timeout 170 python3 benchmarks/gpu_paper.py --steps 20 2>&1 | tee "$out/gpu_paper.txt"
timeout 380 python3 benchmarks/gpu_ped2.py train --frames gpu_carry/ped2 --out "$out" --minutes 6 2>&1 |
    tee "$out/gpu_ped2.txt"
