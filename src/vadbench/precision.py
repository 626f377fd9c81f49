"""Which precision a training computes in: the preset's ``amp`` resolved on the job's device.

bf16 autocast pays only where the hardware has bf16 arithmetic. Measured at the ``cpu`` preset
(``benchmarks/cpu_isa.py``, oneDNN held to each instruction set of the CPUs users have): with
AVX512-BF16 MemAE trains 1.6x faster in bf16 than in fp32; with AVX-512 alone (Xeons before
Cooper Lake / Sapphire Rapids) bf16 is emulated and runs at 0.47x of fp32; held to AVX2 (most
laptops) at 0.02x. So
``amp: auto`` picks bf16 where the device computes it natively and fp32 elsewhere, and the
precision a model was trained in is recorded with it (checkpoint, ``model.pt``, ``run.json``,
``auc.json``, the aggregate and the MLflow tag ``amp``), because it changes the weights.
"""

from __future__ import annotations

import os

import torch

from vadbench.logs import get_logger

log = get_logger("precision")

AMP_VALUES = ("none", "bf16", "auto")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` has bf16 arithmetic in hardware rather than emulating it.

    CUDA: compute capability 8.0 or newer. CPU: AVX512-BF16 or AMX, unless ``ONEDNN_MAX_CPU_ISA``
    holds oneDNN below them (then oneDNN would emulate, whatever the CPU has). Other CPUs (ARM)
    count as fp32-only: no bf16 timing was measured there.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa and isa not in ("ALL", "DEFAULT") and not any(s in isa for s in ("BF16", "AMX", "AVX10")):
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_amp(amp: str, device: torch.device) -> str:
    """The precision (``"none"``: fp32, or ``"bf16"``) that preset ``amp`` means on ``device``.

    An explicit ``bf16`` is kept where the device would emulate it (the user asked for it), with a
    warning that says what it costs.
    """
    if amp == "auto":
        return "bf16" if native_bf16(device) else "none"
    if amp == "bf16" and not native_bf16(device):
        log.warning(
            "amp: bf16 on %s, which has no bf16 arithmetic in hardware: it is emulated, about 2x slower "
            "than fp32 with AVX-512 and far slower with AVX2 (benchmarks/RESULTS.md); "
            "set the preset's amp to auto or none to train in fp32",
            device,
        )
    return amp
