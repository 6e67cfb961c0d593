"""Input matching and the latest-frame hand-off between the executor and the detection worker.

``ApproximateTimeSynchronizer`` is the fallback used when ``message_filters`` is not importable
(PyPI ROS wheels). It follows the rule of message_filters' Python ``ApproximateTimeSynchronizer``
so the node behaves the same either way:

* each input keeps its messages keyed by header stamp (a repeated stamp replaces the older
  message); at most ``queue_size`` per input, the oldest *stamp* is dropped first;
* when a message arrives, every other input's stamps closer than ``slop`` to it are candidates,
  nearest first; if some input has none, nothing is emitted;
* candidate combinations are tried nearest first and the first one whose stamps span less than
  ``slop`` is emitted (one message per input, in input order) and removed from the queues.

Unlike message_filters, callbacks run after the lock is released, so a callback that raises or
blocks cannot leave the synchroniser locked. Nothing here imports rclpy: stamps only need
``sec`` and ``nanosec`` (builtin_interfaces/Time), which keeps the logic testable without ROS.
"""
from __future__ import annotations

import itertools
import threading
from typing import Any, Callable

from graspnet_edge_ros.errors import ConfigError
from graspnet_edge_ros.ros.stamps import NANOSECONDS_PER_SECOND, stamp_nanoseconds


class ApproximateTimeSynchronizer:
    """Emit one message per input when their header stamps lie within ``slop`` seconds.

    Args:
        num_inputs: number of inputs (>= 2); messages are fed with ``add(input_index, msg)``.
        queue_size: messages kept per input while waiting for partners (>= 1).
        slop: seconds; a set matches when its stamps span strictly less than this.

    Examples:
        >>> sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.05)  # doctest: +SKIP
        >>> sync.register_callback(lambda color, depth: print(color, depth))  # doctest: +SKIP
        >>> sync.add(0, color_msg); sync.add(1, depth_msg)  # doctest: +SKIP
    """

    def __init__(self, num_inputs: int, queue_size: int, slop: float):
        if num_inputs < 2:
            raise ConfigError(f"need at least 2 inputs to synchronise, got {num_inputs}")
        if queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {queue_size}")
        if not slop >= 0:
            raise ConfigError(f"slop must be >= 0 seconds, got {slop}")
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(slop * NANOSECONDS_PER_SECOND))
        self._queues: list[dict[int, Any]] = [{} for _ in range(num_inputs)]
        self._callbacks: list[Callable[..., None]] = []
        self._lock = threading.Lock()
        self.headerless_count = 0

    def register_callback(self, callback: Callable[..., None]) -> None:
        """``callback(msg_0, ..., msg_{n-1})`` is called with each matched set, in input order."""
        self._callbacks.append(callback)

    def add(self, input_index: int, msg) -> None:
        """Feed one message of input ``input_index``; emits a matched set if this message completes one."""
        header = getattr(msg, "header", None)
        if header is None or not hasattr(header, "stamp"):
            # No stamp, no approximate time: count it so the caller can report it.
            self.headerless_count += 1
            return
        stamp = stamp_nanoseconds(header.stamp)
        with self._lock:
            matched = self._insert_and_match(input_index, stamp, msg)
        if matched is not None:
            for callback in list(self._callbacks):
                callback(*matched)

    def _within(self, spread_ns: int) -> bool:
        return spread_ns < self.slop_ns

    def _insert_and_match(self, input_index: int, stamp: int, msg) -> list | None:
        queue = self._queues[input_index]
        queue[stamp] = msg
        while len(queue) > self.queue_size:
            del queue[min(queue)]
        if stamp not in queue:  # older than everything in a full queue: dropped at once
            return None
        candidates = []
        for index, other in enumerate(self._queues):
            if index == input_index:
                continue
            near = sorted((abs(s - stamp), s) for s in other if self._within(abs(s - stamp)))
            if not near:
                return None
            candidates.append([s for _, s in near])
        for combination in itertools.product(*candidates):
            stamps = list(combination)
            stamps.insert(input_index, stamp)
            if self._within(max(stamps) - min(stamps)):
                return [q.pop(s) for q, s in zip(self._queues, stamps)]
        return None

    def queued(self) -> list[int]:
        """Messages waiting per input (for diagnostics and tests)."""
        with self._lock:
            return [len(q) for q in self._queues]


class ExactTimeSynchronizer(ApproximateTimeSynchronizer):
    """Like message_filters' ``TimeSynchronizer``: emit a set only when all stamps are equal."""

    def __init__(self, num_inputs: int, queue_size: int):
        super().__init__(num_inputs, queue_size, slop=0.0)

    def _within(self, spread_ns: int) -> bool:
        return spread_ns == 0


class LatestMailbox:
    """A one-slot hand-off: ``put`` replaces a waiting item, ``take`` blocks for the next one.

    The executor thread puts synchronised frames, the worker takes them; a frame that arrives
    while another is still waiting replaces it, so the worker always starts on the newest frame
    and no backlog builds up when detection is slower than the camera.
    """

    def __init__(self):
        self._item = None
        self._has_item = False
        self._closed = False
        self._condition = threading.Condition()

    def put(self, item) -> bool:
        """Store ``item``; True when it replaced an item nobody had taken (a dropped frame).

        Ignored after ``close``.
        """
        with self._condition:
            if self._closed:
                return False
            replaced = self._has_item
            self._item, self._has_item = item, True
            self._condition.notify()
            return replaced

    def take(self, timeout: float | None = None):
        """The waiting item (emptying the slot), or None on timeout or after ``close``."""
        with self._condition:
            self._condition.wait_for(lambda: self._has_item or self._closed, timeout)
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def close(self) -> None:
        """Wake every ``take`` and make further ones return None at once."""
        with self._condition:
            self._closed = True
            self._item, self._has_item = None, False
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
