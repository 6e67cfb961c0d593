"""A small TF buffer and listener for where ``tf2_ros`` is not importable (PyPI-only installs).

The node uses ``tf2_ros`` when it imports; otherwise this module, behind the same interface:
``TransformBuffer.lookup_transform(target, source, time, timeout)`` returns a
``geometry_msgs/TransformStamped`` (target <- source) and ``can_transform`` says whether it would,
and failures raise ``TransformException`` subclasses named as tf2's (``LookupException``,
``ConnectivityException``, ``ExtrapolationException``).

What it does, as tf2 does:
* ``TransformListener`` subscribes to ``/tf_static`` (reliable, transient local: a late joiner
  still gets the hand-eye calibration) and ``/tf``; every transform is an edge parent -> child of
  a tree (a child has one parent, the last one published).
* A lookup walks both frames up to their common ancestor and chains the edges. Static edges hold
  at any time. A dynamic edge is interpolated (linear translation, slerp rotation) between the
  two samples around the requested time; a time outside its samples is an extrapolation error
  (the data is stale: the request is newer than the newest sample; or the request is older than
  the oldest kept sample), unless it lies within ``extrapolation_tolerance_s`` of the nearest
  sample, which is then used as is. Time zero means "the latest": the newest time all dynamic
  edges of the chain share.
* Dynamic samples older than ``cache_time_s`` before the newest of their edge are dropped.
* ``lookup_transform`` waits up to ``timeout`` for data to arrive (filled by the executor thread
  while a detection thread waits), then raises.

The maths (quaternion <-> matrix) is ``conversions.transform_to_matrix`` /
``conversions.matrix_to_transform``, the same the node uses on tf2_ros's answers.
"""
from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from graspnet_edge_ros.ros.stamps import stamp_fields, stamp_nanoseconds

DEFAULT_CACHE_TIME_S = 10.0  # tf2_ros.Buffer's default
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"


class TransformException(Exception):
    """Base of every lookup failure (tf2_ros.TransformException's counterpart)."""


class LookupException(TransformException):
    """A frame is unknown."""


class ConnectivityException(TransformException):
    """Both frames are known but not in one tree."""


class ExtrapolationException(TransformException):
    """The requested time is outside the data of an edge of the chain."""


class InvalidArgumentException(TransformException):
    """A frame id is empty or the transform is malformed."""


@dataclass
class _Edge:
    """parent <- child: static matrix, or dynamic samples sorted by stamp."""

    parent: str
    static: np.ndarray | None = None
    stamps: list = field(default_factory=list)     # int ns, sorted
    matrices: list = field(default_factory=list)   # (4, 4) parent <- child

    def latest_ns(self) -> int | None:
        return None if self.static is not None or not self.stamps else self.stamps[-1]


def _ns(stamp) -> int:
    """Nanoseconds of an rclpy Time, a builtin_interfaces/Time or an int."""
    if isinstance(stamp, (int, np.integer)):
        return int(stamp)
    if hasattr(stamp, "nanoseconds"):
        return int(stamp.nanoseconds)
    return stamp_nanoseconds(stamp)


def _seconds(timeout) -> float:
    if timeout is None:
        return 0.0
    if hasattr(timeout, "nanoseconds"):
        return timeout.nanoseconds / 1e9
    return float(timeout)


def _stamp_text(ns: int) -> str:
    sec, nanosec = stamp_fields(ns)
    return f"{sec}.{nanosec:09d}"


def _interpolate(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation, Slerp

    rotations = Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]]))
    out = np.eye(4)
    out[:3, :3] = Slerp([0.0, 1.0], rotations)([fraction]).as_matrix()[0]
    out[:3, 3] = (1.0 - fraction) * a[:3, 3] + fraction * b[:3, 3]
    return out


