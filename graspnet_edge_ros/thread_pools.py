"""Idle thread pools that sleep, chosen before they load, in the processes this package starts (CLI, node).

The runtime's parallel work alternates between numba kernels and ONNX Runtime segments on the same
cores, a few milliseconds each. A pool that keeps spinning after its work is done takes the cores
from the next one (ORT's own pool already sleeps: ``allow_spinning`` off in the split runtime):

- numpy's OpenBLAS, woken by the factored layout's per-point projection (``weight @ features``):
  with its default thread count the factored forward ran 218 ms instead of 142 ms on 2 cores
  (2026-12-07). ``OPENBLAS_NUM_THREADS=1``, read when OpenBLAS loads, i.e. before numpy does.
- numba's OpenMP threading layer (GNU libgomp): its workers spin after every parallel kernel
  (libgomp's default wait policy), and the SA2 segment that follows ``group_first_layer`` took
  26.5 ms instead of 20.5 ms; the whole split forward 110 ms instead of 93 ms (2026-12-07, the VM
  of the README). ``OMP_WAIT_POLICY=PASSIVE``, read when libgomp loads (numba's first parallel
  kernel, or ``import torch``).

Each variable is set only while it can still take effect, and never over a value the user chose.
"""
from __future__ import annotations

import os
import sys

BLAS_THREADS_VARIABLE = "OPENBLAS_NUM_THREADS"
OPENMP_WAIT_VARIABLE = "OMP_WAIT_POLICY"
_OPENMP_RUNTIMES = ("libgomp", "libiomp", "libomp")


def openmp_runtime_loaded() -> bool:
    """True when an OpenMP runtime is mapped into this process (Linux); False where that cannot be read."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any(name in line for line in maps for name in _OPENMP_RUNTIMES)
    except OSError:
        return False


def prefer_sleeping_thread_pools() -> dict[str, bool]:
    """Set OPENBLAS_NUM_THREADS=1 and OMP_WAIT_POLICY=PASSIVE unless already set.

    Returns, per variable, whether it was still in time: False once numpy (OpenBLAS) or an OpenMP
    runtime is loaded, when setting it would no longer matter (it is then left alone).
    """
    in_time = {BLAS_THREADS_VARIABLE: "numpy" not in sys.modules,
               OPENMP_WAIT_VARIABLE: not openmp_runtime_loaded()}
    if in_time[BLAS_THREADS_VARIABLE]:
        os.environ.setdefault(BLAS_THREADS_VARIABLE, "1")
    if in_time[OPENMP_WAIT_VARIABLE]:
        os.environ.setdefault(OPENMP_WAIT_VARIABLE, "PASSIVE")
    return in_time
