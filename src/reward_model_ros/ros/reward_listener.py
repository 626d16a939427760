"""Local ROS sessions for the demo and the benchmarks; `RewardListener` listens to `reward`.

    with RewardListener("probe", on_message=print) as listener:
        NodeProcess("reward_node", ..., env=listener.env)
        listener.spin_until(lambda: len(listener.received) >= 10, timeout=30)

Leases a ROS domain, keeps DDS on this machine (for this process and, through `env`, the
processes it starts), and records every RewardStamped with its receipt time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import rclpy
from rclpy.executors import SingleThreadedExecutor
from reward_msgs.msg import RewardStamped

from reward_model_ros.dds import DomainLease, local_dds_env
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.conversions import stamp_to_nanoseconds


@dataclass
class Received:
    msg: RewardStamped
    receipt_ns: int
    """wall clock (time.time_ns) when it arrived here"""

    @property
    def latency_ms(self) -> float:
        """From the image's capture stamp to the receipt here."""
        return (self.receipt_ns - stamp_to_nanoseconds(self.msg.header.stamp)) / 1e6


class LocalSession:
    """An rclpy node in its own context and leased ROS domain, DDS kept on this machine.

    `env` is the environment for the processes the session starts (same domain);
    `spin_until` processes this node's callbacks.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> LocalSession:
        self._lease = DomainLease()
        self.env = local_dds_env(self._lease.domain_id)
        os.environ.update(self.env)  # before this process's participant starts
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self._lease.domain_id)
        self.node = rclpy.create_node(self.name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        return self

    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Process callbacks until `done()` or `timeout` s; returns done()."""
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def __exit__(self, *exc: object) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
        self._lease.release()


class RewardListener(LocalSession):
    """A LocalSession that records every RewardStamped on `topic` with its receipt time."""

    def __init__(
        self, name: str, topic: str = "reward", on_message: Callable[[Received], None] | None = None
    ) -> None:
        super().__init__(name)
        self.topic, self.on_message = topic, on_message
        self.received: list[Received] = []

    def __enter__(self) -> RewardListener:
        super().__enter__()
        qos = qos_profiles.reliable(100)
        self.node.create_subscription(RewardStamped, self.topic, self._on_reward, qos)
        return self

    def _on_reward(self, msg: RewardStamped) -> None:
        item = Received(msg, time.time_ns())
        self.received.append(item)
        if self.on_message is not None:
            self.on_message(item)
