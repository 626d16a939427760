"""A robot's RL observation without ROS: the vector arm_observer publishes, the freshness of
the arm state it is built from, and the rate limit on the camera frames that trigger it.

The vector is the tool centre point's position (x, y, z, m) and orientation (quaternion
x, y, z, w) in the base frame, then, optionally, one position per joint in a fixed order
(the joints of the first JointState message seen; later messages may carry them in any
order, or split over several publishers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

POSE_NAMES = (
    "tcp_pose.x",
    "tcp_pose.y",
    "tcp_pose.z",
    "tcp_pose.qx",
    "tcp_pose.qy",
    "tcp_pose.qz",
    "tcp_pose.qw",
)


class RateGate:
    """At most `rate` events per second, on a fixed grid of due times: an event is due once
    `now` reaches the next due time (less `slack` periods, for jitter), so a 10 Hz camera under
    a 10 Hz gate passes every frame and a 30 Hz one every third. After a pause longer than a
    period the grid restarts at the next event (no burst to catch up)."""

    def __init__(self, rate: float, slack: float = 0.1) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.period = 1.0 / rate
        self.slack = slack * self.period
        self.next_due = -math.inf

    def due(self, now: float) -> bool:
        return now >= self.next_due - self.slack

    def mark(self, now: float) -> None:
        """An event was let through at `now`."""
        late = now - self.next_due
        on_grid = -self.slack <= late < self.period - self.slack
        self.next_due = self.next_due + self.period if on_grid else now + self.period


@dataclass
class JointTable:
    """The newest position of every joint by name, with its arrival time; the vector's joint
    order is the order of the first message."""

    order: list[str] = field(default_factory=list)
    positions: dict[str, float] = field(default_factory=dict)
    arrivals: dict[str, float] = field(default_factory=dict)

    def update(self, names: Sequence[str], positions: Sequence[float], now: float) -> None:
        if not self.order:
            self.order = [n for n, _ in zip(names, positions, strict=False)]
        for name, value in zip(names, positions, strict=False):
            self.positions[name] = float(value)
            self.arrivals[name] = now

    def oldest_arrival(self) -> float:
        """The arrival time of the least recently updated joint (-inf when one was never seen)."""
        if not self.order:
            return -math.inf
        return min(self.arrivals.get(n, -math.inf) for n in self.order)

    def values(self) -> list[float]:
        return [self.positions[n] for n in self.order]


def observation_vector(
    position: Sequence[float],
    orientation: Sequence[float],
    joints: JointTable | None = None,
) -> tuple[list[str], list[float]]:
    """(names, data) of the observation: tcp x, y, z, qx, qy, qz, qw (+ joint positions)."""
    if len(position) != 3 or len(orientation) != 4:
        raise ValueError(f"a pose needs 3 + 4 values, got {len(position)} + {len(orientation)}")
    names = list(POSE_NAMES)
    data = [float(v) for v in (*position, *orientation)]
    if joints is not None:
        names += [f"joint.{n}" for n in joints.order]
        data += joints.values()
    return names, data


def stale_reason(
    now: float,
    max_age: float,
    pose_arrival: float | None,
    joints: JointTable | None = None,
) -> str | None:
    """Why an observation at `now` may not be built from the arm state, or None when it is fresh.

    `pose_arrival` / the joints' arrivals are receipt times on the same clock as `now`
    (a monotonic clock: stamps from another machine's clock play no part)."""
    if pose_arrival is None:
        return "no pose received yet"
    age = now - pose_arrival
    if age > max_age:
        return f"the pose is {age:.3f} s old (max_pose_age {max_age:g} s)"
    if joints is not None:
        if not joints.order:
            return "no joint states received yet"
        joint_age = now - joints.oldest_arrival()
        if joint_age > max_age:
            return f"the joint states are {joint_age:.3f} s old (max_pose_age {max_age:g} s)"
    return None
