"""Pose-hold success labelling without ROS: is the end-effector at the target pose, and has
it stayed there for `hold_steps` consecutive steps?"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def rpy_to_quaternion(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Roll, pitch, yaw (radians, fixed axes X-Y-Z as in ROS/tf) -> quaternion (x, y, z, w)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return np.array(
        [
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy,
        ]
    )


def quaternion_angle(q1: np.ndarray, q2: np.ndarray) -> float:
    """The rotation angle (radians, 0..pi) between two orientations (x, y, z, w)."""
    a = np.asarray(q1, float) / np.linalg.norm(q1)
    b = np.asarray(q2, float) / np.linalg.norm(q2)
    return 2.0 * math.acos(min(1.0, abs(float(np.dot(a, b)))))


@dataclass
class PoseHoldLabeller:
    target: tuple[float, float, float, float, float, float]
    """x, y, z (m), roll, pitch, yaw (rad), as the seed's target_ee_pose"""
    position_tolerance: float = 0.01
    orientation_tolerance: float = 0.1
    hold_steps: int = 20
    streak: int = 0
    done: bool = False
    _q: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.target) != 6:
            raise ValueError(
                f"target_ee_pose needs 6 values (x, y, z, roll, pitch, yaw), got {len(self.target)}"
            )
        self._q = rpy_to_quaternion(*self.target[3:])

    def reset(self) -> None:
        self.streak, self.done = 0, False

    def errors(self, position, orientation) -> tuple[float, float]:
        """(position error in m, orientation error in rad) to the target."""
        return (
            float(np.linalg.norm(np.asarray(position, float) - np.asarray(self.target[:3]))),
            quaternion_angle(orientation, self._q),
        )

    def update(self, position, orientation) -> tuple[bool, bool]:
        """One pose sample -> (in tolerance now, success reached with this sample: true once
        per episode, when `hold_steps` consecutive samples were in tolerance)."""
        dp, da = self.errors(position, orientation)
        inside = dp <= self.position_tolerance and da <= self.orientation_tolerance
        self.streak = self.streak + 1 if inside else 0
        reached = inside and not self.done and self.streak >= self.hold_steps
        if reached:
            self.done = True
        return inside, reached
