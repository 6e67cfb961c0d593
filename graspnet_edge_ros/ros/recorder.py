"""Records the node's outputs during a replay: raw subscriptions -> MCAP file + bookkeeping.

The raw CDR bytes go to the recording unchanged; GraspArray results and diagnostics are also
decoded (rosbags typestore) for the summary and for the replay's drain logic.
"""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np

from graspnet_edge_ros.errors import ConfigError
from graspnet_edge_ros.ros.replay_summary import ResultRecord
from graspnet_edge_ros.ros.typestore import DIAGNOSTIC_ARRAY_TYPE, GRASP_ARRAY_TYPE, MARKER_ARRAY_TYPE


class Recorder:
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
        return ResultRecord.from_message(self.typestore.deserialize_cdr(raw, GRASP_ARRAY_TYPE), now)

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


def matching_qos(publishers, depth: int = 100):
    """A subscription QoS compatible with every discovered publisher, as reliable as they allow."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliable = bool(publishers) and all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
    latched = bool(publishers) and all(
        p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
