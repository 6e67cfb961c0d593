"""Reading the header of a serialized ROS 2 message without ROS (bag tools outside ``ros/``)."""
from __future__ import annotations

import struct


def cdr_header(raw) -> tuple[int, str]:
    """(stamp ns, frame_id) of a CDR-serialized message that starts with a std_msgs/Header."""
    raw = memoryview(raw)
    little = raw[1] == 1
    order = "<" if little else ">"
    sec, nanosec, length = struct.unpack_from(order + "iII", raw, 4)
    frame_id = bytes(raw[16:16 + max(0, length - 1)]).decode("utf-8", "replace")
    return sec * 10**9 + nanosec, frame_id
