"""Benchmark (issue 14): MemAE's 1-channel end layers, the part of a CPU training step furthest
from the matmul peak. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/end_layers.py [--preset cpu] [--threads 2] [--steps 5] [--rounds 4]

The first layer (Conv3d 1 -> w0, stride (1,2,2)) and the last (ConvTranspose3d w0 -> 1, stride
(1,2,2), output padding (0,1,1)) hold about 7% of the FLOPs but a quarter of the convolution time
(``compile_and_gemm.py``). Two questions, at the preset's scale, in fp32 and bf16 autocast:

1. Per layer, forward + backward (weight and bias grads; input grad for the last layer only, as
   in training), is oneDNN beaten by an equivalent formulation? ``subpixel``: the transposed
   convolution as a Conv3d with (3,2,2) kernels into 4 phase channels and a pixel shuffle, the
   first layer as a Conv3d on the space-to-depth input; ``fold``: one matmul of every input cell
   by the 27 taps, summed into place by ``F.fold`` (last layer), ``F.unfold`` columns times the
   weight (first layer). Each is checked against ``nn.ConvTranspose3d`` / ``nn.Conv3d``.
2. Whole training steps (``vadbench.training.training_step``) in the contiguous layout, in
   ``channels_last_3d`` throughout (the preset key), and in ``channels_last_3d`` with the
   1-channel clips and first-layer weight left contiguous.

Every row starts from the same weights and batch; rows are timed in turn for ``--rounds`` rounds
(the order rotated) and the best round is reported, so a load from other processes falls on all
rows alike; ``/proc/loadavg`` is printed before and after.
"""

from __future__ import annotations

import argparse
import copy
import time
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
import yaml
from compile_and_gemm import CL, CPU, FORMATS, REPO, loadavg  # this folder is on sys.path when run
from torch import nn

from vadbench.config import run_config
from vadbench.models import build_model
from vadbench.training import _autocast, make_optimizers, training_step


def subpixel_deconv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """ConvTranspose3d(k 3, stride (1,2,2), padding 1, output padding (0,1,1)) of (B, I, T, h, w)
    as a Conv3d into 4 phase channels per output channel, then a pixel shuffle: (B, C, T, 2h, 2w).

    Output row 2m takes tap 1 of input row m; row 2m+1 taps 2 and 0 of rows m and m+1 (a zero
    tap pads phase 0); in time the transposed convolution is a convolution with the flipped kernel.
    """
    cin, cout = weight.shape[:2]
    w = F.pad(weight.flip(2), (0, 1, 0, 1))  # index 3 of kh, kw: the zero tap
    idx = torch.tensor([[1, 3], [2, 0]], device=weight.device)
    v = w[:, :, :, idx][:, :, :, :, :, idx]  # (I, C, 3, phase h, tap h, phase w, tap w)
    v = v.permute(1, 3, 5, 0, 2, 4, 6).reshape(cout * 4, cin, 3, 2, 2)
    b4 = None if bias is None else bias.repeat_interleave(4)
    y = F.conv3d(F.pad(x, (0, 1, 0, 1)), v, b4, padding=(1, 0, 0))
    b, _, t, h, wd = y.shape
    return y.view(b, cout, 2, 2, t, h, wd).permute(0, 1, 4, 5, 2, 6, 3).reshape(b, cout, t, 2 * h, 2 * wd)


