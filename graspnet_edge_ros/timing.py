"""Per-stage wall-clock timing shared by the runtime, the pipeline and the benchmarks."""
from __future__ import annotations

import time
from contextlib import contextmanager


class StageTimer:
    """Accumulates wall time per stage name, in milliseconds."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1e3
