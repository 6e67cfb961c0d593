"""What a replay sent and got back: per-result records, the summary, its table, JSON and overlay.

Everything here works on decoded messages (rosbags dataclasses); nothing imports rclpy.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graspnet_edge_ros.errors import InputError
from graspnet_edge_ros.ros.bags import COLOR_TOPIC, INFO_TOPIC, read_bag_frame
from graspnet_edge_ros.ros.conversions import TOTAL_STAGE, grasp_group_from_msg, stage_timings
from graspnet_edge_ros.ros.stamps import stamp_nanoseconds
from graspnet_edge_ros.status import status_name


class FrameMismatchError(InputError):
    """A result is in another frame than the image it should be drawn on."""


@dataclass
class ResultRecord:
    """One GraspArray as received: decoded message plus when it arrived (monotonic seconds)."""

    stamp_ns: int
    frame_id: str
    status: str
    reason: str
    num_grasps: int
    stages: dict[str, float]
    received_s: float
    message: object  # rosbags dataclass of graspnet_edge_ros/msg/GraspArray

    @classmethod
    def from_message(cls, msg, received_s: float) -> "ResultRecord":
        """The record of a decoded GraspArray that arrived at ``received_s``."""
        return cls(stamp_nanoseconds(msg.header.stamp), msg.header.frame_id, status_name(msg.status),
                   msg.status_reason, len(msg.grasps), stage_timings(msg), received_s, msg)


@dataclass
class ReplaySummary:
    """What a replay sent and got back. Rates in Hz, times in seconds, latencies in ms."""

    bag: str
    record_path: str | None
    frames_in: int
    input_stamps_ns: list[int]
    results: list[ResultRecord]
    wall_time_s: float
    play_time_s: float
    messages_published: int
    diagnostics_received: int = 0
    markers_received: int = 0
    dropped_frames: int | None = None
    diagnostics: dict[str, dict] = field(default_factory=dict)  # last status per name
    e2e_latency_ms: list[float] = field(default_factory=list)
    drain_reason: str = ""
    interrupted: str = ""  # the signal that stopped the replay early, if any
    every_frame: bool = False

    @property
    def results_out(self) -> int:
        return len(self.results)

    @property
    def statuses(self) -> Counter:
        return Counter(r.status for r in self.results)

    @property
    def input_rate_hz(self) -> float:
        return (self.frames_in - 1) / self.play_time_s if self.frames_in > 1 and self.play_time_s > 0 else 0.0

    @property
    def output_rate_hz(self) -> float:
        times = [r.received_s for r in self.results]
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0

    @property
    def unanswered_frames(self) -> int:
        """Input frames no result carries the stamp of (dropped as stale, or rejected silently)."""
        answered = {r.stamp_ns for r in self.results}
        return sum(1 for stamp in set(self.input_stamps_ns) if stamp not in answered)

    def stage_latency(self) -> dict[str, tuple[float, float, int]]:
        """{stage: (median ms, p90 ms, samples)} over results with status ok, plus their total."""
        per_stage: dict[str, list[float]] = {}
        for result in self.results:
            if result.status != "ok":
                continue
            for name, value in result.stages.items():
                per_stage.setdefault(name, []).append(value)
            if TOTAL_STAGE not in result.stages and result.stages:
                per_stage.setdefault("total (sum of stages)", []).append(frame_ms(result))
        return {name: (float(np.median(v)), float(np.percentile(v, 90)), len(v)) for name, v in per_stage.items()}

    def node_counters(self) -> dict[str, str]:
        """The ``frames_*`` values of the node's last diagnostics status (received, dropped, ...)."""
        counters = {}
        for values in self.diagnostics.values():
            counters.update({k: v for k, v in values.items() if k.startswith("frames_")})
        return counters

    def last_result(self, status: str | None = "ok") -> ResultRecord | None:
        for result in reversed(self.results):
            if status is None or result.status == status:
                return result
        return None

    def table(self) -> str:
        """The summary as an aligned text table."""
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())) or "-"
        dropped = "n/a (no drop counter in /diagnostics)" if self.dropped_frames is None else str(self.dropped_frames)
        rows = [
            ("bag", self.bag),
            ("recorded to", self.record_path or "-"),
            ("frames in", f"{self.frames_in} ({self.messages_published} messages)"),
            ("results out", str(self.results_out)),
            ("statuses", statuses),
            ("frames without a result", str(self.unanswered_frames)),
            ("dropped (node diagnostics)", dropped),
            ("input rate", f"{self.input_rate_hz:.2f} Hz"),
            ("output rate", f"{self.output_rate_hz:.2f} Hz"),
            ("diagnostics / marker msgs", f"{self.diagnostics_received} / {self.markers_received}"),
            ("wall time", f"{self.wall_time_s:.1f} s (playing {self.play_time_s:.1f} s; drain: {self.drain_reason})"),
        ]
        if self.interrupted:
            rows.append(("INTERRUPTED", f"{self.interrupted}: the summary covers what happened until then"))
        if self.every_frame:
            rows.append(("mode", "every frame (next frame only after the previous answer)"))
        counters = self.node_counters()
        if counters:
            rows.append(("node counters (diagnostics)", ", ".join(f"{k} {v}" for k, v in counters.items())))
        if self.e2e_latency_ms:
            rows.append(("end-to-end latency", f"median {np.median(self.e2e_latency_ms):.0f} ms, "
                                               f"p90 {np.percentile(self.e2e_latency_ms, 90):.0f} ms "
                                               f"(publish of the frame -> its result)"))
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        stages = self.stage_latency()
        if stages:
            name_width = max(len(k) for k in stages)
            lines += ["", f"{'stage (status ok)':<{name_width}}  {'median ms':>9}  {'p90 ms':>8}  {'n':>4}"]
            lines += [f"{name:<{name_width}}  {med:9.1f}  {p90:8.1f}  {n:4d}" for name, (med, p90, n) in stages.items()]
        reasons = Counter(r.reason for r in self.results if r.status != "ok")
        if reasons:
            lines += ["", "non-ok results:"] + [f"  {n} x {reason or '(no reason given)'}"
                                                for reason, n in reasons.most_common()]
        return "\n".join(lines)

    def top_grasps_table(self, top: int = 10) -> str:
        """The best grasps of the last ok result."""
        result = self.last_result("ok")
        if result is None:
            return "no ok result to show"
        msg = result.message
        lines = [f"top {min(top, result.num_grasps)} of {result.num_grasps} grasps, frame stamp "
                 f"{result.stamp_ns / 1e9:.3f}, frame '{result.frame_id}', {msg.pose_convention}, model {msg.model_id}",
                 f"{'rank':>4} {'score':>7} {'width':>7} {'depth':>6}   {'x':>7} {'y':>7} {'z':>7}   "
                 f"{'qx':>6} {'qy':>6} {'qz':>6} {'qw':>6}"]
        for grasp in msg.grasps[:top]:
            p, q = grasp.pose.position, grasp.pose.orientation
            lines.append(f"{grasp.rank:>4} {grasp.score:7.3f} {grasp.width:7.3f} {grasp.depth:6.2f}   "
                         f"{p.x:7.3f} {p.y:7.3f} {p.z:7.3f}   {q.x:6.3f} {q.y:6.3f} {q.z:6.3f} {q.w:6.3f}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "bag": self.bag, "record_path": self.record_path, "frames_in": self.frames_in,
            "results_out": self.results_out, "statuses": dict(self.statuses),
            "unanswered_frames": self.unanswered_frames, "dropped_frames": self.dropped_frames,
            "input_rate_hz": self.input_rate_hz, "output_rate_hz": self.output_rate_hz,
            "wall_time_s": self.wall_time_s, "play_time_s": self.play_time_s,
            "stage_latency_ms": {k: {"median": m, "p90": p, "n": n} for k, (m, p, n) in self.stage_latency().items()},
            "e2e_latency_ms": {"median": float(np.median(self.e2e_latency_ms)),
                               "p90": float(np.percentile(self.e2e_latency_ms, 90))} if self.e2e_latency_ms else None,
            "diagnostics": self.diagnostics, "drain_reason": self.drain_reason,
            "interrupted": self.interrupted or None, "every_frame": self.every_frame,
        }


