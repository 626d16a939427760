"""arm_observer: a robot's RL observation (arm pose on `state`) and its camera frame, stamped alike.

rl_trainer pairs every step with its reward by that stamp.

On a robot nothing else publishes `state`. Camera frames (sensor_msgs/Image on `image_topic`)
are the trigger: at most `rate` times a second the newest frame is re-published unchanged
(same header) on `image_out_topic` (rl/image), and an ObservationVector goes to `state` with
header.stamp = that frame's stamp and data = the measured end-effector pose (`pose_topic`,
geometry_msgs/PoseStamped: x, y, z, then the quaternion x, y, z, w; frame_id = the pose's
frame) plus, when `joint_states_topic` is set, one position per joint (in the order of the
first JointState message; `names` filled). reward_node scores rl/image, not the camera: each
observation then gets exactly one reward, and none is lost to reward_node's latest-wins
policy at camera rate.

A pose (or joint state) that arrived more than `max_pose_age` s before the frame: the frame
is skipped, counted, and a warning logged (throttled); no observation is ever built from a
stale arm state. The trainer then sees no observation and aborts the episode. QoS: images as
reward_node (`image_qos` auto matches the camera's publisher), the pose best-effort by default
(franka_robot_state_broadcaster since v3.3.0); outputs reliable. `/diagnostics` counts frames,
observations and skips.
"""

from __future__ import annotations

import time

from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from reward_msgs.msg import ObservationVector
from sensor_msgs.msg import Image, JointState

from reward_model_ros.core.observation import JointTable, RateGate, observation_vector, stale_reason
from reward_model_ros.core.stats import RateWindow
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
from reward_model_ros.ros.arm_backends import MEASURED_POSE_PARAMS
from reward_model_ros.ros.diagnostics import OK, WARN, Diagnostics

NODE_NAME = "arm_observer"

PARAMETERS = (
    Param(
        "image_topic",
        "image_raw",
        "sensor_msgs/Image camera input: every observation is one of its frames",
        topic_name,
        read_only=True,
    ),
    Param(
        "image_qos",
        "auto",
        "auto (match the camera's publisher once it appears) | reliable | best_effort",
        one_of("auto", *qos_profiles.RELIABILITIES),
        read_only=True,
    ),
    Param("image_qos_depth", 5, "history depth of the image subscription", in_range(1, 100), read_only=True),
    *MEASURED_POSE_PARAMS,
    Param(
        "joint_states_topic",
        "",
        "sensor_msgs/JointState whose positions extend the observation; empty = none",
        optional_topic,
        read_only=True,
    ),
    Param("rate", 10.0, "observations per second at most (the policy's rate)", in_range(0.1, 1000.0)),
    Param(
        "max_pose_age",
        0.1,
        "seconds: a pose (or joint state) older than this when a frame arrives skips the frame",
        positive,
    ),
    Param(
        "image_out_topic",
        "rl/image",
        "sensor_msgs/Image output: the frames observed (reliable), for reward_node",
        topic_name,
        read_only=True,
    ),
    Param(
        "state_topic",
        "state",
        "reward_msgs/ObservationVector output (reliable), stamped like its frame",
        topic_name,
        read_only=True,
    ),
)


class ArmObserverNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.p = p = declare_parameters(self, PARAMETERS, on_change=self._on_change)
        self.gate = RateGate(p["rate"])
        self.pose: PoseStamped | None = None
        self.pose_arrival: float | None = None
        self.joints = JointTable() if p["joint_states_topic"] else None
        self.last_frame = -float("inf")
        self.last_skip = ""
        self.counts = dict.fromkeys(("frames", "observations", "skipped_stale"), 0)
        self.obs_rate = RateWindow()
        self.image_pub = self.create_publisher(
            Image, p["image_out_topic"], qos_profiles.images("reliable", 5)
        )
        self.state_pub = self.create_publisher(ObservationVector, p["state_topic"], qos_profiles.reliable(10))
        self.create_subscription(
            PoseStamped,
            p["pose_topic"],
            self._on_pose,
            qos_profiles.images(p["pose_qos"], p["pose_qos_depth"]),
        )
        if self.joints is not None:
            self.create_subscription(
                JointState, p["joint_states_topic"], self._on_joints, qos_profiles.images(p["pose_qos"], 10)
            )
        self.image_topic = self.resolve_topic_name(p["image_topic"])
        self._qos_timer = None
        if p["image_qos"] == "auto":
            self._qos_timer = self.create_timer(0.2, self._subscribe_matching, clock=steady_clock())
        else:
            self._subscribe(p["image_qos"])
        self.diagnostics = Diagnostics(self, "observation", self._health)
        self.get_logger().info(
            f"{self.image_topic} ({p['image_qos']}) + {self.resolve_topic_name(p['pose_topic'])} "
            f"({p['pose_qos']})"
            + (f" + {p['joint_states_topic']}" if self.joints is not None else "")
            + f" -> {self.state_pub.topic_name} and {self.image_pub.topic_name} at <= {p['rate']:g} Hz, "
            f"pose at most {p['max_pose_age']:g} s old"
        )

    def _on_change(self, changes: dict) -> None:
        self.p.update(changes)
        if "rate" in changes:
            self.gate = RateGate(changes["rate"])

    def _subscribe(self, reliability: str) -> None:
        qos = qos_profiles.images(reliability, self.p["image_qos_depth"])
        self.create_subscription(Image, self.p["image_topic"], self._on_image, qos)

    def _subscribe_matching(self) -> None:
        """image_qos=auto: subscribe once the camera's publishers are known, matching them."""
        infos = self.get_publishers_info_by_topic(self.image_topic)
        if not infos:
            return
        mode = qos_profiles.publishers_reliability(infos)
        self.get_logger().info(f"{self.image_topic}: {len(infos)} publisher(s) found, subscribing {mode}")
        self._qos_timer.cancel()
        self._subscribe(mode)

    # --- inputs -----------------------------------------------------------------------------
    def _on_pose(self, msg: PoseStamped) -> None:
        self.pose, self.pose_arrival = msg, time.monotonic()

    def _on_joints(self, msg: JointState) -> None:
        self.joints.update(msg.name, msg.position, time.monotonic())

    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        self.counts["frames"] += 1
        self.last_frame = now
        if not self.gate.due(now):
            return
        why = stale_reason(now, self.p["max_pose_age"], self.pose_arrival, self.joints)
        if why is not None:
            self.counts["skipped_stale"] += 1
            self.last_skip = why
            self.get_logger().warning(
                f"frame skipped, no observation: {why} ({self.counts['skipped_stale']} skipped so far)",
                throttle_duration_sec=2.0,
            )
            return
        p, q = self.pose.pose.position, self.pose.pose.orientation
        names, data = observation_vector((p.x, p.y, p.z), (q.x, q.y, q.z, q.w), self.joints)
        obs = ObservationVector(names=names, data=data)
        obs.header.stamp = msg.header.stamp  # the frame's: reward_node's RewardStamped carries it too
        obs.header.frame_id = self.pose.header.frame_id
        self.gate.mark(now)
        self.image_pub.publish(msg)
        self.state_pub.publish(obs)
        self.counts["observations"] += 1
        self.last_skip = ""
        self.obs_rate.tick(now)

    # --- health -----------------------------------------------------------------------------
    def _health(self):
        now = time.monotonic()
        pose_age = now - self.pose_arrival if self.pose_arrival is not None else -1.0
        values = {
            **self.counts,
            "observation_rate_hz": self.obs_rate.rate(now),
            "pose_age_s": pose_age,
            "image_topic": self.image_topic,
            "last_skip": self.last_skip,
        }
        if now - self.last_frame > 1.0:
            return WARN, f"no camera frames on {self.image_topic} for over 1 s", values
        if self.last_skip:
            return WARN, f"frames skipped: {self.last_skip}", values
        return OK, f"{self.counts['observations']} observations", values


def main(args: list[str] | None = None) -> int:
    return spin_node(ArmObserverNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
