"""Safety between a policy and a Cartesian impedance controller, without ROS.

A policy action (end-effector delta position + rotation vector + gripper) becomes a pose
target in this order:
1. refuse NaN or inf anywhere in the action or in the measured pose (no target at all);
2. clip the step: the translation to `max_step_position` metres (Euclidean norm, direction
   kept) and the rotation vector to `max_step_rotation` radians;
3. anchor on the MEASURED pose (never on the previous target, so targets cannot run away
   from an arm that is blocked or lagging);
4. clip to the absolute workspace box: x, y, z and roll, pitch, yaw (fixed axes X-Y-Z, as
   ROS / tf); an angle range whose low end is above its high end wraps through +-pi (a
   gripper pointing down has roll near +-pi: `roll in [pi - 0.3, -pi + 0.3]`);
5. cap the distance between the target and the measured pose (position and rotation
   angle); for actions the cap is the step limit, for other targets (reset moves)
   `max_target_distance` / `max_target_rotation`.
A last check verifies the result (finite, in the box, within the cap) and refuses it
otherwise, so that a bug here shows as a refusal instead of a motion.

When the measured pose itself lies outside the box (the arm was moved there by hand), the
cap wins over the box: the target moves towards the box by at most the cap per step.

`Watchdog` latches a fault when actions stop or the measured state goes stale (the adapter
then holds the measured pose); only `enable()` clears it. `GripperLogic` turns the
continuous gripper command into open/close commands with hysteresis and a minimum interval
between toggles.

RPY clipping is ill-conditioned near pitch = +-pi/2: keep the box's pitch range away from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from reward_model_ros.core.poses import quaternion_angle, rpy_to_quaternion

TWO_PI = 2.0 * math.pi
# numerical slack of the final verification (metres, radians)
EPS = 1e-9


# --- rotations ---------------------------------------------------------------------------
def wrap_angle(a: float) -> float:
    """An angle in [-pi, pi)."""
    return (a + math.pi) % TWO_PI - math.pi


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a * b for quaternions (x, y, z, w): rotate by b, then by a."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


def quaternion_from_rotvec(v: np.ndarray) -> np.ndarray:
    """Rotation vector (unit axis times angle, rad) -> quaternion (x, y, z, w)."""
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.array([0.0, 0.0, 0.0, 1.0])
    axis = np.asarray(v, float) / angle
    s = math.sin(angle / 2)
    return np.array([axis[0] * s, axis[1] * s, axis[2] * s, math.cos(angle / 2)])


def quaternion_to_rpy(q: np.ndarray) -> tuple[float, float, float]:
    """Quaternion (x, y, z, w) -> roll, pitch, yaw (fixed axes X-Y-Z), the inverse of
    `core.poses.rpy_to_quaternion`."""
    x, y, z, w = np.asarray(q, float) / np.linalg.norm(q)
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw


def _clip_norm(v: np.ndarray, limit: float) -> tuple[np.ndarray, bool]:
    """`v` scaled down to norm `limit` (direction kept); safe for huge finite values."""
    biggest = float(np.max(np.abs(v)))
    if biggest == 0.0:
        return np.zeros_like(v, dtype=float), False
    unit = np.asarray(v, float) / biggest  # no overflow in the norm of 1e308s
    norm = float(np.linalg.norm(unit)) * biggest
    if norm <= limit * (1 + 1e-12):  # rounding of an earlier clip is not a new clip
        return np.asarray(v, float), False
    return unit * (limit / float(np.linalg.norm(unit))), True


# --- angle ranges that may wrap through +-pi ---------------------------------------------
def _full(lo: float, hi: float) -> bool:
    return hi - lo >= TWO_PI - 1e-12


def _width(lo: float, hi: float) -> float:
    return TWO_PI if _full(lo, hi) else (hi - lo) % TWO_PI


def in_angle_range(a: float, lo: float, hi: float, tol: float = 0.0) -> bool:
    """Whether angle `a` lies in [lo, hi], an arc that wraps through +-pi when lo > hi."""
    if _full(lo, hi):
        return True
    u = (a - lo + tol) % TWO_PI
    return u <= _width(lo, hi) + 2 * tol


def clip_angle(a: float, lo: float, hi: float) -> float:
    """`a` clipped to the arc [lo, hi] (wrapping through +-pi when lo > hi): unchanged
    inside, else the nearer end of the arc, by angle around the circle."""
    if _full(lo, hi):
        return wrap_angle(a)
    u, width = (a - lo) % TWO_PI, _width(lo, hi)
    if u <= width:
        return wrap_angle(a)
    return wrap_angle(hi) if u - width <= TWO_PI - u else wrap_angle(lo)


def _angle_path(m: float, t: float, lo: float, hi: float) -> float:
    """Signed change from angle m to angle t: along the arc [lo, hi] when both lie in it
    (so every angle in between stays in the range), else the shortest way round."""
    if not _full(lo, hi) and in_angle_range(m, lo, hi) and in_angle_range(t, lo, hi):
        return (t - lo) % TWO_PI - (m - lo) % TWO_PI
    return wrap_angle(t - m)


# --- poses and configuration -------------------------------------------------------------
@dataclass(frozen=True)
class Pose:
    """A Cartesian pose in the robot base frame."""

    position: tuple[float, float, float]
    """x, y, z in metres"""
    orientation: tuple[float, float, float, float]
    """unit quaternion x, y, z, w"""

    @staticmethod
    def from_xyz_rpy(values) -> Pose:
        """From [x, y, z, roll, pitch, yaw] (m, rad)."""
        x, y, z, roll, pitch, yaw = (float(v) for v in values)
        return Pose((x, y, z), tuple(float(c) for c in rpy_to_quaternion(roll, pitch, yaw)))

    def rpy(self) -> tuple[float, float, float]:
        return quaternion_to_rpy(np.asarray(self.orientation))

    def xyz_rpy(self) -> tuple[float, ...]:
        return (*self.position, *self.rpy())


@dataclass
class ArmSafetyConfig:
    """The limits every target obeys (see the module docstring for the order)."""

    max_step_position: float = 0.03
    """metres: longest translation one action may ask for (Euclidean norm; longer ones are
    scaled down, direction kept)"""
    max_step_rotation: float = 0.1
    """radians: largest rotation one action may ask for (angle of the rotation vector)"""
    workspace_low: tuple[float, ...] = (0.3, -0.3, 0.02, math.pi - 0.6, -0.6, -0.8)
    """lower corner of the workspace box: x, y, z (m), roll, pitch, yaw (rad); an angle whose
    low is above its high wraps through +-pi"""
    workspace_high: tuple[float, ...] = (0.7, 0.3, 0.5, -math.pi + 0.6, 0.6, 0.8)
    """upper corner of the workspace box: x, y, z (m), roll, pitch, yaw (rad)"""
    max_target_distance: float = 0.05
    """metres: farthest a non-action target (a reset move) may be from the measured position"""
    max_target_rotation: float = 0.2
    """radians: largest rotation between a non-action target and the measured orientation"""

    def validate(self) -> None:
        """:raises ValueError: naming the field and the rule."""
        for name in ("max_step_position", "max_step_rotation", "max_target_distance", "max_target_rotation"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a finite number > 0")
        for name in ("workspace_low", "workspace_high"):
            values = getattr(self, name)
            if len(values) != 6 or not all(math.isfinite(v) for v in values):
                raise ValueError(f"{name} needs 6 finite values: x, y, z, roll, pitch, yaw; got {values!r}")
            if any(abs(a) > math.pi + 1e-9 for a in values[3:]):
                raise ValueError(f"{name}: roll, pitch, yaw must be in [-pi, pi]; got {values[3:]!r}")
        for i, axis in enumerate("xyz"):
            if not self.workspace_low[i] < self.workspace_high[i]:
                raise ValueError(
                    f"workspace_low {axis}={self.workspace_low[i]} must be below workspace_high "
                    f"{axis}={self.workspace_high[i]}"
                )
        pitch_lo, pitch_hi = self.workspace_low[4], self.workspace_high[4]
        if not (pitch_lo <= pitch_hi and pitch_lo > -math.pi / 2 + 0.05 and pitch_hi < math.pi / 2 - 0.05):
            raise ValueError(
                f"workspace pitch range [{pitch_lo}, {pitch_hi}] must lie inside (-pi/2, pi/2), away from "
                "the gimbal lock where roll and yaw are not defined"
            )

    def in_box(self, pose: Pose, tol: float = EPS) -> bool:
        """Whether `pose` lies in the workspace box (within `tol`)."""
        lo, hi = self.workspace_low, self.workspace_high
        if any(not lo[i] - tol <= pose.position[i] <= hi[i] + tol for i in range(3)):
            return False
        angles = pose.rpy()
        return all(in_angle_range(angles[i], lo[3 + i], hi[3 + i], tol) for i in range(3))

    def clip_to_box(self, pose: Pose) -> Pose:
        lo, hi = self.workspace_low, self.workspace_high
        position = tuple(min(max(pose.position[i], lo[i]), hi[i]) for i in range(3))
        angles = pose.rpy()
        rpy = [clip_angle(angles[i], lo[3 + i], hi[3 + i]) for i in range(3)]
        return Pose.from_xyz_rpy([*position, *rpy])


@dataclass(frozen=True)
class TargetResult:
    """What became of one action (or reset waypoint)."""

    pose: Pose | None
    """the target to send; None when refused"""
    refused: str = ""
    """why there is no target (empty when there is one)"""
    clipped: tuple[str, ...] = ()
    """the limits that changed it: step_position, step_rotation, box, distance, rotation"""


def distance(a: Pose, b: Pose) -> tuple[float, float]:
    """(metres between the positions, radians between the orientations)."""
    d = float(np.linalg.norm(np.subtract(a.position, b.position)))
    return d, quaternion_angle(np.asarray(a.orientation), np.asarray(b.orientation))


def _finite(values) -> bool:
    return all(math.isfinite(float(v)) for v in values)


class ArmSafety:
    """Turns actions (or absolute waypoints) into safe pose targets; holds no state."""

    def __init__(self, config: ArmSafetyConfig) -> None:
        config.validate()
        self.config = config

    def check_measured(self, measured: Pose) -> str:
        """Why the measured pose cannot anchor a target ('' when it can)."""
        if not _finite(measured.position) or not _finite(measured.orientation):
            return f"the measured pose has NaN or infinite values {measured}"
        norm = float(np.linalg.norm(measured.orientation))
        if not 0.5 < norm < 1.5:
            return (
                f"the measured orientation {measured.orientation} is not a unit quaternion (norm {norm:.3g})"
            )
        return ""

    def target_from_action(self, delta_position, delta_rotation, measured: Pose) -> TargetResult:
        """The target for one action: steps 1-5 of the module docstring."""
        values = [*delta_position, *delta_rotation]
        if len(values) != 6:
            return TargetResult(None, f"an action needs 3 + 3 values, got {len(values)}")
        if not _finite(values):
            return TargetResult(None, f"refused an action with NaN or infinite values {values}")
        bad = self.check_measured(measured)
        if bad:
            return TargetResult(None, bad)
        cfg, clipped = self.config, []
        dp, cut = _clip_norm(np.asarray(values[:3], float), cfg.max_step_position)
        if cut:
            clipped.append("step_position")
        dr, cut = _clip_norm(np.asarray(values[3:], float), cfg.max_step_rotation)
        if cut:
            clipped.append("step_rotation")
        q_measured = np.asarray(measured.orientation, float) / np.linalg.norm(measured.orientation)
        anchored = Pose(
            tuple(float(v) for v in np.add(measured.position, dp)),
            tuple(float(v) for v in quaternion_multiply(quaternion_from_rotvec(dr), q_measured)),
        )
        return self._bound(anchored, measured, cfg.max_step_position, cfg.max_step_rotation, clipped)

    def target_from_pose(self, wanted: Pose, measured: Pose) -> TargetResult:
        """An absolute target (a reset waypoint) made safe: steps 1, 4 and 5."""
        if not _finite(wanted.position) or not _finite(wanted.orientation):
            return TargetResult(None, f"refused a target with NaN or infinite values {wanted}")
        bad = self.check_measured(measured)
        if bad:
            return TargetResult(None, bad)
        cfg = self.config
        return self._bound(wanted, measured, cfg.max_target_distance, cfg.max_target_rotation, [])

    # --- steps 4 and 5, and the final check ------------------------------------------------
    def _bound(
        self, target: Pose, measured: Pose, max_distance: float, max_rotation: float, clipped: list[str]
    ) -> TargetResult:
        cfg = self.config
        boxed = cfg.clip_to_box(target)
        if not cfg.in_box(target, tol=1e-12):
            clipped.append("box")
        # Where a capped target starts from: the measured pose brought into the box, when
        # that is itself within the cap (an arm a hair outside the box, as tracking errors
        # leave it), so that the capped target stays in the box; else the measured pose.
        home = cfg.clip_to_box(measured)
        m_pos, b_pos = np.asarray(measured.position, float), np.asarray(boxed.position, float)
        position = b_pos
        if float(np.linalg.norm(b_pos - m_pos)) > max_distance * (1 + 1e-12):
            clipped.append("distance")
            start = np.asarray(home.position, float)
            if float(np.linalg.norm(start - m_pos)) > max_distance:
                start = m_pos
            position = _farthest(
                lambda f: start + f * (b_pos - start),
                lambda p: float(np.linalg.norm(p - m_pos)) <= max_distance,
            )
        q_m = np.asarray(measured.orientation, float)
        if quaternion_angle(np.asarray(boxed.orientation), q_m) > max_rotation:
            clipped.append("rotation")
            start_pose = (
                home if quaternion_angle(np.asarray(home.orientation), q_m) <= max_rotation else measured
            )
            rpy = _farthest(
                self._rpy_path(start_pose, boxed),
                lambda a: quaternion_angle(rpy_to_quaternion(*a), q_m) <= max_rotation,
            )
            result = Pose.from_xyz_rpy([*position, *rpy])
        else:
            result = Pose(tuple(float(v) for v in position), boxed.orientation)
        problem = self._verify(result, measured, home, max_distance, max_rotation)
        if problem:
            return TargetResult(None, f"internal safety check failed, no target sent: {problem}")
        return TargetResult(result, "", tuple(clipped))

    def _rpy_path(self, start: Pose, end: Pose):
        """f (0..1) -> RPY angles a fraction f of the way from start to end, inside the box's
        angle ranges when both ends are."""
        lo, hi = self.config.workspace_low, self.config.workspace_high
        a, b = start.rpy(), end.rpy()
        path = [_angle_path(a[i], b[i], lo[3 + i], hi[3 + i]) for i in range(3)]
        return lambda f: tuple(wrap_angle(a[i] + f * path[i]) for i in range(3))

    def _verify(
        self, target: Pose, measured: Pose, home: Pose, max_distance: float, max_rotation: float
    ) -> str:
        if not _finite(target.position) or not _finite(target.orientation):
            return f"non-finite target {target}"
        d, angle = distance(target, measured)
        if d > max_distance + EPS:
            return f"target {d:.4f} m from the measured pose (limit {max_distance})"
        if angle > max_rotation + 1e-7:
            return f"target {angle:.4f} rad from the measured orientation (limit {max_rotation})"
        # a pose in the box within the caps exists (`home`): then the target must be in the box
        home_d, home_angle = distance(home, measured)
        reachable = home_d <= max_distance and home_angle <= max_rotation
        if reachable and not self.config.in_box(target, tol=1e-7):
            return f"target {target.xyz_rpy()} outside the workspace box"
        return ""


def _farthest(along, ok, iterations: int = 40):
    """along(f) for the largest f in [0, 1] with ok(along(f)), by bisection; ok(along(0))
    must hold (the allowed set is taken to be an interval starting at 0)."""
    low, high = 0.0, 1.0
    for _ in range(iterations):
        mid = (low + high) / 2
        if ok(along(mid)):
            low = mid
        else:
            high = mid
    return along(low)


# --- watchdog ----------------------------------------------------------------------------
class Mode(StrEnum):
    DISABLED = "disabled"
    """not sending targets until ~/enable"""
    ACTIVE = "active"
    """following actions"""
    RESETTING = "resetting"
    """moving to the home pose; actions are ignored"""
    FAULT = "fault"
    """holding the measured pose until ~/enable"""


@dataclass
class WatchdogConfig:
    """When the adapter stops following actions and holds the measured pose."""

    period: float = 0.1
    """seconds: the control period (1 / control rate)"""
    action_timeout_periods: int = 2
    """no accepted action for this many periods while active latches a fault (counted from
    the first action after enable, a reset or an episode's end: until then the target is the
    pose the adapter anchored, and holding it is safe)"""
    state_timeout: float = 0.15
    """seconds without a measured pose (while active or resetting) latches a fault"""

    def validate(self) -> None:
        if not (math.isfinite(self.period) and self.period > 0):
            raise ValueError(f"period={self.period!r} must be > 0")
        if self.action_timeout_periods < 1:
            raise ValueError(f"action_timeout_periods={self.action_timeout_periods!r} must be >= 1")
        if not (math.isfinite(self.state_timeout) and self.state_timeout > 0):
            raise ValueError(f"state_timeout={self.state_timeout!r} must be > 0")


@dataclass
class Watchdog:
    """The adapter's mode; a fault latches until `enable()`. Times are monotonic seconds."""

    config: WatchdogConfig = field(default_factory=WatchdogConfig)
    mode: Mode = Mode.DISABLED
    fault: str = ""
    """why the fault latched (kept after enable() as `last_fault`)"""
    last_fault: str = ""
    faults: int = 0
    last_action: float = -math.inf
    last_state: float = -math.inf
    armed: bool = False
    """an action was followed since the last enable or reset: the action deadline runs"""

    def __post_init__(self) -> None:
        self.config.validate()

    def on_state(self, now: float) -> None:
        self.last_state = now

    def state_fresh(self, now: float) -> bool:
        return now - self.last_state <= self.config.state_timeout

    def on_action(self, now: float) -> bool:
        """An action arrived: True when it is to be followed (active and state fresh)."""
        if self.mode is not Mode.ACTIVE:
            return False
        if self.check(now):
            return False
        self.last_action, self.armed = now, True
        return True

    def trip(self, reason: str) -> bool:
        """Latch a fault; True if it was not latched already (the first reason is kept)."""
        if self.mode is Mode.FAULT:
            return False
        self.mode, self.fault = Mode.FAULT, reason
        self.faults += 1
        return True

    def check(self, now: float) -> str:
        """Latch a fault if one is due; returns its reason when it latched just now."""
        if self.mode in (Mode.ACTIVE, Mode.RESETTING) and not self.state_fresh(now):
            age = now - self.last_state
            why = (
                "no measured pose yet"
                if math.isinf(age)
                else f"measured state stale: no pose for {age:.3f} s (limit {self.config.state_timeout} s)"
            )
            return why if self.trip(why) else ""
        limit = self.config.action_timeout_periods * self.config.period
        if self.mode is Mode.ACTIVE and self.armed and now - self.last_action > limit:
            why = f"no action for {now - self.last_action:.3f} s (limit {limit:.3f} s)"
            return why if self.trip(why) else ""
        return ""

    def enable(self, now: float) -> tuple[bool, str]:
        """Clear a latched fault and follow actions; the action deadline arms with the first one
        (the caller anchors the target on the measured pose, which is safe to hold)."""
        if not self.state_fresh(now):
            return False, "no fresh measured pose: cannot anchor targets (is the state topic publishing?)"
        cleared = self.fault
        if cleared:
            self.last_fault = cleared
        self.mode, self.fault, self.last_action, self.armed = Mode.ACTIVE, "", now, False
        return True, f"enabled (cleared fault: {cleared})" if cleared else "enabled"

    def episode_ended(self) -> None:
        """The learner ended its episode: no actions are due until its next one (the deadline
        arms again with the first action). A latched fault stays latched."""
        self.armed = False

    def disable(self) -> None:
        """Stop following actions; a latched fault stays latched."""
        if self.mode is not Mode.FAULT:
            self.mode = Mode.DISABLED

    def begin_reset(self, now: float) -> tuple[bool, str]:
        if self.mode is Mode.FAULT:
            return False, f"fault latched ({self.fault}): call ~/enable first"
        if self.mode is Mode.DISABLED:
            return False, "the adapter is disabled: call ~/enable first"
        if self.mode is Mode.RESETTING:
            return False, "a reset is already in progress: wait for it"
        if not self.state_fresh(now):
            return False, "no fresh measured pose"
        self.mode = Mode.RESETTING
        return True, ""

    def end_reset(self, now: float) -> None:
        """The reset move finished: follow actions; the deadline arms with the first one (the
        target is the home pose until then)."""
        if self.mode is Mode.RESETTING:
            self.mode, self.last_action, self.armed = Mode.ACTIVE, now, False