def frame_ms(result: ResultRecord) -> float:
    """Processing time of one frame: the node's "total" stage, else the sum of top-level stages."""
    if TOTAL_STAGE in result.stages:
        return result.stages[TOTAL_STAGE]
    return sum(v for k, v in result.stages.items() if "." not in k)


def save_result_overlay(path, bag, result: ResultRecord, tcp_offset_m: float = 0.0,
                        color_topic: str = COLOR_TOPIC, info_topic: str = INFO_TOPIC):
    """Draw ``result``'s grasps on the bag's colour frame with the same stamp; returns the path.

    Only for results in the camera frame (the bag's colour frame_id): grasps transformed to a
    target frame cannot be drawn on the image without the transform (FrameMismatchError).
    """
    from graspnet_edge_ros.visualization import save_overlay

    color, intrinsics, frame_id = read_bag_frame(bag, result.stamp_ns, color_topic, info_topic)
    if result.frame_id != frame_id:
        raise FrameMismatchError(f"the result is in frame {result.frame_id!r}, the image in {frame_id!r}")
    save_overlay(path, color, grasp_group_from_msg(result.message, tcp_offset_m), intrinsics)
    return Path(path)


def summary_json(summary: ReplaySummary) -> str:
    return json.dumps(summary.as_dict(), indent=2)
