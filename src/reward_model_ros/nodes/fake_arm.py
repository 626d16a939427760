"""fake_arm: a stand-in for crisp_controllers plus franka_robot_state_broadcaster, for tests
and demos on a machine without a robot.

It follows geometry_msgs/PoseStamped targets on `target_topic` (reliable, as crisp's
`target_pose`) with a speed limit (`max_speed` m/s, `max_angular_speed` rad/s) and, like
crisp, holds the last target forever. At `rate` Hz it publishes the pose on `pose_topic`
(best-effort by default, as franka_robot_state_broadcaster's `current_pose` since v3.3.0)
and sensor_msgs/JointState on `joint_states_topic`: seven arm joints (placeholders: there
is no kinematics here, they stay at a fixed configuration) and two finger joints.

Fake gripper: std_msgs/Float64MultiArray on `gripper.topic` (crisp_py's position controller
command), `gripper.open_value` = `gripper.max_width` open, `gripper.closed_value` = closed,
moved at `gripper.speed` m/s.

Services: `~/inject_fault` (std_srvs/Trigger: the arm stops following targets, as after a
Franka reflex), `~/error_recovery` (Trigger: clears it; point the adapter's
`recovery.backend:=trigger_service` here), `~/pause_state` (std_srvs/SetBool: true stops
publishing pose and joint states, false resumes). Non-finite targets are refused and counted.

Fake camera (off unless `camera_topic` is set): a synthetic rgb8 sensor_msgs/Image at
`camera_rate` Hz, `camera_width` x `camera_height` (reliable): a top-down drawing of the
workspace (x up, y to the left, `CAMERA_VIEW`) with the end-effector's x, y as a disc (larger
when higher) and a fixed goal marker at `camera_goal`, stamped with the capture time. It lets
the whole RL graph (arm_observer, reward_node, rl_trainer, recorder) run on a machine with no
camera: it is for plumbing tests and demos, not for training a reward model (a classifier
trained on these drawings has learned nothing about a real scene). It keeps publishing while
`~/pause_state` holds the pose back, so a consumer sees frames with a stale arm state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from reward_model_ros.core.arm_safety import Pose, distance, interpolate
from reward_model_ros.nodes._run import spin_node, steady_clock
from reward_model_ros.nodes.params import (
    Param,
    declare_parameters,
    in_range,
    one_of,
    optional_topic,
    positive,
    topic_name,
)
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.conversions import array_to_image, pose_from_ros, pose_to_ros
from reward_model_ros.ros.diagnostics import ERROR, OK, WARN, Diagnostics

NODE_NAME = "fake_arm"
# a Franka's usual "ready" configuration (radians), shown for the arm joints
READY_JOINTS = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
# what the fake camera sees, top-down: x from 0.2 to 0.8 m (image bottom to top), y from
# 0.4 to -0.4 m (image left to right)
CAMERA_VIEW = ((0.2, 0.8), (-0.4, 0.4))

PARAMETERS = (
    Param(
        "target_topic",
        "target_pose",
        "geometry_msgs/PoseStamped targets in (reliable)",
        topic_name,
        read_only=True,
    ),
    Param(
        "pose_topic",
        "franka_robot_state_broadcaster/current_pose",
        "geometry_msgs/PoseStamped end-effector pose out",
        topic_name,
        read_only=True,
    ),
    Param(
        "pose_qos",
        "best_effort",
        "reliability of the pose publisher (franka_ros2: best_effort since v3.3.0)",
        one_of(*qos_profiles.RELIABILITIES),
        read_only=True,
    ),
    Param("joint_states_topic", "joint_states", "sensor_msgs/JointState out", topic_name, read_only=True),
    Param("rate", 100.0, "Hz of integration and state publishing", in_range(1.0, 2000.0), read_only=True),
    Param("max_speed", 0.25, "m/s the end-effector moves towards its target at most", positive),
    Param("max_angular_speed", 1.0, "rad/s the end-effector turns towards its target at most", positive),
    Param(
        "initial_pose",
        [0.5, 0.0, 0.3, math.pi, 0.0, 0.0],
        "x, y, z (m), roll, pitch, yaw (rad) at start",
        lambda v: None if len(v) == 6 else "needs 6 values: x, y, z, roll, pitch, yaw",
        read_only=True,
    ),
    Param("frame_id", "fr3_link0", "frame of the published pose", read_only=True),
    Param(
        "joint_prefix",
        "fr3",
        "joint names are <prefix>_joint1..7 and <prefix>_finger_joint1..2",
        read_only=True,
    ),
    Param(
        "gripper.topic",
        "gripper_position_controller/commands",
        "std_msgs/Float64MultiArray gripper command in",
        topic_name,
        read_only=True,
    ),
    Param("gripper.open_value", 1.0, "command value meaning fully open", read_only=True),
    Param("gripper.closed_value", 0.0, "command value meaning closed", read_only=True),
    Param(
        "gripper.max_width",
        0.08,
        "metres between the fingers when open",
        in_range(0.001, 0.5),
        read_only=True,
    ),
    Param("gripper.speed", 0.1, "m/s of the finger width", positive),
    Param(
        "camera_topic",
        "",
        "fake camera: sensor_msgs/Image (rgb8, reliable) top-down drawing of the arm; empty = no camera",
        optional_topic,
        read_only=True,
    ),
    Param("camera_rate", 10.0, "fake camera: frames per second", in_range(0.5, 100.0), read_only=True),
    Param("camera_width", 128, "fake camera: image width, pixels", in_range(16, 2048), read_only=True),
    Param("camera_height", 128, "fake camera: image height, pixels", in_range(16, 2048), read_only=True),
    Param(
        "camera_goal",
        [0.6, 0.1],
        "fake camera: x, y (m) of the goal marker it draws",
        lambda v: None if len(v) == 2 else "needs 2 values: x, y",
        read_only=True,
    ),
)


def draw_workspace(pose: Pose, goal_xy, width: int, height: int) -> np.ndarray:
    """The fake camera's frame: (height, width, 3) rgb8, the end-effector's x, y as a disc
    whose radius grows with its height z, a goal cross at `goal_xy`, on a grey table."""
    import cv2

    (x0, x1), (y0, y1) = CAMERA_VIEW

    def pixel(x: float, y: float) -> tuple[int, int]:
        col = (y1 - y) / (y1 - y0) * (width - 1)
        row = (x1 - x) / (x1 - x0) * (height - 1)
        return round(min(max(col, -width), 2 * width)), round(min(max(row, -height), 2 * height))

    image = np.full((height, width, 3), (90, 90, 90), np.uint8)
    scale = min(width, height)
    gx, gy = pixel(*goal_xy)
    arm = max(1, scale // 32)
    cv2.line(image, (gx - 3 * arm, gy), (gx + 3 * arm, gy), (40, 200, 40), arm)
    cv2.line(image, (gx, gy - 3 * arm), (gx, gy + 3 * arm), (40, 200, 40), arm)
    x, y, z = pose.position
    radius = round(scale * (0.03 + 0.1 * min(max(z, 0.0), 0.6)))
    cv2.circle(image, pixel(x, y), max(radius, 2), (220, 60, 40), -1)
    return image


class FakeArmNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.p = p = declare_parameters(self, PARAMETERS, on_change=self._on_change)
        self.pose = Pose.from_xyz_rpy(p["initial_pose"])
        self.target: Pose | None = None
        self.width = self.width_target = p["gripper.max_width"]
        self.fault = ""
        self.paused = False
        self.counts = dict.fromkeys(("targets", "refused_targets", "ignored_targets", "gripper_commands"), 0)
        self.dt = 1.0 / p["rate"]
        state_qos = qos_profiles.images(p["pose_qos"], depth=10)
        self.pose_pub = self.create_publisher(PoseStamped, p["pose_topic"], state_qos)
        self.joint_pub = self.create_publisher(JointState, p["joint_states_topic"], qos_profiles.reliable(10))
        self.create_subscription(PoseStamped, p["target_topic"], self._on_target, qos_profiles.reliable(1))
        self.create_subscription(
            Float64MultiArray, p["gripper.topic"], self._on_gripper, qos_profiles.reliable(10)
        )
        self.create_service(Trigger, "~/inject_fault", self._on_inject_fault)
        self.create_service(Trigger, "~/error_recovery", self._on_error_recovery)
        self.create_service(SetBool, "~/pause_state", self._on_pause)
        prefix = p["joint_prefix"]
        self.joint_names = [f"{prefix}_joint{i}" for i in range(1, 8)] + [
            f"{prefix}_finger_joint1",
            f"{prefix}_finger_joint2",
        ]
        self.create_timer(self.dt, self._step, clock=steady_clock())
        self.camera_pub = None
        if p["camera_topic"]:
            self.camera_pub = self.create_publisher(
                Image, p["camera_topic"], qos_profiles.images("reliable", 5)
            )
            self.create_timer(1.0 / p["camera_rate"], self._capture, clock=steady_clock())
            self.counts["frames"] = 0
        self.diagnostics = Diagnostics(self, "fake arm", self._health)
        self.get_logger().info(
            f"fake arm at {p['initial_pose']}: follows {p['target_topic']} at <= {p['max_speed']} m/s, "
            f"publishes {self.pose_pub.topic_name} ({p['pose_qos']}) at {p['rate']:g} Hz"
            + (
                f"; fake camera {self.camera_pub.topic_name} {p['camera_width']}x{p['camera_height']} at "
                f"{p['camera_rate']:g} Hz (plumbing and demos only)"
                if self.camera_pub is not None
                else ""
            )
        )

    def _on_change(self, changes: dict[str, Any]) -> None:
        self.p.update(changes)

    def _on_target(self, msg: PoseStamped) -> None:
        target = pose_from_ros(msg.pose)
        values = (*target.position, *target.orientation)
        if (
            not all(math.isfinite(v) for v in values)
            or not 0.5 < float(np.linalg.norm(target.orientation)) < 1.5
        ):
            self.counts["refused_targets"] += 1
            self.get_logger().error(f"refused a target with NaN, inf or a broken quaternion: {values}")
            return
        self.counts["targets"] += 1
        if self.fault:
            self.counts["ignored_targets"] += 1
            return
        self.target = target

    def _on_gripper(self, msg: Float64MultiArray) -> None:
        if not msg.data or not math.isfinite(msg.data[0]):
            return
        self.counts["gripper_commands"] += 1
        lo, hi = self.p["gripper.closed_value"], self.p["gripper.open_value"]
        fraction = (msg.data[0] - lo) / (hi - lo) if hi != lo else 1.0
        self.width_target = min(max(fraction, 0.0), 1.0) * self.p["gripper.max_width"]

    def _step(self) -> None:
        if self.target is not None and not self.fault:
            d, angle = distance(self.pose, self.target)
            reach = max(
                d / (self.p["max_speed"] * self.dt), angle / (self.p["max_angular_speed"] * self.dt), 1.0
            )
            self.pose = interpolate(self.pose, self.target, 1.0 / reach)
        step = self.p["gripper.speed"] * self.dt
        self.width += max(-step, min(step, self.width_target - self.width))
        if self.paused:
            return
        stamp = self.get_clock().now().to_msg()
        msg = PoseStamped()
        msg.header.stamp, msg.header.frame_id = stamp, self.p["frame_id"]
        msg.pose = pose_to_ros(self.pose)
        self.pose_pub.publish(msg)
        joints = JointState(name=self.joint_names, position=[*READY_JOINTS, self.width / 2, self.width / 2])
        joints.header.stamp = stamp
        self.joint_pub.publish(joints)

    def _capture(self) -> None:
        stamp = self.get_clock().now().to_msg()  # the capture time, before drawing
        p = self.p
        frame = draw_workspace(self.pose, p["camera_goal"], p["camera_width"], p["camera_height"])
        msg = array_to_image(frame, "rgb8")
        msg.header.stamp, msg.header.frame_id = stamp, "fake_camera"
        self.camera_pub.publish(msg)
        self.counts["frames"] += 1

    def _on_inject_fault(self, request, response):
        self.fault = "injected fault (reflex): not following targets until ~/error_recovery"
        self.target = None
        self.get_logger().warning(self.fault)
        response.success, response.message = True, self.fault
        return response

    def _on_error_recovery(self, request, response):
        cleared, self.fault = self.fault, ""
        response.success = True
        response.message = f"recovered from: {cleared}" if cleared else "no error to recover from"
        self.get_logger().info(response.message)
        return response

    def _on_pause(self, request, response):
        self.paused = bool(request.data)
        response.success = True
        response.message = "state publishing paused" if self.paused else "state publishing resumed"
        self.get_logger().info(response.message)
        return response

    def _health(self):
        values = {"fault": self.fault, "paused": self.paused, "gripper_width": self.width, **self.counts}
        values |= dict(zip(("x", "y", "z", "roll", "pitch", "yaw"), self.pose.xyz_rpy(), strict=True))
        if self.fault:
            return ERROR, self.fault, values
        if self.paused:
            return WARN, "state publishing paused", values
        return OK, f"{self.counts['targets']} targets received", values


def main(args: list[str] | None = None) -> int:
    return spin_node(FakeArmNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
