"""pose_success_node: success labels on a real robot from the end-effector pose.

For every PoseStamped on `pose_topic` it publishes a SuccessLabel (source POSE_HOLD, the
pose's stamp): success while the pose is within `position_tolerance` / `orientation_tolerance`
of `target_ee_pose`. After `success_hold_steps` consecutive poses in tolerance it publishes
an EpisodeEvent SUCCESS (label success), once per episode; an EpisodeEvent START on the same
topic (from whoever starts episodes) resets it.
"""

from __future__ import annotations

from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from reward_msgs.msg import EpisodeEvent, SuccessLabel

from reward_model_ros.core.poses import PoseHoldLabeller
from reward_model_ros.core.stats import RateWindow
from reward_model_ros.nodes._run import spin_node
from reward_model_ros.nodes.params import (
    Param,
    ParameterError,
    at_least,
    declare_parameters,
    in_range,
    topic_name,
)
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.diagnostics import OK, WARN, Diagnostics

NODE_NAME = "pose_success"

PARAMETERS = (
    Param(
        "target_ee_pose",
        [0.5, 0.0, 0.1, 3.14159, 0.0, 0.0],
        "x, y, z (m), roll, pitch, yaw (rad) of the success pose, in the pose topic's frame",
        lambda v: None if len(v) == 6 else "needs 6 values: x, y, z, roll, pitch, yaw",
    ),
    Param("position_tolerance", 0.01, "metres from the target position", in_range(1e-6, 10.0)),
    Param("orientation_tolerance", 0.1, "radians from the target orientation", in_range(1e-6, 3.1416)),
    Param("success_hold_steps", 20, "consecutive poses in tolerance before success", at_least(1)),
    Param("pose_topic", "ee_pose", "geometry_msgs/PoseStamped input", topic_name, read_only=True),
    Param("label_topic", "success_label", "reward_msgs/SuccessLabel output", topic_name, read_only=True),
    Param(
        "episode_event_topic",
        "episode/event",
        "EpisodeEvents: START in, SUCCESS out",
        topic_name,
        read_only=True,
    ),
    Param("task", "", "task name in the SUCCESS event"),
)


class PoseSuccessNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.p = p = declare_parameters(self, PARAMETERS, on_change=self._on_change)
        self.labeller = self._labeller(p)
        self.episode = 0
        self.steps = 0
        reliable = qos_profiles.reliable(50)
        self.label_pub = self.create_publisher(SuccessLabel, p["label_topic"], reliable)
        self.event_pub = self.create_publisher(EpisodeEvent, p["episode_event_topic"], reliable)
        self.create_subscription(EpisodeEvent, p["episode_event_topic"], self._on_event, reliable)
        self.create_subscription(PoseStamped, p["pose_topic"], self._on_pose, reliable)
        self.pose_rate = RateWindow()
        self.diagnostics = Diagnostics(self, "pose labeller", self._health)
        t = p["target_ee_pose"]
        self.get_logger().info(
            f"success when {p['pose_topic']} stays within {p['position_tolerance']} m / "
            f"{p['orientation_tolerance']} rad of {list(t)} for {p['success_hold_steps']} poses"
        )

    def _health(self):
        """/diagnostics: whether poses arrive, and the episode being labelled."""
        rate = self.pose_rate.rate()
        values = {"pose_topic": self.p["pose_topic"], "pose_rate_hz": rate, "episode": self.episode}
        values["poses_in_episode"] = self.steps
        if rate == 0:
            return WARN, f"no pose on {self.p['pose_topic']} for 5 s", values
        return OK, f"{rate:.1f} poses/s, episode {self.episode}", values

    def _labeller(self, p) -> PoseHoldLabeller:
        try:
            return PoseHoldLabeller(
                tuple(p["target_ee_pose"]),
                p["position_tolerance"],
                p["orientation_tolerance"],
                p["success_hold_steps"],
            )
        except ValueError as exc:
            raise ParameterError(f"{NODE_NAME}: {exc}") from exc

    def _on_change(self, changes: dict) -> None:
        self.p.update(changes)
        self.labeller = self._labeller(self.p)

    def _on_event(self, msg: EpisodeEvent) -> None:
        if msg.event == EpisodeEvent.START:
            self.labeller.reset()
            self.episode = msg.episode_index
            self.steps = 0

    def _on_pose(self, msg: PoseStamped) -> None:
        pos, q = msg.pose.position, msg.pose.orientation
        inside, reached = self.labeller.update((pos.x, pos.y, pos.z), (q.x, q.y, q.z, q.w))
        self.steps += 1
        self.pose_rate.tick()
        self.label_pub.publish(
            SuccessLabel(
                header=msg.header,
                success=inside,
                source=SuccessLabel.SOURCE_POSE_HOLD,
                confidence=1.0,
                episode_index=self.episode,
            )
        )
        if reached:
            self.event_pub.publish(
                EpisodeEvent(
                    header=msg.header,
                    event=EpisodeEvent.SUCCESS,
                    episode_index=self.episode,
                    task=self.p["task"],
                    label=EpisodeEvent.LABEL_SUCCESS,
                    step=self.steps,
                    message=f"pose held {self.p['success_hold_steps']} steps within tolerance",
                )
            )
            self.get_logger().info(f"episode {self.episode}: success (pose held)")


def main(args: list[str] | None = None) -> int:
    return spin_node(PoseSuccessNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
