"""interface_echo_node: echoes every reward_msgs message and answers ComputeRewards and
ResetEpisode with values derived from the request.

A diagnostic for the interfaces and the DDS set-up: run it on one machine (or process) and
`reward-model check-interfaces` on another; every message type must come back unchanged.
`reward-model check-interfaces` (and the colcon test) start it in a second process.
"""

from __future__ import annotations

import time

from rclpy.node import Node
from reward_msgs.srv import ComputeRewards, ResetEpisode

from reward_model_ros.nodes._run import spin_node
from reward_model_ros.nodes.params import Param, declare_parameters, in_range, topic_name
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.diagnostics import OK, Diagnostics
from reward_model_ros.ros.interface_samples import (
    MESSAGE_TYPES,
    echo_compute_rewards,
    echo_reset_episode,
)

NODE_NAME = "interface_echo"

PARAMETERS = (
    Param(
        "ping_prefix",
        "interface_check/ping",
        "topics the node listens on: <prefix>/<type>",
        topic_name,
        read_only=True,
    ),
    Param(
        "pong_prefix",
        "interface_check/pong",
        "topics the node echoes to: <prefix>/<type>",
        topic_name,
        read_only=True,
    ),
    Param("qos_depth", 10, "history depth of the reliable echo topics", in_range(1, 1000), read_only=True),
    Param(
        "threshold", 0.5, "decision threshold in the compute_rewards diagnostic answer", in_range(0.0, 1.0)
    ),
)


class InterfaceEchoNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        p = declare_parameters(self, PARAMETERS)
        qos = qos_profiles.reliable(p["qos_depth"])
        self._pubs = {}
        for suffix, msg_type in MESSAGE_TYPES.items():
            pub = self.create_publisher(msg_type, f"{p['pong_prefix']}/{suffix}", qos)
            self._pubs[suffix] = pub
            self.create_subscription(msg_type, f"{p['ping_prefix']}/{suffix}", self._echo(pub), qos)
        self.echoed = 0
        self.diagnostics = Diagnostics(
            self, "interface echo", lambda: (OK, f"{self.echoed} messages echoed", {"echoed": self.echoed})
        )
        self.create_service(ComputeRewards, "~/compute_rewards", self._on_compute_rewards)
        self.create_service(ResetEpisode, "~/reset_episode", self._on_reset_episode)
        self._episode_index = 0
        self.get_logger().info(
            f"echoing {len(MESSAGE_TYPES)} message types from {p['ping_prefix']}/* "
            f"to {p['pong_prefix']}/*; services ~/compute_rewards, ~/reset_episode"
        )

    def _echo(self, pub):
        def echo(msg) -> None:
            self.echoed += 1
            pub.publish(msg)

        return echo

    def _on_compute_rewards(self, request, response):
        start = time.perf_counter()
        threshold = self.get_parameter("threshold").value
        answer = echo_compute_rewards(request, threshold)
        answer.inference_latency = time.perf_counter() - start
        return answer

    def _on_reset_episode(self, request, response):
        answer = echo_reset_episode(request, self._episode_index)
        if answer.accepted:
            self._episode_index += 1
        return answer


def main(args: list[str] | None = None) -> int:
    return spin_node(InterfaceEchoNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
