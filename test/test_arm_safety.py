"""The franka adapter's safety core, without ROS: an adversarial fuzz, the roll wrap, the
watchdog latch and the gripper's hysteresis. Rotations are checked with scipy, an
implementation independent of the one under test."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from reward_model_ros.core.arm_safety import (
    CLOSED,
    OPEN,
    ArmSafety,
    ArmSafetyConfig,
    GripperConfig,
    GripperLogic,
    Mode,
    Pose,
    Watchdog,
    WatchdogConfig,
    clip_angle,
    in_angle_range,
    interpolate,
    min_jerk,
    quaternion_to_rpy,
)

Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

PI = math.pi
CFG = ArmSafetyConfig(
    max_step_position=0.03,
    max_step_rotation=0.1,
    workspace_low=(0.3, -0.3, 0.02, PI - 0.3, -0.4, -0.8),
    workspace_high=(0.7, 0.3, 0.5, -PI + 0.3, 0.4, 0.8),
    max_target_distance=0.05,
    max_target_rotation=0.2,
)


def rot(pose: Pose):
    return Rotation.from_quat(pose.orientation)  # scipy's order is x, y, z, w too


def oracle_in_arc(a: float, lo: float, hi: float, tol: float = 1e-7) -> bool:
    """The arc test written the plain way: [lo, hi], or [lo, pi] + [-pi, hi] when lo > hi."""
    if lo <= hi:
        return lo - tol <= a <= hi + tol
    return a >= lo - tol or a <= hi + tol or abs(abs(a) - PI) < tol


def oracle_in_box(pose: Pose, cfg: ArmSafetyConfig = CFG) -> bool:
    lo, hi = cfg.workspace_low, cfg.workspace_high
    inside = all(lo[i] - 1e-9 <= pose.position[i] <= hi[i] + 1e-9 for i in range(3))
    roll, pitch, yaw = rot(pose).as_euler("xyz")  # lowercase: fixed axes X, Y, Z (ROS rpy)
    return inside and all(oracle_in_arc(a, lo[3 + i], hi[3 + i]) for i, a in enumerate((roll, pitch, yaw)))


def oracle_rotation(a: Pose, b: Pose) -> float:
    return float((rot(a) * rot(b).inv()).magnitude())


def random_pose_in_box(rng: np.random.Generator, cfg: ArmSafetyConfig = CFG) -> Pose:
    lo, hi = cfg.workspace_low, cfg.workspace_high
    xyz = [rng.uniform(lo[i], hi[i]) for i in range(3)]
    angles = []
    for i in range(3):
        width = (hi[3 + i] - lo[3 + i]) % (2 * PI)
        angles.append((lo[3 + i] + rng.uniform(0, width) + PI) % (2 * PI) - PI)
    return Pose.from_xyz_rpy([*xyz, *angles])


def adversarial_action(rng: np.random.Generator) -> list[float]:
    kind = rng.integers(6)
    if kind == 0:  # plausible policy output
        return list(rng.normal(0, 0.02, 6))
    if kind == 1:  # large
        return list(rng.normal(0, 1.0, 6))
    if kind == 2:  # huge, up to the largest floats
        return list(rng.choice([-1, 1], 6) * 10.0 ** rng.uniform(0, 308, 6))
    if kind == 3:  # exactly at or on the axes
        return [float(v) for v in rng.choice([0.0, 0.03, -0.03, 0.1, -0.1, 1e-300], 6)]
    values = list(rng.normal(0, 0.05, 6))
    values[rng.integers(6)] = float(rng.choice([math.nan, math.inf, -math.inf]))
    return values


def test_adversarial_fuzz_never_leaves_the_box_nor_exceeds_the_step_limit():
    """12k actions; measured poses anywhere in the box, and along the trajectory an arm that
    follows its targets (imperfectly) would take, so that the box edges are reached."""
    rng = np.random.default_rng(13)
    safety = ArmSafety(CFG)
    measured = random_pose_in_box(rng)
    counts = {"targets": 0, "refused": 0, "box": 0, "rotation": 0}
    for i in range(12_000):
        if i % 50 == 0:
            measured = random_pose_in_box(rng)
        action = adversarial_action(rng)
        result = safety.target_from_action(action[:3], action[3:], measured)
        if not all(math.isfinite(v) for v in action):
            assert result.pose is None and "NaN or infinite" in result.refused, (action, result)
            counts["refused"] += 1
            continue
        assert result.pose is not None, (action, measured, result.refused)
        target = result.pose
        counts["targets"] += 1
        counts["box"] += "box" in result.clipped
        counts["rotation"] += "rotation" in result.clipped
        assert all(math.isfinite(v) for v in (*target.position, *target.orientation))
        assert oracle_in_box(target), (action, measured.xyz_rpy(), target.xyz_rpy())
        d = float(np.linalg.norm(np.subtract(target.position, measured.position)))
        assert d <= CFG.max_step_position + 1e-9, (action, d)
        assert oracle_rotation(target, measured) <= CFG.max_step_rotation + 1e-7, action
        # the arm moves most of the way to the target, with noise: its next measured pose
        follow = interpolate(measured, target, rng.uniform(0.5, 1.0))
        jitter = Pose.from_xyz_rpy(np.add(follow.xyz_rpy(), rng.normal(0, 1e-4, 6)))
        measured = jitter if CFG.in_box(jitter) else follow
    assert counts["targets"] > 7000 and counts["refused"] > 3000
    assert counts["box"] > 100 and counts["rotation"] > 10, counts  # the edges were exercised


def test_a_nan_or_broken_measured_pose_gives_no_target():
    safety = ArmSafety(CFG)
    good = Pose.from_xyz_rpy([0.5, 0, 0.2, PI, 0, 0])
    for bad in (
        Pose((math.nan, 0.0, 0.2), good.orientation),
        Pose(good.position, (0.0, 0.0, 0.0, math.inf)),
        Pose(good.position, (0.0, 0.0, 0.0, 0.0)),
    ):
        result = safety.target_from_action([0.01, 0, 0], [0, 0, 0], bad)
        assert result.pose is None and result.refused
        assert safety.target_from_pose(good, bad).pose is None


def test_the_target_is_anchored_on_the_measured_pose_not_on_the_last_target():
    safety = ArmSafety(CFG)
    measured = Pose.from_xyz_rpy([0.5, 0, 0.2, PI, 0, 0])
    for _ in range(20):  # the same action again and again, the arm not moving (blocked)
        target = safety.target_from_action([0.5, 0, 0], [0, 0, 0], measured).pose
    assert target.position == pytest.approx((0.53, 0.0, 0.2))


def test_step_clipping_keeps_the_direction():
    safety = ArmSafety(CFG)
    measured = Pose.from_xyz_rpy([0.5, 0, 0.2, PI, 0, 0])
    result = safety.target_from_action([3.0, 4.0, 0.0], [0, 0, 0], measured)
    assert result.clipped == ("step_position",)
    assert np.subtract(result.pose.position, measured.position) == pytest.approx([0.018, 0.024, 0.0])


def test_roll_wraps_through_pi():
    """Box roll [pi - 0.3, -pi + 0.3]: crossing pi is inside; the far side (roll 0) never is."""
    safety = ArmSafety(CFG)
    measured = Pose.from_xyz_rpy([0.5, 0, 0.2, PI - 0.05, 0, 0])
    across = safety.target_from_action([0, 0, 0], [0.1, 0, 0], measured)  # to -pi + 0.05
    assert "box" not in across.clipped
    assert across.pose.rpy()[0] == pytest.approx(-PI + 0.05)
    edge = Pose.from_xyz_rpy([0.5, 0, 0.2, -PI + 0.25, 0, 0])
    beyond = safety.target_from_action([0, 0, 0], [0.1, 0, 0], edge)  # would be -pi + 0.35
    assert "box" in beyond.clipped and beyond.pose.rpy()[0] == pytest.approx(-PI + 0.3)
    other = Pose.from_xyz_rpy([0.5, 0, 0.2, PI - 0.25, 0, 0])
    back = safety.target_from_action([0, 0, 0], [-0.1, 0, 0], other)  # would be pi - 0.35
    assert back.pose.rpy()[0] == pytest.approx(PI - 0.3)
    # an absolute target on the far side is pulled to the nearer end, by the rotation cap
    far = safety.target_from_pose(Pose.from_xyz_rpy([0.5, 0, 0.2, 0.5, 0, 0]), measured)
    roll = far.pose.rpy()[0]
    assert oracle_in_arc(roll, PI - 0.3, -PI + 0.3) and oracle_rotation(far.pose, measured) <= 0.2 + 1e-7


def test_angle_ranges():
    lo, hi = PI - 0.3, -PI + 0.3
    assert in_angle_range(PI, lo, hi) and in_angle_range(-PI, lo, hi) and in_angle_range(PI - 0.3, lo, hi)
    assert not in_angle_range(0.0, lo, hi) and not in_angle_range(PI - 0.31, lo, hi)
    assert clip_angle(PI - 0.5, lo, hi) == pytest.approx(lo)
    assert clip_angle(-PI + 0.5, lo, hi) == pytest.approx(hi)
    assert clip_angle(3.0, lo, hi) == pytest.approx(3.0)
    assert clip_angle(0.5, -0.4, 0.4) == pytest.approx(0.4) and clip_angle(-3.0, -0.4, 0.4) == pytest.approx(
        -0.4
    )
    assert clip_angle(2.0, -PI, PI) == pytest.approx(2.0)  # the full circle: no limit
    for roll, pitch, yaw in [(PI - 0.1, 0.2, -0.3), (-PI + 0.1, -0.3, 0.7), (0.3, 0.1, 3.0)]:
        got = quaternion_to_rpy(Pose.from_xyz_rpy([0, 0, 0, roll, pitch, yaw]).orientation)
        assert got == pytest.approx(tuple(Rotation.from_euler("xyz", [roll, pitch, yaw]).as_euler("xyz")))


def test_a_measured_pose_outside_the_box_moves_back_towards_it_by_at_most_the_cap():
    """The cap wins over the box: no jump into the box, but never away from it."""
    rng = np.random.default_rng(5)
    safety = ArmSafety(CFG)
    for _ in range(500):
        inside = random_pose_in_box(rng)
        outside = Pose.from_xyz_rpy(np.add(inside.xyz_rpy(), [*rng.normal(0, 0.2, 3), 0, 0, 0]))
        action = adversarial_action(rng)
        if not all(math.isfinite(v) for v in action):
            continue
        target = safety.target_from_action(action[:3], action[3:], outside).pose
        assert float(np.linalg.norm(np.subtract(target.position, outside.position))) <= 0.03 + 1e-9
        assert oracle_rotation(target, outside) <= 0.1 + 1e-7

        def gap(p):
            lo, hi = np.array(CFG.workspace_low[:3]), np.array(CFG.workspace_high[:3])
            return float(np.linalg.norm(np.maximum(0, lo - p) + np.maximum(0, p - hi)))

        assert gap(np.array(target.position)) <= gap(np.array(outside.position)) + 1e-9


def test_reset_waypoints_obey_the_box_and_the_target_cap():
    safety = ArmSafety(CFG)
    measured = Pose.from_xyz_rpy([0.35, -0.25, 0.1, PI - 0.2, 0.3, 0.5])
    home = Pose.from_xyz_rpy([0.9, 0.5, 0.9, 0.0, 0.0, 0.0])  # outside the box on purpose
    result = safety.target_from_pose(home, measured)
    assert {"box", "distance", "rotation"} <= set(result.clipped)
    d = float(np.linalg.norm(np.subtract(result.pose.position, measured.position)))
    assert d <= 0.05 + 1e-9 and oracle_rotation(result.pose, measured) <= 0.2 + 1e-7
    assert oracle_in_box(result.pose)
    assert min_jerk(0) == 0 and min_jerk(1) == 1 and min_jerk(0.5) == pytest.approx(0.5)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="max_step_position"):
        ArmSafety(ArmSafetyConfig(max_step_position=math.nan))
    with pytest.raises(ValueError, match="workspace_low x"):
        ArmSafety(ArmSafetyConfig(workspace_low=(0.8, -0.3, 0.0, 3.0, -0.2, -0.2)))
    with pytest.raises(ValueError, match="gimbal"):
        ArmSafety(ArmSafetyConfig(workspace_low=(0.3, -0.3, 0.0, 3.0, -1.6, -0.2)))
    with pytest.raises(ValueError, match="6 finite values"):
        ArmSafety(ArmSafetyConfig(workspace_high=(1.0, 1.0)))


# --- watchdog ----------------------------------------------------------------------------
def test_watchdog_latches_when_actions_stop_and_only_enable_clears_it():
    wd = Watchdog(WatchdogConfig(period=0.1, action_timeout_periods=2, state_timeout=0.15))
    assert wd.mode is Mode.DISABLED and not wd.on_action(0.0)
    assert wd.enable(0.0) == (False, pytest.approx(wd.enable(0.0)[1]))  # no pose yet
    wd.on_state(0.0)
    assert wd.enable(0.0)[0] and wd.mode is Mode.ACTIVE
    t = 0.0
    for _ in range(10):  # actions every period: no fault
        t += 0.1
        wd.on_state(t)
        assert wd.check(t) == "" and wd.on_action(t)
    wd.on_state(t + 0.19)
    assert wd.check(t + 0.19) == ""  # within 2 periods: not yet
    wd.on_state(t + 0.21)
    why = wd.check(t + 0.21)
    assert "no action" in why and wd.mode is Mode.FAULT
    wd.on_state(t + 0.3)
    assert not wd.on_action(t + 0.3) and wd.mode is Mode.FAULT  # latched: actions ignored
    assert wd.check(t + 1.0) == ""  # reported once
    wd.disable()
    assert wd.mode is Mode.FAULT  # disable does not clear it
    ok, message = wd.enable(t + 0.3)
    assert ok and "cleared fault: no action" in message and wd.mode is Mode.ACTIVE and wd.faults == 1


def test_the_action_deadline_arms_with_the_first_action_after_enable_or_reset():
    """Between ~/enable (or a reset's end) and the first action the target is the anchored
    pose: a learner may take its time to start. Once actions flow, a stall latches."""
    wd = Watchdog(WatchdogConfig(period=0.1, action_timeout_periods=2, state_timeout=0.15))
    wd.on_state(0.0)
    assert wd.enable(0.0)[0]
    for t in (0.5, 1.0, 2.0):  # no action yet: no deadline
        wd.on_state(t)
        assert wd.check(t) == "" and wd.mode is Mode.ACTIVE
    assert wd.on_action(2.0)
    wd.on_state(2.25)
    assert "no action" in wd.check(2.25)  # armed: the stall latches
    wd.enable(2.25)
    assert wd.begin_reset(2.25)[0]
    wd.end_reset(2.3)
    wd.on_state(3.0)
    assert wd.check(3.0) == ""  # after a reset: disarmed again until the first action
    wd.on_state(3.2)
    assert wd.check(3.2) == "" and wd.mode is Mode.ACTIVE
    assert wd.on_action(3.2)
    wd.episode_ended()  # the learner ended its episode: no deadline until its next action
    wd.on_state(4.0)
    assert wd.check(4.0) == "" and wd.mode is Mode.ACTIVE


def test_watchdog_latches_on_a_stale_state_even_while_actions_arrive():
    wd = Watchdog(WatchdogConfig(period=0.1, action_timeout_periods=2, state_timeout=0.15))
    wd.on_state(0.0)
    wd.enable(0.0)
    assert wd.on_action(0.1)
    assert not wd.on_action(0.16)  # the last pose is 0.16 s old: refused, fault latched
    assert wd.mode is Mode.FAULT and "stale" in wd.fault
    ok, message = wd.enable(0.2)
    assert not ok and "no fresh measured pose" in message
    wd.on_state(0.25)
    assert wd.enable(0.25)[0]


def test_watchdog_reset_modes():
    wd = Watchdog(WatchdogConfig(period=0.1))
    wd.on_state(0.0)
    assert not wd.begin_reset(0.0)[0]  # disabled
    wd.enable(0.0)
    assert wd.begin_reset(0.0)[0] and wd.mode is Mode.RESETTING
    assert not wd.begin_reset(0.0)[0]
    wd.on_state(1.0)
    assert wd.check(1.0) == ""  # no actions expected while resetting
    assert not wd.on_action(1.0)
    wd.end_reset(1.0)
    assert wd.mode is Mode.ACTIVE and wd.check(1.1) == ""
    wd.trip("test")
    assert not wd.begin_reset(1.1)[0]


# --- gripper -----------------------------------------------------------------------------
def test_gripper_hysteresis_and_minimum_interval():
    g = GripperLogic(GripperConfig(close_below=-0.5, open_above=0.5, min_interval=1.0))
    assert g.update(0.0, 0.0) is None and g.state is None  # in the dead band: nothing yet
    assert g.update(-0.6, 0.0) == CLOSED
    assert g.update(-0.9, 0.1) is None  # already closed
    assert g.update(0.45, 0.2) is None and g.state == CLOSED  # inside the band: keep
    assert g.update(0.6, 0.5) is None and g.held_back == 1  # too soon after the last toggle
    assert g.update(0.6, 1.0) == OPEN
    assert g.update(math.nan, 5.0) is None and g.state == OPEN
    assert g.force(OPEN, 5.0) == OPEN


def test_a_chattering_gripper_command_toggles_at_most_once_per_interval():
    g = GripperLogic(GripperConfig(min_interval=1.0))
    sent = [(t / 10, g.update(1.0 if t % 2 else -1.0, t / 10)) for t in range(100)]  # 10 s at 10 Hz
    toggles = [t for t, cmd in sent if cmd]
    assert len(toggles) <= 11 and all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(toggles))
    noise = GripperLogic(GripperConfig(min_interval=0.0))
    rng = np.random.default_rng(0)
    assert sum(noise.update(v, i) is not None for i, v in enumerate(rng.uniform(-0.45, 0.45, 1000))) == 0
    with pytest.raises(ValueError):
        GripperLogic(GripperConfig(close_below=0.5, open_above=0.4))
