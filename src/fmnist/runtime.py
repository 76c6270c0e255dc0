"""Process-wide settings for speed, never for a result; a setting the user made wins.

- How OpenMP's workers wait: set by `apply()`, which fmnist/__init__.py calls first thing, before anything
  imports torch (libgomp reads its environment once, when torch loads it).
- How glibc's heap keeps freed memory: `keep_freed_memory()`, which the trainer calls when a training run is
  set up (engine/trainer.py setup), so a server or a script that only predicts keeps glibc's behaviour.
"""

from __future__ import annotations

import ctypes
import os
import sys

# How torch's OpenMP workers (libgomp) wait for the next operator: spin 1,000 times, then sleep.
# libgomp's own default spins 300,000 times, and beside another busy process that spinning took a 2-core
# machine's epoch from seconds to tens of seconds; sleeping at once (OMP_WAIT_POLICY=PASSIVE, fmnist's
# default until issue 18) costs every operator a wake-up. Measured on an idle 2-core AMD EPYC, seconds per
# 12,000-image epoch: write-up 000's baseline (batch 32) 1.52 PASSIVE, 1.07 with 1,000 spins, 0.92 with
# libgomp's default; the fast recipe (batch 256) 3.41, 2.94, 2.90; beside one busy process 1,000 spins were
# as fast as PASSIVE (2.75 against 2.90; 5.85 against 5.63) and libgomp's default 1.3-1.6x slower
# (benchmarks/README.md, "Threads on a shared CPU"). OMP_WAIT_POLICY or GOMP_SPINCOUNT set by the user wins.
# GOMP_SPINCOUNT is libgomp's (what PyPI's torch uses on Linux); elsewhere (macOS's LLVM libomp) fmnist keeps
# sleeping at once, as before: the short spin was not measured there. Intel's OpenMP (conda builds) reads
# neither GOMP_SPINCOUNT nor, here, anything else: KMP_BLOCKTIME of the user's is left alone.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
WAIT_POLICY = {"GOMP_SPINCOUNT": "1000"} if sys.platform.startswith("linux") else {"OMP_WAIT_POLICY": "PASSIVE"}

# glibc's malloc serves a request over its mmap threshold (128 KiB at first, raised to the size of a freed such
# block) with fresh pages from the kernel and gives them back when it is freed, and it trims the top of its
# heap when more than twice that threshold is free there. A training step allocates and frees the same
# activations and gradients every step (2.8 MB for the baseline's 32×32×26×26 convolution output at batch 32),
# and with glibc's defaults every step faulted the same pages in again. On a 2-core AMD EPYC, per step, glibc's
# defaults against this setting: the baseline (batch 32) 945 against 1 page faults, 5.07 against 3.32 ms; the
# fast recipe's model (batch 256) 15,524 against 17, 94.0 against 69.4 ms (benchmarks/page_faults.py; "Freed
# memory, waiting workers, max-pool first" in benchmarks/README.md). Blocks under 32 MiB now come from the
# heap, and up to 256 MiB of freed heap is kept for the next step: a training process stays at its peak
# instead of returning to the kernel and faulting the same pages in again. Larger blocks (a whole dataset, a
# big evaluation batch) still go back.
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

# How to hold torch's kernels to AVX2 + FMA on a newer x86 CPU, to reproduce (tests/test_golden.py) or measure
# (benchmarks/, `--isa avx2`) what an AVX2-only CPU computes: oneDNN (convolutions), ATen's own vectorised
# kernels and MKL (matrix products) each read one variable, once, when torch loads them; only a new process
# can be held. ONEDNN_MAX_CPU_ISA also tells `--precision auto` that bf16 is not native (device.py).
# benchmarks/machine.py spells it out too (its Keras worker must not import fmnist).
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

SET_BY_FMNIST: dict[str, str] = {}  # the environment variables apply() set (a benchmark's peer runs without them)


kept_freed_memory = False  # whether keep_freed_memory() has told glibc so in this process


def apply() -> None:
    """Set fmnist's OpenMP default for this process (idempotent)."""
    if not any(name in os.environ for name in WAIT_VARIABLES):
        os.environ.update(WAIT_POLICY)
        SET_BY_FMNIST.update(WAIT_POLICY)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (see MMAP_THRESHOLD). True when set; False where the
    C library is not glibc, where the user tuned malloc through its environment (theirs wins), or where
    FMNIST_MALLOC=glibc asks for glibc's own behaviour (benchmarks/page_faults.py compares the two)."""
    global kept_freed_memory
    if kept_freed_memory:  # once per process: every training run's set-up asks
        return True
    if (not sys.platform.startswith("linux") or any(name in os.environ for name in MALLOC_VARIABLES)
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") or os.environ.get("FMNIST_MALLOC") == "glibc"):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
    except (ValueError, OSError):  # musl (Alpine) has no such name
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    results = [mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD), mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)]
    kept_freed_memory = all(results)
    return kept_freed_memory
