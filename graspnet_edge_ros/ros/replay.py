"""Replay a ROS 2 bag into the graph and record what the grasp node publishes (no ``ros2`` CLI).

:func:`replay_bag` opens a bag (rosbag2 directory with MCAP or sqlite3 storage, or a bare .mcap /
.db3 file) with ``rosbags``, publishes every message as serialized CDR bytes
(``publisher.publish(bytes(raw))``: nothing is deserialized) at the recorded pace times
``rate``, and records the node's outputs (``~/grasps``, ``~/markers``, ``/diagnostics`` by
default) through raw subscriptions into an MCAP file, with this package's message types
registered from ``msg/*.msg``. It returns a :class:`ReplaySummary`: frames in, results out,
statuses, per-stage latency (from ``GraspArray.stage_latencies_ms``), end-to-end latency, dropped
frames (from the node's diagnostics) and wall time.

Order of events: wait until the node's output topics have publishers and our recorders are
matched to them, wait until the node subscribes to the bag's topics, play, then drain: stop once
the result for the last frame has arrived (the node only ever processes the newest frame, so
nothing else is pending), or once the node's diagnostics counters say every frame it received
was answered or dropped, or at a timeout that grows with the measured per-frame latency (a slow
node is waited for). With ``every_frame`` the next frame is published only after the node has
answered the previous one: one result per bag frame whatever the machine's speed (regression
runs). A ``stop`` event (set by the CLI on SIGINT/SIGTERM) ends playing or draining early; what
was recorded is still flushed and summarised.

Only rclpy-dependent code lives in functions; importing this module needs no ROS.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graspnet_edge_ros import NODE_NAME
from graspnet_edge_ros.cdr import cdr_header  # noqa: F401  (re-exported)
from graspnet_edge_ros.errors import ConfigError, GraspNetEdgeError, InputError
from graspnet_edge_ros.status import status_name

PACKAGE = "graspnet_edge_ros"
GRASP_ARRAY_TYPE = f"{PACKAGE}/msg/GraspArray"
MARKER_ARRAY_TYPE = "visualization_msgs/msg/MarkerArray"
DIAGNOSTIC_ARRAY_TYPE = "diagnostic_msgs/msg/DiagnosticArray"
DEFAULT_NODE_NAME = NODE_NAME
DEFAULT_FRAME_TOPIC = "/camera/color/image_raw"
TOTAL_STAGE = "total"
SETTLE_S = 0.3  # after both ends report a match: lets the reverse direction of discovery finish
OTHER_TOPICS_GRACE_S = 5.0
# Diagnostics counters count as final only if published this long after the last frame went out
# (frames still in transit would not be in them yet).
COUNTERS_SETTLE_S = 0.5
# A slow node gets this many times its slowest frame per frame still pending before drain gives up.
LATENCY_FACTOR = 3.0


class ReplayError(GraspNetEdgeError):
    """The replay could not run (no node on the graph, unreadable bag, node died, ...)."""


def output_topics(node_name: str = DEFAULT_NODE_NAME, namespace: str = "") -> dict[str, str]:
    """The node's published topics this module records, with their types."""
    base = f"{namespace.rstrip('/')}/{node_name}" if namespace else f"/{node_name}"
    return {f"{base}/grasps": GRASP_ARRAY_TYPE, f"{base}/markers": MARKER_ARRAY_TYPE,
            "/diagnostics": DIAGNOSTIC_ARRAY_TYPE}


# ------------------------------------------------------------------------- DDS large data
# Fast DDS's default shared-memory segment (512 KB) cannot carry a 1280x720 image to a
# best-effort subscriber: measured here, 0 of 5 rgb8 frames arrived, from reliable and from
# best-effort publishers alike. With a 32 MB segment in the *publishing* process all 5 arrived.
# The replay's own participant gets that segment (the node keeps the defaults), and UDP stays on
# the loopback interface.
FASTDDS_PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
LARGE_DATA_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<!-- written by graspnet_edge_ros.ros.replay: large shared-memory segment for the bag player -->
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>graspnet_edge_replay_shm</transport_id>
        <type>SHM</type>
        <segment_size>33554432</segment_size>
      </transport_descriptor>
      <transport_descriptor>
        <transport_id>graspnet_edge_replay_udp_loopback</transport_id>
        <type>UDPv4</type>
        <interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="graspnet_edge_replay" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>graspnet_edge_replay_shm</transport_id>
          <transport_id>graspnet_edge_replay_udp_loopback</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def large_data_profile_path() -> Path:
    """The Fast DDS profile above, written once to the temp dir (per user)."""
    import tempfile

    path = Path(tempfile.gettempdir()) / f"graspnet_edge_replay_fastdds_{os.getuid()}.xml"
    if not path.is_file() or path.read_text() != LARGE_DATA_PROFILE:
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(LARGE_DATA_PROFILE)
        temporary.replace(path)
    return path


