"""How a PyTorch job uses the host: its CPU threads, and whether freed memory stays in the process.

A training step frees and allocates the same activations again on every step. glibc's malloc
serves blocks above its mmap threshold (128 kB, raised on the fly to at most 32 MB) with ``mmap``
and unmaps them when freed, and it trims the top of its heap once more than twice that threshold
is free, so the kernel maps in fresh zeroed pages for the same tensors on every step: 4,500-29,000
page faults and 9-71 ms of system time per step at the ``toy`` and ``cpu`` presets, 1.07-1.19x
of the step time (``benchmarks/host_memory.py``). Fixing the mmap threshold at glibc's ceiling and raising the trim
threshold keeps those blocks in the heap for the next step, the remedy PyTorch's CPU tuning guide
reaches with jemalloc or tcmalloc through ``LD_PRELOAD``, here with nothing to install and set from
inside the job. The allocator only decides where memory comes from: every number a model computes
is the same. The price is that a job's resident memory stays at its peak until it exits, which
for a job that runs steps until it exits is where it would be anyway.

Left alone where the user chose already (the same ``MALLOC_*_`` variables or ``GLIBC_TUNABLES``,
or jemalloc, tcmalloc or mimalloc preloaded), where the C library is not glibc (macOS, musl), and when
``VADBENCH_RETAIN_FREED_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Mapping

from vadbench.logs import get_logger

log = get_logger("host")

DISABLE_ENV = "VADBENCH_RETAIN_FREED_MEMORY"
#: mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: glibc refuses a larger mmap threshold on 64-bit (HEAP_MAX_SIZE / 2); larger blocks stay mmapped
MMAP_THRESHOLD = 32 * 1024 * 1024
#: free memory at the top of the heap kept before trimming (mallopt takes a C int)
TRIM_THRESHOLD = 1 << 30

#: the settings this module makes or that decide the same thing, as environment variables and as
#: glibc tunables; a user who set any of them (or preloaded another allocator) chose already
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_MALLOC_TUNABLES = (
    "glibc.malloc.mmap_threshold",
    "glibc.malloc.trim_threshold",
    "glibc.malloc.top_pad",
    "glibc.malloc.mmap_max",
)
_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

_applied: bool | None = None


def _user_chose_allocator(environ: Mapping[str, str]) -> str | None:
    """The environment variable by which the user already chose how freed memory is kept, if any."""
    for name in _MALLOC_ENV:
        if name in environ:
            return name
    if any(tunable in environ.get("GLIBC_TUNABLES", "") for tunable in _MALLOC_TUNABLES):
        return "GLIBC_TUNABLES"
    if any(lib in environ.get("LD_PRELOAD", "") for lib in _ALLOCATORS):
        return "LD_PRELOAD"
    return None


def _left_alone(environ: Mapping[str, str]) -> str | None:
    """Why malloc stays as it is in this process, or ``None`` to set it."""
    if environ.get(DISABLE_ENV) == "0":
        return f"{DISABLE_ENV}=0"
    chosen = _user_chose_allocator(environ)
    if chosen:
        return f"the allocator set by {chosen}"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "not glibc"
    return None


def retain_freed_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Have glibc's malloc keep freed blocks of up to 32 MB for reuse instead of returning them
    to the kernel (see the module docstring); once per process. Returns whether it is in force."""
    global _applied
    if _applied is not None:
        return _applied
    reason = _left_alone(os.environ if environ is None else environ)
    if reason:
        _applied = False
        log.info("host memory: malloc as it is (%s)", reason)
        return _applied
    libc = ctypes.CDLL("libc.so.6")
    _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    log.info(
        "host memory: freed blocks up to %d MB stay in the process for the next step (glibc mallopt%s)",
        MMAP_THRESHOLD >> 20,
        "" if _applied else " refused",
    )
    return _applied


def use_host(threads: int) -> None:
    """Set up a PyTorch job on this host: ``threads`` intra-op threads, freed memory retained."""
    import torch

    torch.set_num_threads(threads)
    retain_freed_memory()
