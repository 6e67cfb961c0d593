"""Fast DDS transport settings of the bag player (``graspnet-edge replay``'s own participant).

Only the replaying process gets them; the node runs with the user's DDS settings
(``replay_cli.node_environment`` removes the profile again for the child).
"""
from __future__ import annotations

import os
from pathlib import Path

# Fast DDS's default shared-memory segment (512 KB) cannot carry a 1280x720 image to a
# best-effort subscriber: measured here, 0 of 5 rgb8 frames arrived, from reliable and from
# best-effort publishers alike. With a 32 MB segment in the *publishing* process all 5 arrived.
# The replay's own participant gets that segment (the node keeps the defaults), and UDP stays on
# the loopback interface.
FASTDDS_PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
LARGE_DATA_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<!-- written by graspnet_edge_ros.ros.fastdds_profile: large shared-memory segment for the bag player -->
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