# --- gripper -----------------------------------------------------------------------------
OPEN, CLOSED = "open", "closed"


@dataclass
class GripperConfig:
    """From the continuous command (-1 close .. +1 open) to open/close commands."""

    close_below: float = -0.5
    """a command at or below this closes the gripper"""
    open_above: float = 0.5
    """a command at or above this opens it; in between the gripper keeps its state (hysteresis)"""
    min_interval: float = 1.0
    """seconds: toggles closer together than this are held back (a chattering policy)"""

    def validate(self) -> None:
        if not -1.0 <= self.close_below < self.open_above <= 1.0:
            raise ValueError(
                f"gripper thresholds: need -1 <= close_below ({self.close_below}) < open_above "
                f"({self.open_above}) <= 1"
            )
        if not (math.isfinite(self.min_interval) and self.min_interval >= 0):
            raise ValueError(f"min_interval={self.min_interval!r} must be >= 0")


@dataclass
class GripperLogic:
    """The gripper's commanded state; `update()` says when to send a command."""

    config: GripperConfig = field(default_factory=GripperConfig)
    state: str | None = None
    """OPEN, CLOSED, or None before the first command"""
    last_toggle: float = -math.inf
    toggles: int = 0
    held_back: int = 0
    """toggles refused because the previous one was too recent"""

    def __post_init__(self) -> None:
        self.config.validate()

    def update(self, command: float, now: float) -> str | None:
        """OPEN or CLOSED when a command is to be sent now, else None."""
        if not math.isfinite(command):
            return None
        if command <= self.config.close_below:
            wanted = CLOSED
        elif command >= self.config.open_above:
            wanted = OPEN
        else:
            return None
        if wanted == self.state:
            return None
        if now - self.last_toggle < self.config.min_interval:
            self.held_back += 1
            return None
        self.state, self.last_toggle = wanted, now
        self.toggles += 1
        return wanted

    def force(self, state: str, now: float) -> str:
        """Command `state` regardless of the interval (a reset opening the gripper)."""
        self.state, self.last_toggle = state, now
        return state


def min_jerk(s: float) -> float:
    """Minimum-jerk time scaling: 0 at s=0, 1 at s=1, zero velocity and acceleration at both ends."""
    s = min(max(s, 0.0), 1.0)
    return s * s * s * (10 - 15 * s + 6 * s * s)


def interpolate(start: Pose, goal: Pose, s: float) -> Pose:
    """The pose a fraction `s` (0..1) of the way from start to goal (linear, slerp)."""
    p = np.add(start.position, np.multiply(s, np.subtract(goal.position, start.position)))
    q0, q1 = np.asarray(start.orientation, float), np.asarray(goal.orientation, float)
    q0, q1 = q0 / np.linalg.norm(q0), q1 / np.linalg.norm(q1)
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + s * (q1 - q0)
    else:
        theta = math.acos(dot)
        q = (math.sin((1 - s) * theta) * q0 + math.sin(s * theta) * q1) / math.sin(theta)
    q = q / np.linalg.norm(q)
    return Pose(tuple(float(v) for v in p), tuple(float(v) for v in q))
