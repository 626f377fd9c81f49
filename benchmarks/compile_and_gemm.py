"""Benchmark (issue 14): can ``torch.compile`` or a matmul-shaped formulation of the 3D
convolutions bring CPU training closer to the matmul peak? Prints figures; asserts nothing.

    .venv/bin/python benchmarks/compile_and_gemm.py [--steps 10] [--rounds 2] [--threads 2] [--quick]

(``--modes``, ``--amps``, ``--formats``, ``--variants``, ``--skip-training``, ``--skip-layers``
select rows, e.g. to repeat the key ones with more rounds.)

Everything at the ``cpu`` preset's scale (64x64 gray, 16-frame clips, widths 48-64-128-128,
batch 8), on synthetic random batches, with ``--threads`` threads, in one process:

1. Training steps (``vadbench.training.training_step``: ``training_loss`` + the preset's Adam) of
   MemAE and AE, fp32 and bf16 autocast, contiguous and ``channels_last_3d``, in four forms:
   ``eager``; ``compile`` (``torch.compile`` of ``training_loss``, default inductor backend, so
   forward, loss and backward are compiled; Adam stays eager); ``max-autotune`` (the same with
   ``mode="max-autotune-no-cudagraphs"``, one row); ``im2col`` (every Conv3d / ConvTranspose3d
   replaced by the im2col + one-matmul formulation of part 2, eager). Every row starts from the
   same weights (seed 0) and sees the same sequence of batches, so its losses are compared step
   by step with the eager row of the same precision and layout (``dloss``: the largest relative
   difference over all steps). The first ``--warmup`` steps are timed apart (``first s``: they
   hold the compilation; inductor's cache starts as a fresh temporary directory unless
   ``--warm-cache``, so the first compiled row compiles cold, while later rows reuse the kernels
   earlier rows built, as a second training job would with inductor's default cache); then
   ``--rounds`` rounds time ``--steps`` steps of every row in turn (the order rotated each
   round), so that a load from other processes falls on all rows alike. The best round is
   reported (the median beside it). GFLOP/s: the FLOPs of one forward
   (``FlopCounterMode``) x3 for forward + backward, as ``loader_and_training.py`` counts them.
2. Each distinct Conv3d / ConvTranspose3d layer of that MemAE, forward + backward (input grad
   except for the first layer, weight and bias grads) in four forms: oneDNN in the contiguous
   layout and in ``channels_last_3d``, ``im2col``: the windows of the padded
   channels-last input gathered with ``as_strided`` into one (B*T*H*W, 27*C_in) matrix times the
   weight viewed as (27*C_in, C_out), one matmul for the whole batch (a transposed convolution:
   input (B*T*H*W, C_in) times (C_in, 27*C_out), the columns summed back into place with
   ``index_add_``), and ``vol2col``: ATen's own im2col + GEMM convolution (``slow_conv3d``,
   ``slow_conv_transpose3d``, one GEMM per clip). Outputs and gradients are checked against the
   contiguous oneDNN layer; GFLOP/s are against the measured matmul peak of the same dtype.

``/proc/loadavg`` is printed before and after each part: other processes on the cores lower
every figure, the ratios less.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vadbench.config import run_config
from vadbench.models import build_model
from vadbench.training import _autocast, make_optimizer, training_step

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
CL = torch.channels_last_3d
FORMATS = {"contiguous": torch.contiguous_format, "channels_last_3d": CL}
MODES = ("eager", "compile", "max-autotune", "im2col")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def peak(threads: int, dtype: torch.dtype, tries: int = 3) -> float:
    """GFLOP/s of a 2048x2048 matmul in ``dtype``: the best of ``tries`` calls of
    ``loader_and_training.matmul_peak`` (one call alone varied by 25% on a quiet machine)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from loader_and_training import matmul_peak

    return max(matmul_peak(threads, dtype=dtype) for _ in range(tries))


# --- the im2col + one matmul formulation ------------------------------------------------------


