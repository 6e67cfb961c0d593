"""Per-stage wall-clock timing shared by the runtime, the pipeline and the benchmarks."""
from __future__ import annotations

import time
from contextlib import contextmanager


class StageTimer:
    """Accumulates wall time per stage name, in milliseconds.

    ``StageTimer.clock`` is the time source of every timer; a benchmark on a shared machine may set
    it to ``time.process_time`` (CPU time of the process: the work, not the waiting).
    """

    clock = staticmethod(time.perf_counter)

    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = self.clock()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (self.clock() - start) * 1e3