def space_to_depth_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Conv3d(k 3, stride (1,2,2), padding 1) of (B, C, T, H, W) as a stride-1 Conv3d with (3,2,2)
    kernels on the (B, 4C, T, H/2, W/2) space-to-depth input: output row o reads rows 2o-1, 2o,
    2o+1, i.e. phase 1 of cell o-1 and phases 0 and 1 of cell o."""
    cout, cin = weight.shape[:2]
    b, _, t, hh, ww = x.shape
    xs = x.view(b, cin, t, hh // 2, 2, ww // 2, 2).permute(0, 1, 4, 6, 2, 3, 5).reshape(b, cin * 4, t, hh // 2, ww // 2)
    wp = F.pad(weight, (1, 0, 1, 0))  # index 0 of kh, kw: the zero tap
    idx = torch.tensor([[0, 2], [1, 3]], device=weight.device)
    v = wp[:, :, :, idx][:, :, :, :, :, idx]  # (O, C, 3, phase h, tap h, phase w, tap w)
    v = v.permute(0, 1, 3, 5, 2, 4, 6).reshape(cout, cin * 4, 3, 2, 2)
    return F.conv3d(F.pad(xs, (1, 0, 1, 0)), v, bias, padding=(1, 0, 0))


def fold_deconv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The same transposed convolution as one matmul of every input cell by the 27 taps, the
    (kh, kw) taps summed into place by ``F.fold`` per time tap, the 3 time taps by shifted adds."""
    i, c = weight.shape[:2]
    b, _, t, h, w = x.shape
    z = x.permute(0, 2, 3, 4, 1) @ weight.reshape(i, c * 27)  # (B, T, h, w, C*27)
    z = z.reshape(b * t, h * w, c * 27).transpose(1, 2)
    y = F.fold(z, (2 * h, 2 * w), 3, padding=1, stride=2).view(b, t, c, 3, 2 * h, 2 * w)
    yp = F.pad(y, (0, 0, 0, 0, 0, 0, 0, 0, 1, 1))
    out = yp[:, 2:, :, 0] + yp[:, 1:-1, :, 1] + yp[:, :-2, :, 2]
    if bias is not None:
        out = out + bias.view(1, 1, c, 1, 1)
    return out.transpose(1, 2)


