"""builtin_interfaces/Time <-> integer nanoseconds, written once.

Dependency-free (no rclpy): stamps only need ``sec`` and ``nanosec``, so the same helpers serve
rclpy messages, rosbags dataclasses and test doubles.
"""

NANOSECONDS_PER_SECOND = 1_000_000_000


def stamp_nanoseconds(stamp) -> int:
    """Integer nanoseconds of a builtin_interfaces/Time-like ``stamp`` (``sec``, ``nanosec``)."""
    return int(stamp.sec) * NANOSECONDS_PER_SECOND + int(stamp.nanosec)


def stamp_fields(nanoseconds: int) -> tuple[int, int]:
    """(sec, nanosec) of a builtin_interfaces/Time holding ``nanoseconds``."""
    sec, nanosec = divmod(int(nanoseconds), NANOSECONDS_PER_SECOND)
    return sec, nanosec
