"""One OpenBLAS thread in the processes this package starts (CLI, node), chosen before numpy loads.

The runtime's parallel work runs in numba's and ONNX Runtime's threads. numpy's OpenBLAS has a pool
of its own, woken by the factored split layout's per-point projection (``weight @ features``), and
its idle threads keep spinning after each call, taking the cores from the next numba kernel and ORT
segment: on 2 cores the projection took 20 ms instead of 1 ms and the factored forward ran 218 ms
instead of 142 ms (2026-12-07). The variable is read when OpenBLAS loads, so it is set only if numpy
is not loaded yet, and never over a value the user chose.
"""
from __future__ import annotations

import os
import sys

BLAS_THREADS_VARIABLE = "OPENBLAS_NUM_THREADS"


def prefer_single_threaded_blas() -> bool:
    """Set OPENBLAS_NUM_THREADS=1 unless already set; False when numpy is loaded (too late to matter)."""
    if "numpy" in sys.modules:
        return False
    os.environ.setdefault(BLAS_THREADS_VARIABLE, "1")
    return True
