"""The node's three detection phases on consecutive frames at once (no rclpy here: testable alone).

One thread per phase of ``GraspDetector``: prepare (conversion, back-projection, workspace,
support plane, sampling), model (the runner: ONNX Runtime releases the GIL while a segment runs)
and finish (post-processing, message, publish). ``FramePipeline`` is the state they share:

* between two phases there is one slot; a phase waits while the next one's slot is full, so at
  most one frame waits between phases and nothing is ever dropped after the input;
* the input itself is the node's newest-frame-wins mailbox: the prepare phase takes a frame only
  when ``admit`` lets it, and then the newest one;
* ``admit(pipelined=False)``: only when no frame is anywhere in the pipeline (one frame at a
  time, as before pipelining); ``admit(pipelined=True)``: when the model's slot is empty and the
  model is expected to finish its frame within about one preparation time ("just in time", from
  running averages of both; until the model has been timed once, when it is free). A frame
  therefore waits for the model about one preparation time (more only when the model runs longer
  than its average): it is not taken early and left to age in the slot while newer frames arrive.

Frames leave every phase in the order they entered (one thread each), so results are published
in input order and the stateful support-plane tracker (updated in prepare) sees the frames in order.
"""
from __future__ import annotations

import math
import threading
import time

# Start preparing this much earlier than the bare estimate says: preparation running next to
# the model is slower than alone, and a model left idle costs throughput.
PREPARE_LEAD_FACTOR = 1.25
PREPARE_LEAD_S = 0.005
AVERAGE_WEIGHT = 0.3  # weight of the newest duration in the running averages


class FramePipeline:
    """Slots and timing shared by the prepare, model and finish threads (see the module docstring).

    Every blocking call returns None/False once ``close`` was called, so the threads can end.
    """

    def __init__(self, clock=time.perf_counter):
        self._clock = clock
        self._condition = threading.Condition()
        self._closed = False
        self._model_slot: tuple | None = None    # (item, time it was put)
        self._finish_slot: tuple | None = None
        self._model_since: float | None = None   # when the model phase took its current frame
        self._finishing = False
        self.prepare_s = 0.0  # running averages of the phases' durations
        self.model_s = 0.0

    # ------------------------------------------------------------------------ prepare thread
    def admit(self, pipelined: bool) -> bool:
        """Wait until the prepare phase may take the next input frame; False after ``close``."""
        with self._condition:
            while not self._closed:
                wait_s = self._admission_wait_s(pipelined, self._clock())
                if wait_s <= 0.0:
                    return True
                self._condition.wait(None if math.isinf(wait_s) else wait_s)
            return False

    def _admission_wait_s(self, pipelined: bool, now: float) -> float:
        if self._model_slot is not None:
            return math.inf
        if not pipelined:
            idle = self._model_since is None and self._finish_slot is None and not self._finishing
            return 0.0 if idle else math.inf
        if self._model_since is None:
            return 0.0
        if self.model_s <= 0.0:
            return math.inf  # no model time measured yet: wait for the model rather than guess
        lead_s = self.prepare_s * PREPARE_LEAD_FACTOR + PREPARE_LEAD_S
        return self._model_since + self.model_s - lead_s - now

    def wait_idle(self) -> bool:
        """Wait until no frame is in the model or finish phase or between them; False after ``close``."""
        with self._condition:
            self._condition.wait_for(lambda: self._closed or (
                self._model_slot is None and self._model_since is None and self._finish_slot is None
                and not self._finishing))
            return not self._closed

    def to_model(self, item, prepare_s: float) -> bool:
        """Hand a prepared frame to the model phase (waits while its slot is full)."""
        with self._condition:
            self._condition.wait_for(lambda: self._closed or self._model_slot is None)
            if self._closed:
                return False
            self.prepare_s = _average(self.prepare_s, prepare_s)
            self._model_slot = (item, self._clock())
            self._condition.notify_all()
            return True

    # -------------------------------------------------------------------------- model thread
    def next_for_model(self):
        """(item, seconds it waited in the slot), or None after ``close``."""
        with self._condition:
            self._condition.wait_for(lambda: self._closed or self._model_slot is not None)
            if self._closed:
                return None
            (item, put_at), self._model_slot = self._model_slot, None
            self._model_since = self._clock()
            self._condition.notify_all()
            return item, self._model_since - put_at

    def to_finish(self, item, model_s: float | None) -> bool:
        """Hand a frame from the model to the finish phase (waits while its slot is full); ``model_s``
        None: the model did not run on it (the frame was settled before), the average keeps."""
        with self._condition:
            if model_s is not None:
                self.model_s = _average(self.model_s, model_s)
            self._condition.wait_for(lambda: self._closed or self._finish_slot is None)
            if self._closed:
                return False
            self._finish_slot, self._model_since = (item, self._clock()), None
            self._condition.notify_all()
            return True

    # ------------------------------------------------------------------------- finish thread
    def next_for_finish(self):
        """(item, seconds it waited in the slot), or None after ``close``."""
        with self._condition:
            self._condition.wait_for(lambda: self._closed or self._finish_slot is not None)
            if self._closed:
                return None
            (item, put_at), self._finish_slot = self._finish_slot, None
            self._finishing = True
            self._condition.notify_all()
            return item, self._clock() - put_at

    def finished(self) -> None:
        """The finish phase is done with its frame (published, requests answered)."""
        with self._condition:
            self._finishing = False
            self._condition.notify_all()

    # ------------------------------------------------------------------------------- all
    def close(self) -> None:
        """Wake every waiting phase; frames still in a slot are abandoned (the node is stopping)."""
        with self._condition:
            self._closed = True
            self._model_slot = self._finish_slot = None
            self._condition.notify_all()

    @property
    def frames_in_flight(self) -> int:
        """Frames in the model or finish phase or in a slot before them (not counting prepare)."""
        with self._condition:
            return (int(self._model_slot is not None) + int(self._model_since is not None)
                    + int(self._finish_slot is not None) + int(self._finishing))


def _average(previous: float, newest: float) -> float:
    return newest if previous <= 0.0 else (1.0 - AVERAGE_WEIGHT) * previous + AVERAGE_WEIGHT * newest
