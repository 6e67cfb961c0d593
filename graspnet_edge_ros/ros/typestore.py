"""Message types for reading and writing bags with ``rosbags`` (pure Python, no rclpy needed).

The rosbags typestore is ROS 2 Kilted's plus this package's ``msg/*.msg``; ``message_class``
finds the rclpy class of a type for the replay's publishers and raw subscriptions.
"""
from __future__ import annotations

from pathlib import Path

from graspnet_edge_ros.errors import ReplayError

PACKAGE = "graspnet_edge_ros"
GRASP_ARRAY_TYPE = f"{PACKAGE}/msg/GraspArray"
MARKER_ARRAY_TYPE = "visualization_msgs/msg/MarkerArray"
DIAGNOSTIC_ARRAY_TYPE = "diagnostic_msgs/msg/DiagnosticArray"


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


def read_recording(path, typestore=None) -> list[tuple[str, int, object]]:
    """(topic, log time ns, decoded message) of every message in a recording, in log order."""
    from rosbags.rosbag2 import Reader

    typestore = typestore or typestore_with_package_types()
    out = []
    with Reader(Path(path)) as reader:
        for conn, t_ns, raw in reader.messages():
            out.append((conn.topic, t_ns, typestore.deserialize_cdr(raw, conn.msgtype)))
    return out