def _windows(xp: torch.Tensor, out_size: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """(B, To, Ho, Wo, 3, 3, 3, C) view of the 3x3x3 windows of a contiguous padded (B, Tp, Hp, Wp, C)."""
    sb, st, sh, sw, sc = xp.stride()
    return xp.as_strided(
        (xp.shape[0], *out_size, 3, 3, 3, xp.shape[4]),
        (sb, st * stride[0], sh * stride[1], sw * stride[2], st, sh, sw, sc),
    )


@lru_cache(maxsize=64)
def _fold_index(padded: tuple[int, ...], out_size: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Row of the padded (B*Tp*Hp*Wp, C) tensor that each row of the (B*To*Ho*Wo*27, C) columns adds into."""
    positions = torch.arange(padded[0] * padded[1] * padded[2] * padded[3]).view(*padded, 1)
    return _windows(positions, out_size, stride).reshape(-1)


def col2im(cols: torch.Tensor, padded: tuple[int, ...], stride: tuple[int, int, int]) -> torch.Tensor:
    """Adjoint of the window gather: (B, To, Ho, Wo, 3, 3, 3, C) summed into a zero (B, Tp, Hp, Wp, C)."""
    c = cols.shape[-1]
    out = cols.new_zeros(padded[0] * padded[1] * padded[2] * padded[3], c)
    out.index_add_(0, _fold_index(tuple(padded[:4]), tuple(cols.shape[1:4]), stride), cols.reshape(-1, c))
    return out.view(*padded[:4], c)


class Im2Col(torch.autograd.Function):
    """Padded channels-last input -> its windows, contiguous (B, To, Ho, Wo, 3, 3, 3, C); backward col2im."""

    @staticmethod
    def forward(ctx, xp, out_size, stride):
        ctx.padded, ctx.stride = tuple(xp.shape), stride
        return _windows(xp.contiguous(), out_size, stride).contiguous()

    @staticmethod
    def backward(ctx, grad):
        return col2im(grad, ctx.padded, ctx.stride), None, None


class Col2Im(torch.autograd.Function):
    """Columns (B, Ti, Hi, Wi, 3, 3, 3, C) summed into a padded channels-last output; backward im2col."""

    @staticmethod
    def forward(ctx, cols, padded, stride):
        ctx.in_size, ctx.stride = tuple(cols.shape[1:4]), stride
        return col2im(cols, padded, stride)

    @staticmethod
    def backward(ctx, grad):
        return _windows(grad.contiguous(), ctx.in_size, ctx.stride).contiguous(), None, None


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype


def im2col_forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` (a 3x3x3, padding 1 Conv3d or ConvTranspose3d) as one matmul over the whole batch.

    The result is (B, C, T, H, W) in the ``channels_last_3d`` layout. Under autocast the input and
    weight are cast to its dtype first, as the convolution would be.
    """
    if layer.kernel_size != (3, 3, 3) or layer.padding != (1, 1, 1) or layer.dilation != (1, 1, 1) or layer.groups != 1:
        raise ValueError(f"im2col_forward handles 3x3x3 kernels with padding 1 only, not {layer}")
    dtype = _compute_dtype(x)
    x, weight = x.to(dtype), layer.weight.to(dtype)
    bias = layer.bias.to(dtype) if layer.bias is not None else None
    b, c, t, h, w = x.shape
    stride = tuple(layer.stride)
    xl = x.permute(0, 2, 3, 4, 1)  # (B, T, H, W, C): a view when x is channels_last_3d
    if isinstance(layer, nn.Conv3d):
        o = weight.shape[0]
        out_size = tuple((n + 2 - 3) // s + 1 for n, s in zip((t, h, w), stride))
        cols = Im2Col.apply(F.pad(xl, (0, 0, 1, 1, 1, 1, 1, 1)), out_size, stride)
        wmat = weight.permute(0, 2, 3, 4, 1).reshape(o, 27 * c).t()
        flat = cols.view(-1, 27 * c)
        y = torch.addmm(bias, flat, wmat) if bias is not None else flat @ wmat
        return y.view(b, *out_size, o).permute(0, 4, 1, 2, 3)
    o = weight.shape[1]  # ConvTranspose3d weight: (C_in, C_out, 3, 3, 3)
    cols = xl.reshape(-1, c) @ weight.permute(0, 2, 3, 4, 1).reshape(c, 27 * o)
    full = tuple((n - 1) * s + 3 for n, s in zip((t, h, w), stride))
    out_size = tuple((n - 1) * s - 2 + 3 + p for n, s, p in zip((t, h, w), stride, layer.output_padding))
    yp = Col2Im.apply(cols.view(b, t, h, w, 3, 3, 3, o), (b, *full, o), stride)
    y = yp[:, 1 : 1 + out_size[0], 1 : 1 + out_size[1], 1 : 1 + out_size[2]]
    if bias is not None:
        y = y + bias
    return y.permute(0, 4, 1, 2, 3)


def vol2col_forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` by ATen's im2col + GEMM kernels (``slow_conv3d`` / ``slow_conv_transpose3d``)."""
    dtype = _compute_dtype(x)
    x, weight = x.to(dtype).contiguous(), layer.weight.to(dtype)
    bias = layer.bias.to(dtype) if layer.bias is not None else None
    if isinstance(layer, nn.Conv3d):
        return torch._C._nn.slow_conv3d(x, weight, layer.kernel_size, bias, layer.stride, layer.padding)
    return torch._C._nn.slow_conv_transpose3d(
        x, weight, layer.kernel_size, bias, layer.stride, layer.padding, layer.output_padding, layer.dilation
    )


class Im2ColConv(nn.Module):
    """A Conv3d / ConvTranspose3d (its own parameters) run by :func:`im2col_forward`."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return im2col_forward(self.layer, x)


def swap_convs(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, (nn.Conv3d, nn.ConvTranspose3d)):
            setattr(module, name, Im2ColConv(child))
        else:
            swap_convs(child)


# --- part 1: training steps ---------------------------------------------------------------------


@dataclass
class Row:
    variant: str
    amp: str
    fmt: str
    mode: str  # eager, compile, max-autotune, im2col
    step: Callable | None = None
    first_s: float = 0.0
    warm_s: float = 0.0
    rates: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.variant:5s} {'fp32' if self.amp == 'none' else 'bf16'} {self.fmt:16s} {self.mode}"


def build_rows(args) -> list[Row]:
    """The rows the options select: eager in every precision and layout; compile in every one for
    MemAE and in bf16 (what the cpu preset trains in on this CPU) for AE; max-autotune in MemAE
    bf16 channels_last_3d; im2col in MemAE channels_last_3d (its natural layout)."""
    rows = []
    for variant in args.variants:
        for mode in MODES:
            for amp, fmt in itertools.product(("none", "bf16"), FORMATS):
                if mode == "compile" and variant != "memae" and amp != "bf16":
                    continue
                if mode == "max-autotune" and (variant, amp, fmt) != ("memae", "bf16", "channels_last_3d"):
                    continue
                if mode == "im2col" and (variant != "memae" or fmt != "channels_last_3d"):
                    continue
                if args.quick and mode != "eager" and (amp, fmt) != ("bf16", "channels_last_3d"):
                    continue
                if mode in args.modes and amp in args.amps and fmt in args.formats:
                    rows.append(Row(variant, amp, fmt, mode))
    return rows


def setup(row: Row, run: dict) -> None:
    torch.manual_seed(0)
    model = build_model(run["model"], **run["model_params"])
    if row.fmt == "channels_last_3d":
        model = model.to(memory_format=CL)
    if row.mode == "im2col":
        swap_convs(model)
    optimizers = {"model": make_optimizer(model.parameters(), run["preset"])}
    if row.mode == "compile":
        model.training_loss = torch.compile(model.training_loss)
    elif row.mode == "max-autotune":
        model.training_loss = torch.compile(model.training_loss, mode="max-autotune-no-cudagraphs")

    def step(x: torch.Tensor) -> float:
        return float(training_step(model, x, optimizers, _autocast(CPU, row.amp))["loss"])

    row.step = step


def run_steps(row: Row, batches: list[torch.Tensor], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        row.losses.append(row.step(batches[len(row.losses) % len(batches)]))
    return time.perf_counter() - t0


def forward_flops(run: dict, x: torch.Tensor) -> int:
    torch.manual_seed(0)
    model = build_model(run["model"], **run["model_params"])
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def rel_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))


def training_part(args, config: dict, peaks: dict[str, float]) -> None:
    rows = build_rows(args)
    runs = {v: run_config(config, "toy", v, 0) for v in args.variants}
    preset = runs[args.variants[0]]["preset"]
    size, t, batch = tuple(preset["frame_size"]), preset["clip_length"], preset["batch_size"]
    shape = (batch, preset["channels"], t, *size)
    total = args.warmup + args.rounds * args.steps
    gen = torch.Generator().manual_seed(1)
    plain = [torch.rand(shape, generator=gen) * 2 - 1 for _ in range(total)]
    batches = {"contiguous": plain, "channels_last_3d": [b.contiguous(memory_format=CL) for b in plain]}
    flops = {v: forward_flops(runs[v], plain[0]) for v in args.variants}
    print(
        f"\n== training steps: batch {shape}, {args.warmup} warm-up + {args.rounds} rounds x {args.steps} "
        f"timed steps per row; forward GFLOP/batch: "
        + ", ".join(f"{v} {f / 1e9:.2f}" for v, f in flops.items())
        + f"; load {loadavg()}",
        flush=True,
    )
    for row in rows:
        try:
            setup(row, runs[row.variant])
            row.first_s = run_steps(row, batches[row.fmt], 1)
        except Exception as err:  # a compile that fails on this CPU is a result too
            row.error = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300]}"
            print(f"  {row.label}: FAILED {row.error}", flush=True)
            continue
        row.warm_s = row.first_s + run_steps(row, batches[row.fmt], args.warmup - 1)
        print(f"  set up {row.label}: first step {row.first_s:.1f} s, warm-up {row.warm_s:.1f} s", flush=True)
    live = [r for r in rows if r.error is None]
    for rnd in range(args.rounds):
        for row in live[rnd % len(live) :] + live[: rnd % len(live)]:
            row.rates.append(args.steps * batch / run_steps(row, batches[row.fmt], args.steps))
        print(f"  round {rnd + 1}/{args.rounds} done, load {loadavg()}", flush=True)
    report_training(args, rows, flops, batch, peaks)


def report_training(args, rows: list[Row], flops: dict[str, int], batch: int, peaks: dict[str, float]) -> None:
    by_key = {(r.variant, r.amp, r.fmt, r.mode): r for r in rows}
    print(
        "\nclips/s: best round (median); GFLOP/s and x peak from the best round; "
        "x fp32: vs eager contiguous fp32 of the same model; x eager: vs eager of the same precision and layout;\n"
        "first s: first step (holds the compilation); compile s: warm-up time minus warm-up steps at the steady rate; "
        "dloss: largest relative loss difference over all steps vs that eager row "
        "(eager channels_last_3d: vs contiguous)"
    )
    head = (
        f"{'model precision layout mode':40s} {'clips/s':>15s} {'GFLOP/s':>8s} {'x peak':>6s} {'x fp32':>6s} "
        f"{'x eager':>7s} {'first s':>7s} {'compile s':>9s} {'dloss':>8s}"
    )
    print(head)
    for row in rows:
        if row.error is not None:
            print(f"{row.label:40s} FAILED: {row.error}")
            continue
        best, med = max(row.rates), statistics.median(row.rates)
        gflops = best / batch * 3 * flops[row.variant] / 1e9
        base = by_key.get((row.variant, "none", "contiguous", "eager"))
        if row.mode == "eager":
            ref = by_key.get((row.variant, row.amp, "contiguous", "eager")) if row.fmt != "contiguous" else None
        else:
            ref = by_key.get((row.variant, row.amp, row.fmt, "eager"))
        x_fp32 = best / max(base.rates) if base and base.rates else float("nan")
        x_eager = best / max(ref.rates) if ref is not None and ref.rates and row.mode != "eager" else float("nan")
        step_s = batch / best
        compile_s = row.warm_s - args.warmup * step_s
        dloss = rel_diff(row.losses, ref.losses) if ref is not None and ref.error is None else float("nan")
        print(
            f"{row.label:40s} {best:6.1f} ({med:6.1f}) {gflops:8.1f} {gflops / peaks[row.amp]:6.2f} {x_fp32:6.2f} "
            f"{x_eager:7.2f} {row.first_s:7.1f} {compile_s:9.1f} {dloss:8.1e}"
        )
    print("\nlosses at the last step:")
    for row in rows:
        if row.error is None:
            print(f"  {row.label:40s} {row.losses[-1]:.6f}")


# --- part 2: layers -----------------------------------------------------------------------------


def layer_shapes(run: dict, x: torch.Tensor) -> list[tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    model = build_model(run["model"], **run["model_params"])
    found: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: found.append((mod, tuple(inp[0].shape), tuple(out.shape))))
        for m in model.modules()
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    distinct, seen = [], set()
    for mod, shape_in, shape_out in found:
        key = (type(mod).__name__, mod.in_channels, mod.out_channels, mod.stride, mod.output_padding, shape_in)
        if key not in seen:
            seen.add(key)
            distinct.append((mod, shape_in, shape_out))
    return distinct


def layer_part(args, config: dict, peaks: dict[str, float]) -> None:
    run = run_config(config, "toy", "memae", 0)
    preset = run["preset"]
    x0 = torch.rand(preset["batch_size"], preset["channels"], preset["clip_length"], *preset["frame_size"]) * 2 - 1
    layers = layer_shapes(run, x0)
    print(
        f"\n== layers of MemAE at the cpu preset (forward + backward, {args.layer_reps} timed reps); load {loadavg()}"
    )
    for i, (mod, shape_in, shape_out) in enumerate(layers):
        kind = type(mod).__name__
        if kind == "Conv3d":
            rows, k = shape_out[0] * shape_out[2] * shape_out[3] * shape_out[4], 27 * mod.in_channels
            gemm = f"({rows} x {k}) @ ({k} x {mod.out_channels})"
        else:
            rows, k = shape_in[0] * shape_in[2] * shape_in[3] * shape_in[4], mod.in_channels
            gemm = f"({rows} x {k}) @ ({k} x {27 * mod.out_channels})"
        print(
            f"  L{i} {kind:15s} {mod.in_channels:3d}->{mod.out_channels:3d} stride {mod.stride} "
            f"out_pad {mod.output_padding}: {shape_in} -> {shape_out}; im2col matmul {gemm}"
        )
    forms = ("oneDNN contiguous", "oneDNN channels_last_3d", "im2col", "vol2col")
    print(
        "\nper form: ms per forward+backward (median) / GFLOP/s / x peak of the dtype; err: largest of the output's, "
        "input grad's and weight grad's max|diff|/max|ref| vs oneDNN contiguous"
    )
    print(
        f"{'layer dtype':14s} {'GFLOP':>6s} "
        + " ".join(f"{f:>26s}" for f in forms)
        + f" {'err im2col':>11s} {'err vol2col':>11s}"
    )
    for i, (mod, shape_in, _) in enumerate(layers):
        for amp in ("none", "bf16"):
            dtype = torch.float32 if amp == "none" else torch.bfloat16
            gen = torch.Generator().manual_seed(i)
            x = (torch.randn(shape_in, generator=gen)).to(dtype)
            needs_grad = i > 0  # the first layer sees the clip itself: no input gradient in training
            cl = copy.deepcopy(mod).to(memory_format=CL)
            inputs = {
                "oneDNN contiguous": x.clone(),
                "oneDNN channels_last_3d": x.contiguous(memory_format=CL),
                "im2col": x.contiguous(memory_format=CL),
                "vol2col": x.clone(),
            }
            fns = {
                "oneDNN contiguous": mod,
                "oneDNN channels_last_3d": cl,
                "im2col": lambda v, m=mod: im2col_forward(m, v),
                "vol2col": lambda v, m=mod: vol2col_forward(m, v),
            }
            params = {f: list((cl if f == "oneDNN channels_last_3d" else mod).parameters()) for f in forms}
            with _autocast(CPU, amp)():
                y = mod(x)
            g = torch.randn(y.shape, generator=gen).to(y.dtype)
            grads = {"oneDNN contiguous": g, "vol2col": g, "oneDNN channels_last_3d": g.contiguous(memory_format=CL)}
            grads["im2col"] = grads["oneDNN channels_last_3d"]

            def once(form: str):
                v = inputs[form].requires_grad_(needs_grad)
                for p in params[form]:
                    p.grad = None
                v.grad = None
                with _autocast(CPU, amp)():
                    out = fns[form](v)
                out.backward(grads[form])
                return out, v.grad, params[form][0].grad

            with FlopCounterMode(display=False) as counter:
                once("oneDNN contiguous")
            flops = counter.get_total_flops()
            results = {f: once(f) for f in forms}
            ref = results["oneDNN contiguous"]

            def err(form: str) -> float:
                worst = 0.0
                for a, b in zip(ref, results[form]):
                    if a is not None:
                        worst = max(worst, ((a.float() - b.float()).abs().max() / a.float().abs().max()).item())
                return worst

            times: dict[str, list[float]] = {f: [] for f in forms}
            for rep in range(args.layer_reps + 1):
                for f in forms[rep % len(forms) :] + forms[: rep % len(forms)]:
                    t0 = time.perf_counter()
                    once(f)
                    if rep:  # rep 0 warms up
                        times[f].append(time.perf_counter() - t0)
            cells = []
            for f in forms:
                s = statistics.median(times[f])
                gf = flops / s / 1e9
                cells.append(f"{s * 1e3:7.1f} / {gf:6.1f} / {gf / peaks[amp]:4.2f}")
            tol = 1e-4 if amp == "none" else 3e-2
            errs = [err("im2col"), err("vol2col")]
            print(
                f"L{i} {'fp32' if amp == 'none' else 'bf16':10s} {flops / 1e9:6.2f} "
                + " ".join(f"{c:>26s}" for c in cells)
                + " ".join(f" {e:8.1e} {'ok' if e < tol else 'NO'}" for e in errs),
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per row and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all rows")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps per row (compilation included)")
    parser.add_argument("--layer-reps", type=int, default=6, help="timed forward+backward per layer and form")
    parser.add_argument("--variants", nargs="+", default=["memae", "ae"])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="training rows' forms")
    parser.add_argument("--amps", nargs="+", choices=("none", "bf16"), default=["none", "bf16"])
    parser.add_argument("--formats", nargs="+", choices=list(FORMATS), default=list(FORMATS))
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument("--warm-cache", action="store_true", help="keep inductor's own cache (compile times warm)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="memae only, 3 steps, 1 round, compile and im2col in bf16 channels_last_3d only: checks the script runs",
    )
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds, args.warmup, args.layer_reps, args.variants = 3, 1, 2, 2, ["memae"]
        args.modes = [m for m in args.modes if m != "max-autotune"]
    args.warmup = max(args.warmup, 1)
    torch.set_num_threads(args.threads)
    for key in ("recompile_limit", "cache_size_limit"):  # one compiled training_loss per row
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, 64)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["datasets"]["toy"]["preset"] = args.preset
    preset = config["presets"][args.preset]
    print(
        f"torch {torch.__version__}, {args.threads} threads, preset {args.preset}: {preset['frame_size']} x "
        f"{preset['channels']}, {preset['clip_length']}-frame clips, batch {preset['batch_size']}, widths "
        f"{preset['widths']}; load {loadavg()}"
    )
    with tempfile.TemporaryDirectory() as cache:
        if not args.warm_cache:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        start = {"none": peak(args.threads, torch.float32), "bf16": peak(args.threads, torch.bfloat16)}
        if not args.skip_training:
            training_part(args, config, start)
        if not args.skip_layers:
            layer_part(args, config, start)
        end = {"none": peak(args.threads, torch.float32), "bf16": peak(args.threads, torch.bfloat16)}
    print(
        f"\nmatmul peak 2048x2048 at start / end: fp32 {start['none']:.1f} / {end['none']:.1f}, "
        f"bf16 {start['bf16']:.1f} / {end['bf16']:.1f} GFLOP/s (fractions above use the start's); load {loadavg()}"
    )


if __name__ == "__main__":
    main()
