"""Counters of the node and their /diagnostics report (diagnostic_msgs/DiagnosticArray).

``NodeStatistics`` is updated from the executor and the worker thread; ``DiagnosticsReporter``
turns it into one DiagnosticStatus per period with rates over that period. The level rule is a
plain function (``diagnostic_level``) so it is tested without a graph.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace

from graspnet_edge_ros.pipeline import STATUS_ERROR, STATUS_NO_VALID_INPUT

LEVEL_OK, LEVEL_WARN = "OK", "WARN"


@dataclass(frozen=True)
class StatisticsSnapshot:
    """Counters since start; times are time.monotonic() seconds (None = never)."""

    started: float
    frames_received: int = 0    # synchronised colour/depth/info(/mask) sets
    frames_processed: int = 0   # sets that produced a GraspArray (any status)
    frames_dropped: int = 0     # replaced by a newer set before the worker took them
    frames_skipped: int = 0     # on_demand mode without a pending request
    frames_rejected: int = 0    # out of order (older than an earlier set)
    last_input: float | None = None
    last_status: str = ""
    last_reason: str = ""
    last_error: str = ""
    last_error_time: float | None = None
    last_timings_ms: dict = field(default_factory=dict)
    support_plane: str = ""     # "fit|held|given [nx, ny, nz, d]" of the last frame, or "none"
    support_plane_note: str = ""
    last_rejections: dict = field(default_factory=dict)  # reason -> grasps removed, last frame


class NodeStatistics:
    """Thread-safe counters of one node."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot = StatisticsSnapshot(started=clock())

    def _update(self, **changes) -> None:
        with self._lock:
            self._snapshot = replace(self._snapshot, **changes)

    def _increment(self, name: str, **changes) -> None:
        with self._lock:
            self._snapshot = replace(self._snapshot, **{name: getattr(self._snapshot, name) + 1}, **changes)

    def record_input(self) -> None:
        self._increment("frames_received", last_input=self._clock())

    def record_dropped(self) -> None:
        self._increment("frames_dropped")

    def record_skipped(self) -> None:
        self._increment("frames_skipped")

    def record_rejected(self) -> None:
        self._increment("frames_rejected")

    def record_result(self, status: str, reason: str, timings_ms: dict) -> None:
        changes = {"last_status": status, "last_reason": reason, "last_timings_ms": dict(timings_ms)}
        if status in (STATUS_ERROR, STATUS_NO_VALID_INPUT):
            changes.update(last_error=f"{status}: {reason}", last_error_time=self._clock())
        self._increment("frames_processed", **changes)

    def record_frame_details(self, support_plane: str, note: str, rejections: dict) -> None:
        """The last frame's support plane (and why it was held or missing) and rejection counts."""
        self._update(support_plane=support_plane, support_plane_note=note, last_rejections=dict(rejections))

    def snapshot(self) -> StatisticsSnapshot:
        with self._lock:
            return self._snapshot


def diagnostic_level(snapshot: StatisticsSnapshot, now: float, input_timeout_s: float,
                     mask_topic: str = "") -> tuple[str, str]:
    """(LEVEL_OK | LEVEL_WARN, one-line summary) for a snapshot taken at ``now``.

    WARN when no synchronised frame arrived for ``input_timeout_s`` (or ever, that long after
    start) or when the last result was an error or unusable input. ``mask_topic``: the object
    mask topic when one is synchronised too (named in the warning: a missing or late label image
    blocks every frame).
    """
    since_input = now - (snapshot.last_input if snapshot.last_input is not None else snapshot.started)
    if since_input > input_timeout_s:
        inputs = "colour/depth/camera_info" + (f"/object mask ({mask_topic})" if mask_topic else "")
        what = f"no synchronised {inputs} frame" + ("" if snapshot.last_input else " yet")
        hint = "check topics, QoS and stamps" + (
            f"; {mask_topic} must carry the colour image's stamp" if mask_topic else "")
        return LEVEL_WARN, f"{what} for {since_input:.1f} s ({hint})"
    if snapshot.last_status in (STATUS_ERROR, STATUS_NO_VALID_INPUT):
        return LEVEL_WARN, f"last frame: {snapshot.last_status}: {snapshot.last_reason}"
    if not snapshot.last_status:
        return LEVEL_OK, "waiting for the first result"
    return LEVEL_OK, f"last frame: {snapshot.last_status}"


class DiagnosticsReporter:
    """Builds the DiagnosticArray of a node; rates are over the time since the previous report."""

    def __init__(self, name: str, clock=time.monotonic):
        self.name = name
        self._clock = clock
        self._previous: tuple[float, int, int] | None = None

    def report(self, snapshot: StatisticsSnapshot, stamp, *, backend: str, model_id: str, mode: str,
               input_timeout_s: float, pending_requests: int = 0, mask_topic: str = ""):
        """diagnostic_msgs/DiagnosticArray with one status for ``snapshot``, header stamp ``stamp``."""
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        now = self._clock()
        previous_time, previous_in, previous_out = self._previous or (snapshot.started, 0, 0)
        elapsed = max(now - previous_time, 1e-9)
        input_rate = (snapshot.frames_received - previous_in) / elapsed
        output_rate = (snapshot.frames_processed - previous_out) / elapsed
        self._previous = (now, snapshot.frames_received, snapshot.frames_processed)

        level, message = diagnostic_level(snapshot, now, input_timeout_s, mask_topic)
        values = {
            "input_rate_hz": f"{input_rate:.2f}", "output_rate_hz": f"{output_rate:.2f}",
            "frames_received": snapshot.frames_received, "frames_processed": snapshot.frames_processed,
            "frames_dropped": snapshot.frames_dropped, "frames_skipped": snapshot.frames_skipped,
            "frames_rejected": snapshot.frames_rejected,
            "seconds_since_input": "never" if snapshot.last_input is None else f"{now - snapshot.last_input:.2f}",
            "backend": backend, "model_id": model_id, "mode": mode, "pending_requests": pending_requests,
            "last_status": snapshot.last_status, "last_error": snapshot.last_error,
            "seconds_since_error": "" if snapshot.last_error_time is None
            else f"{now - snapshot.last_error_time:.1f}",
        }
        values.update({"support_plane": snapshot.support_plane, "support_plane_note": snapshot.support_plane_note})
        values.update({f"rejected.{reason}": count for reason, count in snapshot.last_rejections.items()})
        values.update({f"latency_ms.{stage}": f"{ms:.1f}" for stage, ms in snapshot.last_timings_ms.items()})
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN if level == LEVEL_WARN else DiagnosticStatus.OK,
            name=self.name, message=message, hardware_id=model_id,
            values=[KeyValue(key=key, value=str(value)) for key, value in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = stamp
        return array
