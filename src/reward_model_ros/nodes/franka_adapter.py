"""franka_adapter: policy actions in, safe Cartesian pose targets out (crisp_controllers).

Every reward_msgs/PolicyAction on `action_topic` becomes one geometry_msgs/PoseStamped on
`target_topic` (crisp_controllers' `target_pose`: reliable, depth 1), made safe by
`core.arm_safety` in this order: refuse NaN/inf, clip the step, anchor on the MEASURED pose
(`pose_topic`, franka_robot_state_broadcaster's `current_pose`, best-effort by default),
clip to the workspace box (x, y, z, roll, pitch, yaw; roll wraps at +-pi), cap the distance
to the measured pose. A target's header carries the base frame and the stamp of the
measured pose it was computed from.

Neither crisp nor franka_ros2 times out a stale target, so a watchdog does: no followed
action for `watchdog.action_timeout_periods` control periods, or no measured pose for
`watchdog.state_timeout` s, latches a fault and the adapter holds the measured pose
(republished every period) until `~/enable` (std_srvs/SetBool, true) clears it. The action
deadline runs from the first action after `~/enable`, a reset or an episode's end (an
EpisodeEvent other than START: the learner stopped acting until its next reset): until then
the target is the pose the adapter anchored (the measured pose, or home), which is safe to
hold for as long as a learner needs. The adapter starts disabled (unless `start_enabled`):
nothing is sent before `~/enable`.

Services: `~/enable` (SetBool: true enables and clears a fault, false holds), `~/reset`
(reward_msgs/ResetEpisode: an interpolated, minimum-jerk move to `reset.home_pose`, with a
random offset when `reset.randomize`, seeded by the request's seed; it answers when the arm
is there), `~/recover` (std_srvs/Trigger: the robot's error recovery, see
`ros/arm_backends.py`; it does not clear the adapter's own fault: `~/enable` does).
A QoS mismatch on the pose topic (a reliable subscription to a best-effort publisher, as
franka_ros2 has had since v3.3.0 / v2.4.0) is logged and shown on `/diagnostics`.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from reward_msgs.msg import EpisodeEvent, PolicyAction
from reward_msgs.srv import ResetEpisode
from std_srvs.srv import SetBool, Trigger

from reward_model_ros.core.arm_safety import (
    OPEN,
    ArmSafety,
    ArmSafetyConfig,
    GripperConfig,
    GripperLogic,
    Mode,
    Pose,
    Watchdog,
    WatchdogConfig,
    distance,
    interpolate,
    min_jerk,
)
from reward_model_ros.core.stats import RateWindow
from reward_model_ros.nodes._run import spin_node, steady_clock
from reward_model_ros.nodes.params import (
    Param,
    ParameterError,
    at_least,
    declare_parameters,
    in_range,
    one_of,
    positive,
    topic_name,
)
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.arm_backends import (
    GRIPPER_BACKENDS,
    MEASURED_POSE_PARAMS,
    RECOVERY_BACKENDS,
    make_gripper,
    make_recovery,
    until,
)
from reward_model_ros.ros.conversions import pose_from_ros, pose_to_ros
from reward_model_ros.ros.diagnostics import ERROR, OK, WARN, Diagnostics

try:  # Iron and later; Humble has only rclpy.qos_event
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # pragma: no cover
    from rclpy.qos_event import SubscriptionEventCallbacks

NODE_NAME = "franka_adapter"
SAFETY = ArmSafetyConfig()
# watchdog checks per control period: a fault is seen within 1/4 period of being due
CHECKS_PER_PERIOD = 4


def _six(v: Any) -> str | None:
    return None if len(v) == 6 else "needs 6 values: x, y, z (m), roll, pitch, yaw (rad)"


PARAMETERS = (
    Param("action_topic", "action", "reward_msgs/PolicyAction input", topic_name, read_only=True),
    Param(
        "episode_event_topic",
        "episode/event",
        "reward_msgs/EpisodeEvent input: an episode's end (any event but START) stops the action "
        "deadline until the next action, and the arm holds where it is",
        topic_name,
        read_only=True,
    ),
    *MEASURED_POSE_PARAMS,
    Param(
        "target_topic",
        "target_pose",
        "geometry_msgs/PoseStamped target output (crisp_controllers target_pose; reliable, depth 1)",
        topic_name,
        read_only=True,
    ),
    Param(
        "base_frame",
        "",
        "frame of targets and of the actions' deltas; empty = the measured pose's frame_id",
        read_only=True,
    ),
    Param(
        "control_rate",
        10.0,
        "Hz: the policy's rate; one watchdog period is 1/control_rate",
        in_range(0.5, 1000.0),
        read_only=True,
    ),
    Param(
        "start_enabled",
        False,
        "enable once the first measured pose arrives (else wait for ~/enable)",
        read_only=True,
    ),
    Param(
        "safety.max_step_position",
        SAFETY.max_step_position,
        "metres: longest translation of one action (longer: scaled down, direction kept)",
        positive,
        read_only=True,
    ),
    Param(
        "safety.max_step_rotation",
        SAFETY.max_step_rotation,
        "radians: largest rotation of one action",
        positive,
        read_only=True,
    ),
    Param(
        "safety.workspace_low",
        list(SAFETY.workspace_low),
        "workspace box lower corner x, y, z (m), roll, pitch, yaw (rad); angle low > high wraps at +-pi",
        _six,
        read_only=True,
    ),
    Param(
        "safety.workspace_high",
        list(SAFETY.workspace_high),
        "workspace box upper corner x, y, z (m), roll, pitch, yaw (rad)",
        _six,
        read_only=True,
    ),
    Param(
        "safety.max_target_distance",
        SAFETY.max_target_distance,
        "metres: farthest a reset waypoint may be from the measured position",
        positive,
        read_only=True,
    ),
    Param(
        "safety.max_target_rotation",
        SAFETY.max_target_rotation,
        "radians: largest rotation between a reset waypoint and the measured orientation",
        positive,
        read_only=True,
    ),
    Param(
        "watchdog.action_timeout_periods",
        2,
        "control periods without a followed action before the fault latches (from the first "
        "action after ~/enable or a reset)",
        at_least(1),
        read_only=True,
    ),
    Param(
        "watchdog.state_timeout",
        0.15,
        "seconds without a measured pose before the fault latches",
        in_range(0.001, 60.0),
        read_only=True,
    ),
    Param(
        "gripper.backend",
        "franka_gripper",
        "none / franka_gripper / crisp_topic",
        one_of(*GRIPPER_BACKENDS),
        read_only=True,
    ),
    Param(
        "gripper.namespace",
        "franka_gripper",
        "franka_gripper backend: action namespace (/fr3_gripper before franka_ros2 v2.0, "
        "<ns>/franka_gripper after)",
        topic_name,
        read_only=True,
    ),
    Param(
        "gripper.topic",
        "gripper_position_controller/commands",
        "crisp_topic backend: std_msgs/Float64MultiArray command topic",
        topic_name,
        read_only=True,
    ),
    Param("gripper.open_value", 1.0, "crisp_topic backend: the value that opens", read_only=True),
    Param("gripper.closed_value", 0.0, "crisp_topic backend: the value that closes", read_only=True),
    Param(
        "gripper.open_width",
        0.08,
        "franka_gripper backend: metres, width of move to open",
        in_range(0.0, 0.2),
        read_only=True,
    ),
    Param(
        "gripper.grasp_width",
        0.0,
        "franka_gripper backend: metres, grasp target width",
        in_range(0.0, 0.2),
        read_only=True,
    ),
    Param(
        "gripper.epsilon_inner",
        0.08,
        "franka_gripper backend: metres, grasp tolerance below the width",
        in_range(0.0, 0.2),
        read_only=True,
    ),
    Param(
        "gripper.epsilon_outer",
        0.08,
        "franka_gripper backend: metres, grasp tolerance above the width",
        in_range(0.0, 0.2),
        read_only=True,
    ),
    Param(
        "gripper.speed",
        0.1,
        "franka_gripper backend: m/s of move and grasp",
        in_range(0.001, 0.2),
        read_only=True,
    ),
    Param(
        "gripper.force",
        30.0,
        "franka_gripper backend: newtons of grasp",
        in_range(0.0, 140.0),
        read_only=True,
    ),
    Param(
        "gripper.close_below",
        -0.5,
        "a gripper command at or below this closes",
        in_range(-1.0, 1.0),
        read_only=True,
    ),
    Param(
        "gripper.open_above",
        0.5,
        "a gripper command at or above this opens; in between nothing changes (hysteresis)",
        in_range(-1.0, 1.0),
        read_only=True,
    ),
    Param(
        "gripper.min_interval",
        1.0,
        "seconds between two gripper toggles at least",
        in_range(0.0, 60.0),
        read_only=True,
    ),
    Param(
        "recovery.backend",
        "franka_action",
        "none / franka_action / trigger_service",
        one_of(*RECOVERY_BACKENDS),
        read_only=True,
    ),
    Param(
        "recovery.name",
        "/action_server/error_recovery",
        "the error recovery action (franka_action) or std_srvs/Trigger service (trigger_service)",
        topic_name,
        read_only=True,
    ),
    Param(
        "recovery.timeout",
        10.0,
        "seconds ~/recover waits for the robot",
        in_range(0.1, 300.0),
        read_only=True,
    ),
    Param(
        "reset.home_pose",
        [0.5, 0.0, 0.3, math.pi, 0.0, 0.0],
        "x, y, z (m), roll, pitch, yaw (rad) that ~/reset moves to (in the box)",
        _six,
        read_only=True,
    ),
    Param("reset.duration", 3.0, "seconds of the interpolated move (minimum jerk)", in_range(0.1, 120.0)),
    Param("reset.randomize", False, "add a uniform random offset to the home pose at every reset"),
    Param("reset.random_position", 0.02, "metres: the offset's range per axis (+-)", in_range(0.0, 0.5)),
    Param(
        "reset.random_rotation",
        0.05,
        "radians: the offset's range per roll, pitch, yaw (+-)",
        in_range(0.0, 1.0),
    ),
    Param("reset.position_tolerance", 0.01, "metres from the home pose at which a reset is done", positive),
    Param(
        "reset.rotation_tolerance",
        0.05,
        "radians from the home orientation at which a reset is done",
        positive,
    ),
    Param("reset.timeout", 15.0, "seconds a reset may take in all before it fails", in_range(0.1, 600.0)),
    Param("reset.open_gripper", True, "open the gripper at the start of a reset"),
)


class ResetPlan:
    """One ~/reset in progress: from `start` to `goal`; `finish()` answers the waiting service."""

    def __init__(self, start: Pose, goal: Pose, t0: float, duration: float, timeout: float) -> None:
        self.start, self.goal, self.t0, self.duration, self.deadline = start, goal, t0, duration, t0 + timeout
        self.done = threading.Event()
        self.result = (False, "not finished")

    def finish(self, ok: bool, message: str) -> None:
        if not self.done.is_set():
            self.result = (ok, message)
            self.done.set()


class FrankaAdapterNode(Node):
    # One executor thread. ~/reset and ~/recover answer when the robot is done: they are
    # coroutines (rclpy runs them as tasks) that wait without blocking that thread, so the
    # timer, the pose and the actions are served meanwhile. A MultiThreadedExecutor with
    # blocking handlers measured action-to-target p50 41 ms / max 409 ms and ~85% of a core
    # on the 2-core machine (its threads spin on entities whose group is busy); one thread
    # measured p50 2.8 ms / max 6.8 ms.

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self._lock = threading.RLock()  # the node's state (one executor thread; kept for safety)
        self.p = p = declare_parameters(self, PARAMETERS, on_change=self._on_change)
        self.period = 1.0 / p["control_rate"]
        try:
            self.safety = ArmSafety(
                ArmSafetyConfig(
                    max_step_position=p["safety.max_step_position"],
                    max_step_rotation=p["safety.max_step_rotation"],
                    workspace_low=tuple(p["safety.workspace_low"]),
                    workspace_high=tuple(p["safety.workspace_high"]),
                    max_target_distance=p["safety.max_target_distance"],
                    max_target_rotation=p["safety.max_target_rotation"],
                )
            )
            self.watchdog = Watchdog(
                WatchdogConfig(self.period, p["watchdog.action_timeout_periods"], p["watchdog.state_timeout"])
            )
            self.gripper = GripperLogic(
                GripperConfig(p["gripper.close_below"], p["gripper.open_above"], p["gripper.min_interval"])
            )
            self.home = Pose.from_xyz_rpy(p["reset.home_pose"])
        except ValueError as exc:
            raise ParameterError(f"{NODE_NAME}: {exc}") from exc
        if not self.safety.config.in_box(self.home):
            raise ParameterError(
                f"{NODE_NAME}: reset.home_pose {p['reset.home_pose']} lies outside the workspace box "
                f"{p['safety.workspace_low']} .. {p['safety.workspace_high']}"
            )
        self.gripper_backend = make_gripper(self, p)
        self.recovery = make_recovery(self, p)

        self.measured: Pose | None = None
        self.measured_stamp = None
        self.frame = p["base_frame"]
        self.hold_pose: Pose | None = None
        self.reset_plan: ResetPlan | None = None
        self.episode = 0
        self.rng = np.random.default_rng()
        self.counts = dict.fromkeys(
            (
                "actions_received",
                "actions_followed",
                "actions_refused",
                "actions_ignored",
                "targets_published",
                "holds",
                "invalid_poses",
                "safety_check_failures",
            ),
            0,
        )
        self.clipped = dict.fromkeys(("step_position", "step_rotation", "box", "distance", "rotation"), 0)
        self.qos_problem = ""
        self.pose_rate = RateWindow()
        self._ticks = 0

        self.target_pub = self.create_publisher(PoseStamped, p["target_topic"], qos_profiles.reliable(1))
        self.pose_qos = qos_profiles.images(p["pose_qos"], p["pose_qos_depth"])
        self.create_subscription(
            PoseStamped,
            p["pose_topic"],
            self._on_pose,
            self.pose_qos,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos),
        )
        self.create_subscription(PolicyAction, p["action_topic"], self._on_action, qos_profiles.reliable(10))
        self.create_subscription(
            EpisodeEvent, p["episode_event_topic"], self._on_episode_event, qos_profiles.reliable(10)
        )
        self.create_service(SetBool, "~/enable", self._on_enable)
        # a waiting coroutine keeps its callback group busy: each service has its own, so the
        # default group (timers, pose, actions, ~/enable) runs while they wait
        self.create_service(
            ResetEpisode, "~/reset", self._on_reset, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self.create_service(
            Trigger, "~/recover", self._on_recover, callback_group=MutuallyExclusiveCallbackGroup()
        )
        clock = steady_clock()
        self.create_timer(self.period / CHECKS_PER_PERIOD, self._tick, clock=clock)
        self.create_timer(1.0, self._check_pose_publishers, clock=clock)
        self.diagnostics = Diagnostics(self, "arm", self._health)
        self.pose_topic = self.resolve_topic_name(p["pose_topic"])
        self.get_logger().info(
            f"{p['action_topic']} -> {self.target_pub.topic_name}; measured pose {self.pose_topic} "
            f"({p['pose_qos']}); box {p['safety.workspace_low']} .. {p['safety.workspace_high']}; steps "
            f"<= {p['safety.max_step_position']} m / {p['safety.max_step_rotation']} rad; watchdog "
            f"{p['watchdog.action_timeout_periods']} periods of {self.period:.3f} s, state "
            f"{p['watchdog.state_timeout']} s; gripper {self.gripper_backend.name}; "
            f"recovery {self.recovery.name}; "
            + ("enables on the first pose" if p["start_enabled"] else "disabled until ~/enable")
        )

    def _on_change(self, changes: dict[str, Any]) -> None:
        """The reset settings may change at run time (read at every reset)."""
        with self._lock:
            self.p.update(changes)

    # --- inputs -------------------------------------------------------------------------
    def _on_pose(self, msg: PoseStamped) -> None:
        with self._lock:
            pose = pose_from_ros(msg.pose)
            bad = self.safety.check_measured(pose)
            if bad:  # not fresh: a stream of broken poses ends in the stale-state fault
                self.counts["invalid_poses"] += 1
                self.get_logger().error(f"measured pose refused: {bad}", throttle_duration_sec=2.0)
                return
            self.measured, self.measured_stamp = pose, msg.header.stamp
            if not self.frame:
                self.frame = msg.header.frame_id
            now = time.monotonic()
            self.watchdog.on_state(now)
            self.pose_rate.tick(now)
            if self.p["start_enabled"] and self.watchdog.mode is Mode.DISABLED and not self.watchdog.faults:
                self.watchdog.enable(now)
                self.get_logger().info("enabled (start_enabled): following actions")

    def _on_action(self, msg: PolicyAction) -> None:
        with self._lock:
            now = time.monotonic()
            self.counts["actions_received"] += 1
            self._check(now)
            if self.watchdog.mode is not Mode.ACTIVE:
                self.counts["actions_ignored"] += 1
                why = f": {self.watchdog.fault}" if self.watchdog.fault else ""
                self.get_logger().warning(
                    f"action ignored: adapter {self.watchdog.mode.value}{why}", throttle_duration_sec=2.0
                )
                return
            frame = msg.header.frame_id
            if frame and self.frame and frame != self.frame:
                self.counts["actions_refused"] += 1
                self.get_logger().error(
                    f"refused an action in frame {frame!r}: deltas must be in the base frame {self.frame!r}",
                    throttle_duration_sec=2.0,
                )
                return
            d, r = msg.delta_position, msg.delta_orientation
            result = self.safety.target_from_action((d.x, d.y, d.z), (r.x, r.y, r.z), self.measured)
            if result.pose is None or not math.isfinite(msg.gripper):
                # a refused action does not feed the watchdog: a stream of them ends in a fault
                self.counts["actions_refused"] += 1
                if result.refused.startswith("internal"):  # a bug in the safety core: never quiet
                    self.counts["safety_check_failures"] += 1
                    self.get_logger().error(result.refused, throttle_duration_sec=0.5)
                    return
                reason = (
                    result.refused
                    or f"refused an action with a NaN or infinite gripper command {msg.gripper}"
                )
                self.get_logger().error(reason, throttle_duration_sec=2.0)
                return
            self.watchdog.on_action(now)
            self.counts["actions_followed"] += 1
            for name in result.clipped:
                self.clipped[name] += 1
            self._publish(result.pose)
            command = self.gripper.update(float(msg.gripper), now)
            if command is not None:
                self.gripper_backend.command(command)
            else:  # a command its server was not there for is sent once it is
                self.gripper_backend.retry()

    def _on_episode_event(self, msg: EpisodeEvent) -> None:
        """A learner stops acting between episodes (until it calls ~/reset): not a stall."""
        if msg.event == EpisodeEvent.START:
            return
        with self._lock:
            self.watchdog.episode_ended()
            if self.watchdog.mode is Mode.ACTIVE and self.measured is not None:
                self._publish(self.measured)  # stop where the arm is, not at the last target

    # --- the control timer ------------------------------------------------------------
    def _tick(self) -> None:
        with self._lock:
            now = time.monotonic()
            self._ticks += 1
            self._check(now)
            mode = self.watchdog.mode
            if mode is Mode.RESETTING:
                self._reset_step(now)
            elif mode is Mode.FAULT and self.hold_pose is not None and self._ticks % CHECKS_PER_PERIOD == 0:
                self._publish(self.hold_pose)  # keep holding, also for a controller that restarted

    def _check(self, now: float) -> None:
        why = self.watchdog.check(now)
        if why:
            self._hold(why)

    def _hold(self, why: str) -> None:
        self.hold_pose = self.measured
        self.counts["holds"] += 1
        if self.hold_pose is not None:
            self._publish(self.hold_pose)
        self.get_logger().error(f"fault latched: {why}; holding the measured pose until ~/enable")
        if self.reset_plan is not None:
            self.reset_plan.finish(False, f"reset aborted: {why}")

    def _publish(self, pose: Pose) -> None:
        msg = PoseStamped()
        msg.header.frame_id = self.frame
        if self.measured_stamp is not None:
            msg.header.stamp = self.measured_stamp  # the state the target was computed from
        msg.pose = pose_to_ros(pose)
        self.target_pub.publish(msg)
        self.counts["targets_published"] += 1

    # --- services -----------------------------------------------------------------------
    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        with self._lock:
            return self._enable(request, response)

    def _enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        now = time.monotonic()
        if not request.data:
            self.watchdog.disable()
            if self.measured is not None:
                self._publish(self.measured)
            response.success, response.message = (
                True,
                f"{self.watchdog.mode.value}: holding the measured pose",
            )
            self.get_logger().info(f"~/enable false: {response.message}")
            return response
        if self.reset_plan is not None:
            response.success, response.message = False, "a reset is in progress: wait for it"
            return response
        ok, message = self.watchdog.enable(now)
        if ok and self.measured is not None:
            self.hold_pose = None
            self._publish(self.measured)  # re-anchor the controller where the arm is
        response.success, response.message = ok, message
        if ok:
            self.get_logger().info(f"~/enable: {message}")
        else:
            self.get_logger().warning(f"~/enable: {message}")
        return response

    async def _on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response):
        with self._lock:
            plan, message = self._start_reset(request.seed)
        if plan is None:
            response.accepted, response.message = False, f"reset refused: {message}"
            return response
        # the control timer moves the arm and finishes the plan (its own deadline: reset.timeout)
        await until(plan.done.is_set, math.inf)
        with self._lock:
            self.reset_plan = None
            ok, message = plan.result
            if ok:
                self.episode += 1
                self.watchdog.end_reset(time.monotonic())
            elif self.watchdog.mode is Mode.RESETTING:
                self.watchdog.trip(message)
                self._hold(message)
        response.accepted, response.message, response.episode_index = ok, message, self.episode
        self.get_logger().info(f"reset: {message}")
        return response

    def _start_reset(self, seed: int) -> tuple[ResetPlan | None, str]:
        now = time.monotonic()
        ok, message = self.watchdog.begin_reset(now)
        if not ok:
            return None, message
        p, goal = self.p, self.home
        if p["reset.randomize"]:
            rng = np.random.default_rng(seed) if seed >= 0 else self.rng
            offset = np.concatenate(
                [
                    rng.uniform(-1, 1, 3) * p["reset.random_position"],
                    rng.uniform(-1, 1, 3) * p["reset.random_rotation"],
                ]
            )
            goal = self.safety.config.clip_to_box(Pose.from_xyz_rpy(np.add(self.home.xyz_rpy(), offset)))
        self.reset_plan = plan = ResetPlan(self.measured, goal, now, p["reset.duration"], p["reset.timeout"])
        if p["reset.open_gripper"]:
            self.gripper_backend.command(self.gripper.force(OPEN, now))
        self.get_logger().info(f"reset: moving to {tuple(round(v, 4) for v in goal.xyz_rpy())}")
        return plan, ""

    def _reset_step(self, now: float) -> None:
        plan = self.reset_plan
        if plan is None:
            return
        s = min_jerk((now - plan.t0) / plan.duration)
        result = self.safety.target_from_pose(interpolate(plan.start, plan.goal, s), self.measured)
        if result.pose is None:
            plan.finish(False, f"reset aborted: {result.refused}")
            return
        self._publish(result.pose)
        d, angle = distance(self.measured, plan.goal)
        if (
            s >= 1.0
            and d <= self.p["reset.position_tolerance"]
            and angle <= self.p["reset.rotation_tolerance"]
        ):
            plan.finish(
                True, f"at the home pose ({d * 1000:.1f} mm, {angle:.3f} rad off) after {now - plan.t0:.1f} s"
            )
        elif now > plan.deadline:
            plan.finish(
                False,
                f"reset failed: still {d * 1000:.0f} mm / {angle:.2f} rad from the home pose after "
                f"{self.p['reset.timeout']} s (blocked? controller running?)",
            )

    async def _on_recover(self, request: Trigger.Request, response: Trigger.Response):
        ok, message = await self.recovery.recover(self.p["recovery.timeout"])
        if ok and self.watchdog.mode is Mode.FAULT:
            message += "; the adapter's fault stays latched: call ~/enable"
        response.success, response.message = ok, message
        if ok:
            self.get_logger().info(f"~/recover: {message}")
        else:
            self.get_logger().error(f"~/recover: {message}")
        return response

    # --- QoS mismatch and health ----------------------------------------------------------
    def _on_incompatible_qos(self, info: Any) -> None:
        policy = getattr(info.last_policy_kind, "name", info.last_policy_kind)
        self._report_qos(
            f"QoS mismatch on {self.pose_topic}: a publisher is incompatible with this "
            f"{self.p['pose_qos']} subscription (policy {policy}, {info.total_count} so far); "
            "franka_robot_state_broadcaster publishes best_effort since v3.3.0 / v2.4.0: "
            "set pose_qos:=best_effort"
        )

    def _check_pose_publishers(self) -> None:
        if self.p["pose_qos"] != "reliable":
            return
        infos = self.get_publishers_info_by_topic(self.pose_topic)
        if infos and qos_profiles.publishers_reliability(infos) != "reliable":
            names = [i.node_name for i in infos if i.qos_profile.reliability != self.pose_qos.reliability]
            self._report_qos(
                f"QoS mismatch on {self.pose_topic}: publisher(s) {', '.join(names)} are best_effort and "
                "this subscription is reliable: no pose arrives from them; set pose_qos:=best_effort"
            )

    def _report_qos(self, problem: str) -> None:
        if problem.split(":")[0] != self.qos_problem.split(":")[0] or not self.qos_problem:
            self.get_logger().error(problem)
        self.qos_problem = problem

    def _health(self):
        now = time.monotonic()
        wd = self.watchdog
        age = now - wd.last_state
        values: dict[str, Any] = {
            "mode": wd.mode.value,
            "fault": wd.fault,
            "last_fault": wd.last_fault,
            "faults": wd.faults,
            "pose_topic": self.pose_topic,
            "pose_qos": self.p["pose_qos"],
            "pose_rate_hz": self.pose_rate.rate(now),
            "pose_age_s": age if math.isfinite(age) else -1.0,
            "episode": self.episode,
            "gripper_backend": self.gripper_backend.name,
            "gripper_state": self.gripper.state or "unknown",
            "gripper_toggles": self.gripper.toggles,
            "gripper_held_back": self.gripper.held_back,
            "qos_mismatch": self.qos_problem,
        }
        values |= self.counts
        values |= {f"clipped_{k}": v for k, v in self.clipped.items()}
        values |= self.gripper_backend.status()
        if self.qos_problem:
            return ERROR, self.qos_problem, values
        if wd.mode is Mode.FAULT:
            return ERROR, f"fault, holding: {wd.fault}", values
        if self.measured is None:
            return WARN, f"no measured pose on {self.pose_topic} yet", values
        if wd.mode is Mode.DISABLED:
            return WARN, "disabled: call ~/enable", values
        return OK, f"{wd.mode.value}, {self.counts['actions_followed']} actions followed", values


def main(args: list[str] | None = None) -> int:
    return spin_node(FrankaAdapterNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
