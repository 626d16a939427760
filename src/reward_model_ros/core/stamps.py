"""Time stamps as integer nanoseconds: one conversion for ROS messages, rosbags messages and
stamps parsed from serialized headers (anything with `sec` and `nanosec`)."""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def nanoseconds(sec: int, nanosec: int) -> int:
    """sec + nanosec as one integer count of nanoseconds (exact; no float rounding)."""
    return int(sec) * NS_PER_S + int(nanosec)


def stamp_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time (rclpy's, or a rosbags message's) in nanoseconds."""
    return nanoseconds(stamp.sec, stamp.nanosec)