def use_large_data_transport() -> bool:
    """Point this process's Fast DDS at the large-segment profile, unless the user configured
    Fast DDS themselves or uses another RMW. Takes effect only if no ROS context has been
    initialised in this process yet (Fast DDS reads the file once). True when applied."""
    rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not rmw.startswith("rmw_fastrtps") or os.environ.get(FASTDDS_PROFILE_ENV) \
            or os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE"):
        return False
    os.environ[FASTDDS_PROFILE_ENV] = str(large_data_profile_path())
    return True


def best_effort_large_images_are_lossy() -> bool:
    """True under Fast DDS 2.x (ROS 2 Humble, Iron, Jazzy: rclpy < 8).

    There, best-effort 1280x720 rgb8 images from another process were measured to arrive 0 to 2
    times in 3, with or without LARGE_DATA_PROFILE in the publisher (FASTDDS_BUILTIN_TRANSPORTS=
    LARGE_DATA and synchronous publishing did not help either); a reliable reader got 3 of 3. Fast
    DDS 3 (Kilted) with the profile delivered 3 of 3 best effort. Other RMWs: not measured, False.
    """
    import importlib.metadata

    if not os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp").startswith("rmw_fastrtps"):
        return False
    try:
        return int(importlib.metadata.version("rclpy").split(".")[0]) < 8
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return os.environ.get("ROS_DISTRO", "") in ("humble", "iron", "jazzy")


