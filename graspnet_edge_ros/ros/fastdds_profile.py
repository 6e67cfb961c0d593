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
#
# Its writers also announce themselves every 100 ms instead of every 3 s: a sample written before
# the node's reader has matched the writer (discovery completes on the writer's side first) is
# repaired only at the writer's next heartbeat. In one CI run on 2 loaded cores the first frame of
# a bag reached the node 2.5 s late that way, together with the second, and was dropped.
# The variable naming the default profiles file: Fast DDS 2.x reads only FASTRTPS_DEFAULT_PROFILES_FILE,
# 3.x only FASTDDS_DEFAULT_PROFILES_FILE (read off the same two libraries).
PROFILE_ENV = {2: "FASTRTPS_DEFAULT_PROFILES_FILE", 3: "FASTDDS_DEFAULT_PROFILES_FILE"}
HEARTBEAT_PERIOD_NS = 100_000_000
# Fast DDS 3 spells the XML elements of WriterTimes in snake case; 2.x in camel case (read off
# libfastdds.so.3.2.2 and libfastrtps.so.2.14.5). An unknown element voids the whole file.
HEARTBEAT_PERIOD_ELEMENT = {2: "heartbeatPeriod", 3: "heartbeat_period"}
LARGE_DATA_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<!-- written by graspnet_edge_ros.ros.fastdds_profile: large shared-memory segment and a short
     heartbeat for the bag player (Fast DDS {major}.x) -->
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
    <data_writer profile_name="graspnet_edge_replay_writer" is_default_profile="true">
      <times>
        <{heartbeat}><sec>0</sec><nanosec>{heartbeat_ns}</nanosec></{heartbeat}>
      </times>
    </data_writer>
  </profiles>
</dds>
"""


def fast_dds_major() -> int:
    """2 under ROS 2 Humble, Iron, Jazzy (rclpy < 8), 3 from Kilted on."""
    import importlib.metadata

    try:
        return 2 if int(importlib.metadata.version("rclpy").split(".")[0]) < 8 else 3
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 2 if os.environ.get("ROS_DISTRO", "") in ("foxy", "galactic", "humble", "iron", "jazzy") else 3


def large_data_profile(major: int | None = None) -> str:
    """The player's Fast DDS profile, in the XML spelling of Fast DDS ``major`` (default: installed)."""
    major = major or fast_dds_major()
    return LARGE_DATA_PROFILE.format(major=major, heartbeat=HEARTBEAT_PERIOD_ELEMENT[major],
                                     heartbeat_ns=HEARTBEAT_PERIOD_NS)


def large_data_profile_path() -> Path:
    """The Fast DDS profile above, written once to the temp dir (per user and Fast DDS major version)."""
    import tempfile

    major = fast_dds_major()
    profile = large_data_profile(major)
    path = Path(tempfile.gettempdir()) / f"graspnet_edge_replay_fastdds{major}_{os.getuid()}.xml"
    if not path.is_file() or path.read_text() != profile:
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(profile)
        temporary.replace(path)
    return path


def profile_env_variable() -> str:
    """The environment variable the installed Fast DDS reads its default profiles file from."""
    return PROFILE_ENV[fast_dds_major()]


def use_large_data_transport() -> bool:
    """Point this process's Fast DDS at the large-segment profile, unless the user configured
    Fast DDS themselves or uses another RMW. Takes effect only if no ROS context has been
    initialised in this process yet (Fast DDS reads the file once). True when applied."""
    rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not rmw.startswith("rmw_fastrtps") or os.environ.get(profile_env_variable()):
        return False  # the user's own profile (a variable the installed Fast DDS ignores does not count)
    os.environ[profile_env_variable()] = str(large_data_profile_path())
    return True


def best_effort_large_images_are_lossy() -> bool:
    """True under Fast DDS 2.x (ROS 2 Humble, Iron, Jazzy: rclpy < 8).

    There, best-effort 1280x720 rgb8 images from another process were measured to arrive 0 to 2
    times in 3 (FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA and synchronous publishing did not help); a
    reliable reader got 3 of 3. That measurement named the profile in FASTDDS_DEFAULT_PROFILES_FILE,
    which Fast DDS 2.x does not read, so the profile was not tried there; reliable inputs stay the
    choice until it is. Fast DDS 3 (Kilted) with the profile delivered 3 of 3 best effort. Other
    RMWs: not measured, False.
    """
    if not os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp").startswith("rmw_fastrtps"):
        return False
    return fast_dds_major() < 3