def _inverse(matrix: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = matrix[:3, :3].T
    out[:3, 3] = -matrix[:3, :3].T @ matrix[:3, 3]
    return out


class TransformBuffer:
    """Transforms of a frame tree over time, with tf2_ros.Buffer's lookup interface (see module doc)."""

    def __init__(self, cache_time_s: float = DEFAULT_CACHE_TIME_S, extrapolation_tolerance_s: float = 0.0):
        self._edges: dict[str, _Edge] = {}
        self._cache_ns = int(cache_time_s * 1e9)
        self._tolerance_ns = int(extrapolation_tolerance_s * 1e9)
        self._changed = threading.Condition()

    # ----------------------------------------------------------------------------- filling
    def set_transform(self, transform, authority: str = "", static: bool = False) -> None:
        """Store one geometry_msgs/TransformStamped (parent = header.frame_id, child = child_frame_id)."""
        self._store(transform, static)

    def set_transform_static(self, transform, authority: str = "") -> None:
        self._store(transform, True)

    def _store(self, transform, static: bool) -> None:
        from graspnet_edge_ros.ros.conversions import transform_to_matrix

        parent = transform.header.frame_id.lstrip("/")
        child = transform.child_frame_id.lstrip("/")
        if not parent or not child or parent == child:
            raise InvalidArgumentException(f"transform {parent!r} -> {child!r}: frame ids must differ and be set")
        matrix = transform_to_matrix(transform.transform)
        stamp_ns = _ns(transform.header.stamp)
        with self._changed:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or static != (edge.static is not None):
                edge = self._edges[child] = _Edge(parent)  # a new parent (or kind) replaces the old edge
            if static:
                edge.static = matrix
            else:
                index = bisect.bisect_left(edge.stamps, stamp_ns)
                if index < len(edge.stamps) and edge.stamps[index] == stamp_ns:
                    edge.matrices[index] = matrix
                else:
                    edge.stamps.insert(index, stamp_ns)
                    edge.matrices.insert(index, matrix)
                cutoff = edge.stamps[-1] - self._cache_ns
                drop = bisect.bisect_left(edge.stamps, cutoff)
                if drop:
                    del edge.stamps[:drop], edge.matrices[:drop]
            self._changed.notify_all()

    # ----------------------------------------------------------------------------- lookups
    def all_frames(self) -> set[str]:
        with self._changed:
            return set(self._edges) | {edge.parent for edge in self._edges.values()}

    def lookup_transform(self, target_frame: str, source_frame: str, time, timeout=None):
        """geometry_msgs/TransformStamped target <- source at ``time`` (0 = latest); waits up to ``timeout``."""
        stamp_ns, matrix = self._wait_for(target_frame, source_frame, _ns(time), _seconds(timeout))
        from geometry_msgs.msg import TransformStamped

        from graspnet_edge_ros.ros.conversions import matrix_to_transform

        message = TransformStamped()
        message.header.frame_id, message.child_frame_id = target_frame, source_frame
        message.header.stamp.sec, message.header.stamp.nanosec = stamp_fields(stamp_ns)
        message.transform = matrix_to_transform(matrix)
        return message

    def lookup_matrix(self, target_frame: str, source_frame: str, time, timeout=None) -> np.ndarray:
        """(4, 4) target <- source at ``time``: lookup_transform without the message."""
        return self._wait_for(target_frame, source_frame, _ns(time), _seconds(timeout))[1]

    def can_transform(self, target_frame: str, source_frame: str, time, timeout=None, return_debug_tuple=False):
        try:
            self._wait_for(target_frame, source_frame, _ns(time), _seconds(timeout))
        except TransformException as exc:
            return (False, str(exc)) if return_debug_tuple else False
        return (True, "") if return_debug_tuple else True

    def _wait_for(self, target: str, source: str, stamp_ns: int, timeout_s: float):
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._changed:
            while True:
                try:
                    return self._resolve(target.lstrip("/"), source.lstrip("/"), stamp_ns)
                except TransformException:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise
                    self._changed.wait(remaining)

    def _chain(self, frame: str) -> list[str]:
        """[frame, parent, grandparent, ..., root] (a cycle stops at the repeat)."""
        chain, seen = [frame], {frame}
        while chain[-1] in self._edges:
            parent = self._edges[chain[-1]].parent
            if parent in seen:
                break
            chain.append(parent)
            seen.add(parent)
        return chain

    def _resolve(self, target: str, source: str, stamp_ns: int) -> tuple[int, np.ndarray]:
        """(stamp used, target <- source matrix); called with the lock held."""
        if not target or not source:
            raise InvalidArgumentException("frame ids must not be empty")
        known = set(self._edges) | {edge.parent for edge in self._edges.values()}
        if target == source:
            return stamp_ns, np.eye(4)
        missing = [frame for frame in (target, source) if frame not in known]
        if missing:
            frames = ", ".join(repr(f) for f in dict.fromkeys(missing))
            raise LookupException(f"frame {frames} does not exist (known: {sorted(known) or 'none yet'})")
        source_chain, target_chain = self._chain(source), self._chain(target)
        common = next((frame for frame in source_chain if frame in target_chain), None)
        if common is None:
            raise ConnectivityException(f"{source!r} and {target!r} are not in one tree: {source!r} leads to "
                                        f"{source_chain[-1]!r}, {target!r} to {target_chain[-1]!r}")
        up_source = source_chain[:source_chain.index(common)]  # children whose edges lead source -> common
        up_target = target_chain[:target_chain.index(common)]
        if stamp_ns == 0:
            latest = [self._edges[child].latest_ns() for child in up_source + up_target]
            latest = [ns for ns in latest if ns is not None]
            stamp_ns = min(latest) if latest else 0
        common_from_source = np.eye(4)
        for child in up_source:  # common <- ... <- source
            common_from_source = self._edge_matrix(child, stamp_ns, source, target) @ common_from_source
        common_from_target = np.eye(4)
        for child in up_target:
            common_from_target = self._edge_matrix(child, stamp_ns, source, target) @ common_from_target
        return stamp_ns, _inverse(common_from_target) @ common_from_source

    def _edge_matrix(self, child: str, stamp_ns: int, source: str, target: str) -> np.ndarray:
        edge = self._edges[child]
        if edge.static is not None:
            return edge.static
        stamps = edge.stamps
        what = f"{edge.parent!r} -> {child!r} (looking up {source!r} -> {target!r})"
        if stamp_ns > stamps[-1]:
            if stamp_ns - stamps[-1] <= self._tolerance_ns:
                return edge.matrices[-1]
            raise ExtrapolationException(
                f"{what}: requested time {_stamp_text(stamp_ns)} is {(stamp_ns - stamps[-1]) / 1e9:.3f} s after the "
                f"latest data at {_stamp_text(stamps[-1])} (stale transform: extrapolation into the future)")
        if stamp_ns < stamps[0]:
            if stamps[0] - stamp_ns <= self._tolerance_ns:
                return edge.matrices[0]
            raise ExtrapolationException(
                f"{what}: requested time {_stamp_text(stamp_ns)} is {(stamps[0] - stamp_ns) / 1e9:.3f} s before the "
                f"earliest data at {_stamp_text(stamps[0])} (extrapolation into the past)")
        index = bisect.bisect_left(stamps, stamp_ns)
        if stamps[index] == stamp_ns:
            return edge.matrices[index]
        before, after = stamps[index - 1], stamps[index]
        return _interpolate(edge.matrices[index - 1], edge.matrices[index], (stamp_ns - before) / (after - before))


class TransformListener:
    """Fills a TransformBuffer from /tf and /tf_static (tf2_ros.TransformListener's counterpart).

    Raises:
        ImportError: tf2_msgs is not importable either (the caller reports it).
    """

    def __init__(self, buffer: TransformBuffer, node, *, qos_depth: int = 100):
        from rclpy.callback_groups import ReentrantCallbackGroup
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from tf2_msgs.msg import TFMessage

        self.buffer = buffer
        group = ReentrantCallbackGroup()  # never behind the detection worker or the input callbacks
        dynamic_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=qos_depth,
                                 reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        static_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=qos_depth,
                                reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._subscriptions = [
            node.create_subscription(TFMessage, TF_TOPIC, self._on_tf, dynamic_qos, callback_group=group),
            node.create_subscription(TFMessage, TF_STATIC_TOPIC, self._on_tf_static, static_qos,
                                     callback_group=group),
        ]
        self._logger = node.get_logger()

    def _on_tf(self, msg) -> None:
        self._add(msg, static=False)

    def _on_tf_static(self, msg) -> None:
        self._add(msg, static=True)

    def _add(self, msg, static: bool) -> None:
        for transform in msg.transforms:
            try:
                self.buffer.set_transform(transform, "listener", static=static)
            except Exception as exc:  # noqa: BLE001 - one bad transform must not stop the others
                self._logger.warning(f"ignoring transform {transform.header.frame_id!r} -> "
                                     f"{transform.child_frame_id!r}: {exc}", throttle_duration_sec=5.0)