# ----------------------------------------------------------------------------- type support
def package_msg_dir() -> Path:
    """msg/ of this package: the installed share dir (ament index), else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory(PACKAGE)) / "msg"
        if share.is_dir():
            return share
    except (ImportError, LookupError, ValueError):
        pass
    source = Path(__file__).resolve().parents[2] / "msg"
    if source.is_dir():
        return source
    raise ReplayError(f"cannot find {PACKAGE}'s msg/*.msg (not in the ament index, not at {source})")


def typestore_with_package_types():
    """A ROS 2 Kilted rosbags typestore that also knows ``graspnet_edge_ros/msg/*``."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(package_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    typestore.register(types)
    return typestore


def message_class(msgtype: str):
    """rclpy message class of ``pkg/msg/Type``."""
    import importlib

    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise ReplayError(f"message type {msgtype} is not importable here ({exc}); "
                          "is the workspace sourced (scripts/env.sh)?") from exc


# --------------------------------------------------------------------------------- summary
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
                per_stage.setdefault("total (sum of stages)", []).append(_frame_ms(result))
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


# ------------------------------------------------------------------------------- recording
class _Recorder:
    """Raw subscriptions -> MCAP writer + decoded GraspArray / diagnostics bookkeeping."""

    def __init__(self, typestore, record_path: Path | None, node_name: str = ""):
        self.typestore = typestore
        self.node_name = node_name
        self.counters: dict[str, int] | None = None  # the node's frames_* counters, last diagnostics
        self.counters_s = 0.0
        self.lock = threading.Condition()
        self.results: list[ResultRecord] = []
        self.diagnostics: dict[str, dict] = {}
        self.diagnostics_count = 0
        self.markers_count = 0
        self.last_diag_s = 0.0
        self.dropped: int | None = None
        self.writer = None
        self.connections: dict[str, object] = {}
        self.final_path = record_path
        self.bag_dir = None
        if record_path is not None:
            from rosbags.rosbag2 import StoragePlugin, Writer

            record_path = Path(record_path)
            if record_path.exists():
                raise ConfigError(f"{record_path} exists already; choose a new --record path")
            # rosbags writes a rosbag2 directory; a *.mcap target gets just its .mcap file.
            self.bag_dir = record_path.with_name(record_path.name + ".partial") \
                if record_path.suffix == ".mcap" else record_path
            if self.bag_dir.exists():
                shutil.rmtree(self.bag_dir)
            record_path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = Writer(self.bag_dir, version=9, storage_plugin=StoragePlugin.MCAP)
            self.writer.open()

    def add_topic(self, topic: str, msgtype: str) -> None:
        if self.writer is not None and topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=self.typestore)

    def on_message(self, topic: str, msgtype: str, raw: bytes) -> None:
        now = time.monotonic()
        with self.lock:
            if self.writer is not None:
                self.writer.write(self.connections[topic], time.time_ns(), raw)
            if msgtype == GRASP_ARRAY_TYPE:
                self.results.append(self._result(raw, now))
            elif msgtype == DIAGNOSTIC_ARRAY_TYPE:
                self._diagnostics(raw, now)
            elif msgtype == MARKER_ARRAY_TYPE:
                self.markers_count += 1
            self.lock.notify_all()

    def _result(self, raw: bytes, now: float) -> ResultRecord:
        msg = self.typestore.deserialize_cdr(raw, GRASP_ARRAY_TYPE)
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        stages = {str(name): float(value) for name, value in zip(msg.stage_names, msg.stage_latencies_ms)}
        return ResultRecord(stamp, msg.header.frame_id, status_name(msg.status),
                            msg.status_reason, len(msg.grasps), stages, now, msg)

    def _diagnostics(self, raw: bytes, now: float) -> None:
        msg = self.typestore.deserialize_cdr(raw, DIAGNOSTIC_ARRAY_TYPE)
        self.diagnostics_count += 1
        self.last_diag_s = now
        for status in msg.status:
            level = status.level
            level = level[0] if isinstance(level, (bytes, bytearray, np.ndarray)) else level
            values = {kv.key: kv.value for kv in status.values}
            self.diagnostics[status.name] = {"level": int(level), "message": status.message, **values}
            if "frames_received" in values and (not self.node_name or status.name.startswith(self.node_name + ":")):
                try:
                    self.counters = {k: int(float(v)) for k, v in values.items() if k.startswith("frames_")}
                    self.counters_s = now
                except ValueError:
                    pass
            for key, value in values.items():
                if "drop" in key.lower():
                    try:
                        self.dropped = int(float(value))
                        break
                    except ValueError:
                        continue

    def close(self) -> str | None:
        if self.writer is None:
            return None
        with self.lock:
            self.writer.close()
            self.writer = None
        if self.bag_dir != self.final_path:
            inner = self.bag_dir / f"{self.bag_dir.name}.mcap"
            shutil.move(str(inner), str(self.final_path))
            shutil.rmtree(self.bag_dir)
        return str(self.final_path)


def _matching_qos(publishers, depth: int = 100):
    """A subscription QoS compatible with every discovered publisher, as reliable as they allow."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliable = bool(publishers) and all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
    latched = bool(publishers) and all(
        p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class ReplayInterrupted(ReplayError):
    """The replay was stopped (SIGINT/SIGTERM) before it started playing."""


def _wait(predicate, deadline: float, alive=None, poll_s: float = 0.05, stop=None) -> bool:
    while True:
        if predicate():
            return True
        if alive is not None and not alive():
            raise ReplayError("the node exited while the replay was waiting for it")
        if stop is not None and stop.is_set():
            raise ReplayInterrupted("interrupted while waiting for the node")
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


# ---------------------------------------------------------------------------------- replay
def replay_bag(bag, record: str | Path | None = None, *, rate: float = 1.0,
               node_name: str = DEFAULT_NODE_NAME, topics: dict[str, str] | None = None,
               frame_topic: str | None = None, start_timeout_s: float = 60.0, drain_timeout_s: float = 60.0,
               quiet_s: float | None = None, alive=None, log=print, clock: bool = False,
               large_data: bool = True, on_play=None, every_frame: bool = False,
               stop: threading.Event | None = None, reliable_inputs: bool = False) -> ReplaySummary:
    """Play ``bag`` into the running node and record its outputs (see the module docstring).

    Args:
        bag: rosbag2 directory (mcap or sqlite3) or a bare .mcap/.db3 file.
        record: output path; ``*.mcap`` = one MCAP file, anything else = a rosbag2 directory
            (MCAP storage); None = do not write (the summary is still computed).
        rate: playback speed factor (1 = recorded pace, 0.5 = half speed); must be > 0.
        topics: {topic: type} to record; default :func:`output_topics` of ``node_name``.
            The first GraspArray topic among them must get a publisher within ``start_timeout_s``.
        frame_topic: topic whose messages count as frames (default the colour image, else the
            first Image topic of the bag).
        quiet_s: drain stops this long after the last result (default: 3 s or 3x the slowest
            frame seen, whichever is longer).
        alive: callable returning False once the node process has died (aborts the replay).
        clock: also publish /clock (rosgraph_msgs/Clock) with bag time, for use_sim_time nodes.
        large_data: give this process's Fast DDS participant a 32 MB shared-memory segment (see
            ``use_large_data_transport``); without it best-effort subscribers get no HD images.
        on_play: called once, without arguments, right before the first message is published.
        every_frame: publish a frame only after the node answered the previous one (waiting at
            most ``drain_timeout_s`` or LATENCY_FACTOR x the slowest frame, whichever is longer).
        stop: when set (SIGINT/SIGTERM in the CLI), stop playing/draining; the summary says so.
        reliable_inputs: the node reads its inputs reliably, so every frame reaches it, some late
            (Fast DDS repairs lost fragments of large images after its heartbeat period): draining
            waits until its counters say it received every frame played (or the timeout).
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.rosbag2 import Reader

    from graspnet_edge_ros.ros.rclpy_compat import publisher_count

    if not (rate > 0 and math.isfinite(rate)):
        raise ConfigError(f"rate must be a positive number, got {rate}")
    bag = Path(bag)
    if not bag.exists():
        raise InputError(f"bag not found: {bag}")
    topics = dict(topics or output_topics(node_name))
    grasp_topic = next((t for t, kind in topics.items() if kind == GRASP_ARRAY_TYPE), None)
    if grasp_topic is None:
        raise ConfigError("the recorded topics must include a GraspArray topic")
    log = log or (lambda *_: None)
    started = time.monotonic()
    typestore = typestore_with_package_types()

    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
        raise InputError(f"cannot open bag {bag}: {exc}") from exc

    if large_data:
        use_large_data_transport()
    context = rclpy.Context()
    rclpy.init(context=context)
    recorder = None
    recorded = None
    executor = None
    spin_thread = None
    try:
        recorder = _Recorder(typestore, Path(record) if record else None, node_name)
        node = rclpy.create_node(f"graspnet_edge_replay_{os.getpid()}", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spin_thread = threading.Thread(target=executor.spin, name="replay-spin", daemon=True)
        spin_thread.start()

        # 1. the node's outputs: wait for its GraspArray publisher, then subscribe QoS-compatibly
        deadline = time.monotonic() + start_timeout_s
        if not _wait(lambda: node.get_publishers_info_by_topic(grasp_topic), deadline, alive, stop=stop):
            raise ReplayError(f"no publisher on {grasp_topic} after {start_timeout_s:.0f} s; is the node running "
                              f"(same ROS_DOMAIN_ID={_domain()}, node name {node_name!r})?")
        subscriptions = {}
        for topic, msgtype in topics.items():
            publishers = node.get_publishers_info_by_topic(topic)
            recorder.add_topic(topic, msgtype)
            subscriptions[topic] = node.create_subscription(
                message_class(msgtype), topic,
                lambda raw, _topic=topic, _type=msgtype: recorder.on_message(_topic, _type, raw),
                _matching_qos(publishers), raw=True)
        if not _wait(lambda: publisher_count(subscriptions[grasp_topic], node) > 0, deadline, alive, stop=stop):
            raise ReplayError(f"the recorder did not match the publisher of {grasp_topic} "
                              f"within {start_timeout_s:.0f} s")

        # 2. inputs: one publisher per bag connection; wait for the node's subscriptions
        connections = [c for c in reader.connections if c.msgtype]
        publishers = {}
        for conn in connections:
            if conn.topic not in publishers:
                qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.VOLATILE)
                publishers[conn.topic] = node.create_publisher(message_class(conn.msgtype), conn.topic, qos)
        clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            clock_pub = node.create_publisher(Clock, "/clock", 10)
        image_topics = [c.topic for c in connections if c.msgtype == "sensor_msgs/msg/Image"]
        frame_topic = frame_topic or (DEFAULT_FRAME_TOPIC if DEFAULT_FRAME_TOPIC in publishers else
                                      (image_topics[0] if image_topics else None))
        if frame_topic not in publishers:
            raise InputError(f"{bag}: no frame topic (looked for {frame_topic or 'an Image topic'}; "
                             f"bag topics: {sorted(publishers)})")
        # the node subscribes to its inputs together: once the frame topic is matched, give the
        # others a short grace period (a bag may carry topics nobody listens to, e.g. /tf_static)
        if not _wait(lambda: publishers[frame_topic].get_subscription_count() > 0, deadline, alive, stop=stop):
            raise ReplayError(f"nobody subscribes to {frame_topic} after {start_timeout_s:.0f} s")
        _wait(lambda: all(p.get_subscription_count() > 0 for p in publishers.values()),
              min(deadline, time.monotonic() + OTHER_TOPICS_GRACE_S), alive, stop=stop)
        unmatched = sorted(t for t, p in publishers.items() if p.get_subscription_count() == 0)
        if unmatched:
            log(f"replay: no subscriber on {', '.join(unmatched)}; playing them anyway")
        time.sleep(SETTLE_S)

        # 3. play, honouring the recorded log times
        log(f"replay: playing {bag} at {rate:g}x into {node_name}")
        input_stamps: list[int] = []
        published_at: dict[int, float] = {}
        count = 0
        if on_play is not None:
            on_play()
        play_start = time.monotonic()
        first_t = None
        last_check = play_start
        stop = stop or threading.Event()
        interrupted = ""
        header_topics = {c.topic for c in connections if c.msgtype in _HEADER_TYPES}
        for conn, t_ns, raw in reader.messages():
            if stop.is_set():
                interrupted = "stopped while playing"
                break
            if every_frame and input_stamps and conn.topic in header_topics \
                    and cdr_header(raw)[0] > input_stamps[-1]:
                # The next frame starts: wait for the previous one's answer, then shift the schedule.
                waited_from = time.monotonic()
                _await_answer(recorder, input_stamps[-1], drain_timeout_s, alive, stop)
                play_start += time.monotonic() - waited_from
            first_t = t_ns if first_t is None else first_t
            target = play_start + (t_ns - first_t) / 1e9 / rate
            delay = target - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            if clock_pub is not None:
                from rosgraph_msgs.msg import Clock
                from builtin_interfaces.msg import Time

                clock_pub.publish(Clock(clock=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9)))
            publishers[conn.topic].publish(bytes(raw))
            count += 1
            if conn.topic == frame_topic:
                stamp, _ = cdr_header(raw)
                input_stamps.append(stamp)
                published_at.setdefault(stamp, time.monotonic())
            if alive is not None and time.monotonic() - last_check > 0.5:
                last_check = time.monotonic()
                if not alive():
                    raise ReplayError(f"the node died during the replay after {len(input_stamps)} frames")
        play_end = time.monotonic()
        log(f"replay: {len(input_stamps)} frames published in {play_end - play_start:.1f} s; draining")

        # 4. drain: until the last frame is answered, results stop coming, or the timeout
        drain_reason = interrupted or _drain(recorder, input_stamps[-1] if input_stamps else None, play_end,
                                             drain_timeout_s, quiet_s, alive, stop,
                                             expect_received=len(input_stamps) if reliable_inputs else None)
        end = time.monotonic()
        with recorder.lock:
            results = list(recorder.results)
            e2e = [1e3 * (r.received_s - published_at[r.stamp_ns]) for r in results if r.stamp_ns in published_at]
            summary = ReplaySummary(
                bag=str(bag), record_path=None, frames_in=len(input_stamps), input_stamps_ns=input_stamps,
                results=results, wall_time_s=end - started, play_time_s=play_end - play_start,
                messages_published=count, diagnostics_received=recorder.diagnostics_count,
                markers_received=recorder.markers_count, dropped_frames=recorder.dropped,
                diagnostics=dict(recorder.diagnostics), e2e_latency_ms=e2e, drain_reason=drain_reason,
                every_frame=every_frame)
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if spin_thread is not None:
            spin_thread.join(timeout=5.0)
        context.try_shutdown()
        reader.close()
        if recorder is not None:
            try:
                recorded = recorder.close()
            except Exception:  # noqa: BLE001 - never mask the original error
                recorded = None
    summary.record_path = recorded
    return summary


_HEADER_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/CompressedImage")


def _latency_timeout(recorder: _Recorder, base_s: float, frames: int = 1) -> float:
    """``base_s``, or LATENCY_FACTOR x the slowest frame seen per frame when that is longer."""
    slowest = max((_frame_ms(r) for r in recorder.results), default=0.0) / 1e3
    return max(base_s, LATENCY_FACTOR * slowest * max(frames, 1))


def _await_answer(recorder: _Recorder, stamp_ns: int, timeout_s: float, alive, stop) -> bool:
    """Block until a result stamped ``stamp_ns`` arrived (every-frame mode); False on timeout/stop."""
    start = time.monotonic()
    with recorder.lock:
        while not any(r.stamp_ns == stamp_ns for r in recorder.results[-50:]):
            if stop.is_set() or time.monotonic() - start > _latency_timeout(recorder, timeout_s):
                return False
            if alive is not None and not alive():
                raise ReplayError("the node died during the replay")
            recorder.lock.wait(timeout=0.1)
    return True


def _drain(recorder: _Recorder, last_stamp: int | None, play_end: float, timeout_s: float,
           quiet_s: float | None, alive, stop: threading.Event | None = None, *,
           expect_received: int | None = None) -> str:
    """Wait for the node to finish what it received; returns why the wait ended.

    Done when the last frame is answered, or when the node's diagnostics counters (published
    after the last frame) account for every frame it received (processed + dropped + skipped).
    While they say frames are still in work, a slow node is waited for up to LATENCY_FACTOR x
    its slowest frame per pending frame (at least ``timeout_s``); without diagnostics, drain
    stops ``quiet_s`` after the last result. With ``expect_received`` (reliable inputs), the
    counters only end the wait once the node received that many frames.
    """
    answered_at = None
    with recorder.lock:
        while True:
            now = time.monotonic()
            results = recorder.results
            if stop is not None and stop.is_set():
                return "interrupted while draining"
            if last_stamp is not None and answered_at is None and any(r.stamp_ns == last_stamp for r in results):
                answered_at = now
            if answered_at is not None:
                # one more diagnostics message after the last result, so the drop counter is final
                if recorder.diagnostics_count == 0 or recorder.last_diag_s > answered_at or now - answered_at > 3.0:
                    return "last frame answered"
            counters = recorder.counters if recorder.counters_s > play_end + COUNTERS_SETTLE_S else None
            pending = None
            if counters is not None:
                pending = counters.get("frames_received", 0) - sum(
                    counters.get(k, 0) for k in ("frames_processed", "frames_dropped", "frames_skipped"))
                arrived = expect_received is None or counters.get("frames_received", 0) >= expect_received
                if answered_at is None and pending <= 0 and arrived:
                    return (f"every received frame answered or dropped (received {counters.get('frames_received')}, "
                            f"dropped {counters.get('frames_dropped', 0)})")
            in_flight = max(0, expect_received - counters.get("frames_received", 0)) \
                if expect_received is not None and counters is not None else 0
            deadline = play_end + _latency_timeout(recorder, timeout_s, (pending or 0) + in_flight + 1)
            if now >= deadline:
                return f"timeout after {deadline - play_end:.0f} s" + (
                    f" with {pending} frame(s) still in work" if pending else "")
            if recorder.counters is None:  # no diagnostics from this node: fall back to quiet time
                slowest = max((_frame_ms(r) for r in results), default=0.0) / 1e3
                quiet = quiet_s if quiet_s is not None else max(3.0, LATENCY_FACTOR * slowest)
                last_activity = max([play_end] + [r.received_s for r in results[-1:]])
                if answered_at is None and now - last_activity > quiet:
                    return f"no result for {quiet:.1f} s (no diagnostics to tell whether the node is still working)"
            if alive is not None and not alive():
                return "node exited"
            recorder.lock.wait(timeout=0.1)


def _frame_ms(result: ResultRecord) -> float:
    """Processing time of one frame: the node's "total" stage, else the sum of top-level stages."""
    if TOTAL_STAGE in result.stages:
        return result.stages[TOTAL_STAGE]
    return sum(v for k, v in result.stages.items() if "." not in k)


def _domain() -> str:
    return os.environ.get("ROS_DOMAIN_ID", "0 (unset)")


# ----------------------------------------------------------------------------- read-back
def read_recording(path, typestore=None) -> list[tuple[str, int, object]]:
    """(topic, log time ns, decoded message) of every message in a recording, in log order."""
    from rosbags.rosbag2 import Reader

    typestore = typestore or typestore_with_package_types()
    out = []
    with Reader(Path(path)) as reader:
        for conn, t_ns, raw in reader.messages():
            out.append((conn.topic, t_ns, typestore.deserialize_cdr(raw, conn.msgtype)))
    return out


def read_bag_frame(bag, stamp_ns: int, color_topic: str = DEFAULT_FRAME_TOPIC,
                   info_topic: str = "/camera/color/camera_info"):
    """(colour (H, W, 3) uint8 RGB, CameraIntrinsics, frame_id) of the frame stamped ``stamp_ns``."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    from graspnet_edge_ros.camera import CameraIntrinsics

    typestore = get_typestore(Stores.ROS2_KILTED)
    color = intrinsics = frame_id = None
    with Reader(Path(bag)) as reader:
        wanted = [c for c in reader.connections if c.topic in (color_topic, info_topic)]
        for conn, _, raw in reader.messages(connections=wanted):
            if cdr_header(raw)[0] != stamp_ns:
                continue
            msg = typestore.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == color_topic:
                color, frame_id = image_to_rgb(msg), msg.header.frame_id
            else:
                intrinsics = CameraIntrinsics.from_matrix(np.asarray(msg.k).reshape(3, 3), msg.width, msg.height)
            if color is not None and intrinsics is not None:
                return color, intrinsics, frame_id
    raise InputError(f"{bag}: no {color_topic} + {info_topic} pair stamped {stamp_ns}")


def image_to_rgb(msg) -> np.ndarray:
    """Colour Image (rosbags dataclass) -> (H, W, 3) uint8 RGB, by the node's own conversion."""
    from graspnet_edge_ros.camera import decode_color, image_to_array

    return decode_color(image_to_array(msg), msg.encoding)


def grasp_group_from_msg(msg, tcp_offset_m: float = 0.0):
    """GraspArray (rosbags or rclpy message) -> GraspGroup in the message's frame.

    Inverts the node's pose conversion: the GraspNet rotation is R_tcp @ P^T for the message's
    pose convention P, and the grasp point is the pose position minus ``tcp_offset_m`` times the
    approach (the node's tcp_offset_m parameter; it is not in the message).
    """
    from scipy.spatial.transform import Rotation

    from graspnet_edge_ros.grasps import GraspGroup
    from graspnet_edge_ros.poses import graspnet_to_tcp_rotation

    grasps = list(msg.grasps)
    if not grasps:
        return GraspGroup.empty()
    convention = msg.pose_convention or "z_approach_x_closing"
    permutation = graspnet_to_tcp_rotation(np.eye(3)[None], convention)[0]
    quats = np.array([[g.pose.orientation.x, g.pose.orientation.y, g.pose.orientation.z, g.pose.orientation.w]
                      for g in grasps])
    rotations = Rotation.from_quat(quats).as_matrix() @ permutation.T
    approach = np.array([[g.approach.x, g.approach.y, g.approach.z] for g in grasps])
    positions = np.array([[g.pose.position.x, g.pose.position.y, g.pose.position.z] for g in grasps])
    return GraspGroup.from_parts(
        scores=[g.score for g in grasps], widths=[g.width for g in grasps], depths=[g.depth for g in grasps],
        rotations=rotations, translations=positions - tcp_offset_m * approach,
        heights=[g.height for g in grasps], object_ids=[g.object_id for g in grasps])


def save_result_overlay(path, bag, result: ResultRecord, tcp_offset_m: float = 0.0,
                        color_topic: str = DEFAULT_FRAME_TOPIC, info_topic: str = "/camera/color/camera_info"):
    """Draw ``result``'s grasps on the bag's colour frame with the same stamp; returns the path.

    Only for results in the camera frame (the bag's colour frame_id): grasps transformed to a
    target frame cannot be drawn on the image without the transform.
    """
    from graspnet_edge_ros.visualization import save_overlay

    color, intrinsics, frame_id = read_bag_frame(bag, result.stamp_ns, color_topic, info_topic)
    if result.frame_id != frame_id:
        raise ValueError(f"the result is in frame {result.frame_id!r}, the image in {frame_id!r}")
    save_overlay(path, color, grasp_group_from_msg(result.message, tcp_offset_m), intrinsics)
    return Path(path)


def summary_json(summary: ReplaySummary) -> str:
    return json.dumps(summary.as_dict(), indent=2)