def unfold_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The same strided Conv3d as ``F.unfold`` columns (3 time taps stacked) times the weight."""
    o, c = weight.shape[:2]
    b, _, t, hh, ww = x.shape
    h, w = hh // 2, ww // 2
    xp = F.pad(x, (0, 0, 0, 0, 1, 1)).transpose(1, 2).reshape(b * (t + 2), c, hh, ww)
    u = F.unfold(xp, 3, padding=1, stride=2).view(b, t + 2, c, 9, h * w)
    cols = torch.stack([u[:, k : k + t] for k in range(3)], dim=3)  # (B, T, C, 3, 9, hw)
    y = cols.permute(0, 1, 5, 2, 3, 4).reshape(b, t, h * w, c * 27) @ weight.reshape(o, c * 27).t()
    if bias is not None:
        y = y + bias
    return y.view(b, t, h, w, o).permute(0, 4, 1, 2, 3)


def time_rows(rows: dict[str, Callable[[], None]], steps: int, rounds: int) -> dict[str, float]:
    """Best seconds per call of each row over ``rounds`` rotated rounds of ``steps`` calls."""
    for fn in rows.values():
        fn()  # warm-up: oneDNN primitive creation
    best: dict[str, float] = {}
    names = list(rows)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            for _ in range(steps):
                rows[name]()
            best[name] = min(best.get(name, float("inf")), (time.perf_counter() - t0) / steps)
    return best


def layer_part(args, preset: dict, w0: int) -> None:
    b, t = preset["batch_size"], preset["clip_length"]
    hh, ww = preset["frame_size"]
    c = preset["channels"]
    torch.manual_seed(0)
    last = nn.ConvTranspose3d(w0, c, 3, stride=(1, 2, 2), padding=1, output_padding=(0, 1, 1))
    first = nn.Conv3d(c, w0, 3, stride=(1, 2, 2), padding=1)
    x_last = torch.randn(b, w0, t, hh // 2, ww // 2)
    x_first = torch.rand(b, c, t, hh, ww) * 2 - 1
    forms = {
        "last": (last, x_last, {"oneDNN": None, "subpixel": subpixel_deconv, "fold": fold_deconv}),
        "first": (first, x_first, {"oneDNN": None, "subpixel": space_to_depth_conv, "fold": unfold_conv}),
    }
    print(f"\n1. end layers, forward + backward, batch {b}, {t}x{hh}x{ww}, width {w0} (load {loadavg()})")
    for layer_name, (layer, x, fns) in forms.items():
        for name, fn in fns.items():  # equivalence in fp32
            if fn is None:
                continue
            xi = x.clone().requires_grad_(layer_name == "last")
            params = [layer.weight, layer.bias] + ([xi] if xi.requires_grad else [])
            ref = torch.autograd.grad(layer(xi).square().sum(), params)
            got = torch.autograd.grad(fn(xi, layer.weight, layer.bias).square().sum(), params)
            err = max(((a - g).abs().max() / a.abs().max()).item() for a, g in zip(ref, got))
            print(f"  {layer_name:5s} {name:9s} equals oneDNN within {err:.1e} (largest relative gradient difference)")
        for amp in args.amps:
            rows: dict[str, Callable[[], None]] = {}
            for fmt_name, fmt in FORMATS.items():
                mod = copy.deepcopy(layer).to(memory_format=fmt)
                xf = x.contiguous(memory_format=fmt).requires_grad_(layer_name == "last")
                for name, fn in fns.items():
                    rows[f"{name} {fmt_name}"] = _layer_step(mod, xf, fn, amp)
            best = time_rows(rows, args.steps * 2, args.rounds)
            ref = best["oneDNN contiguous"]
            cells = ", ".join(f"{k} {v * 1e3:.1f} ms ({ref / v:.2f}x)" for k, v in best.items())
            print(f"  {layer_name:5s} amp {amp:4s}: {cells}")


def _layer_step(mod: nn.Module, x: torch.Tensor, fn, amp: str) -> Callable[[], None]:
    def step() -> None:
        with _autocast(CPU, amp)():
            y = mod(x) if fn is None else fn(x, mod.weight, mod.bias)
        y.float().square().mean().backward()

    return step


def step_part(args, config: dict) -> None:
    print(f"\n2. MemAE training steps (load {loadavg()})")
    run = run_config(config, "toy", "memae", 0)
    preset = run["preset"]
    b, t, (hh, ww), c = preset["batch_size"], preset["clip_length"], preset["frame_size"], preset["channels"]
    torch.manual_seed(1)
    batch = torch.rand(b, c, t, hh, ww) * 2 - 1
    for amp in args.amps:
        rows = {}
        for layout in ("contiguous", "channels_last_3d", "channels_last_3d, 1-channel input contiguous"):
            torch.manual_seed(0)
            model = build_model(run["model"], **run["model_params"])
            x = batch
            if layout != "contiguous":
                model = model.to(memory_format=CL)
                if layout == "channels_last_3d":
                    x = batch.contiguous(memory_format=CL)
                else:
                    first = model.encoder[0][0]
                    first.weight.data = first.weight.data.contiguous()
            optimizers = make_optimizers(model, preset)
            rows[layout] = partial(training_step, model, x, optimizers, _autocast(CPU, amp))
        best = time_rows(rows, args.steps, args.rounds)
        ref = best["contiguous"]
        for k, v in best.items():
            print(f"  amp {amp:4s} {k:45s}: {b / v:6.1f} clips/s = {ref / v:.2f}x contiguous")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--amps", nargs="+", default=["none", "bf16"])
    parser.add_argument("--skip-layers", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    preset = config["presets"][args.preset]
    config["datasets"]["toy"]["preset"] = args.preset
    print(f"torch {torch.__version__}, {args.threads} threads, preset {args.preset}")
    if not args.skip_layers:
        layer_part(args, preset, preset["widths"][0])
    step_part(args, config)
    print(f"\n(load {loadavg()})")


if __name__ == "__main__":
    main()
