"""The client side of the interface check: send each reward_msgs type through an echo node.

`run_interface_check` publishes the sample of every message type on `<ping>/<type>`, waits
for it on `<pong>/<type>` and compares every field; it calls both services and compares
the answers with the echo rule. Used by `reward-model check-interfaces`, `make demo` and
the tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.serialization import deserialize_message, serialize_message

from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.interface_samples import (
    MESSAGE_TYPES,
    SERVICE_TYPES,
    echo_compute_rewards,
    echo_reset_episode,
    sample_compute_rewards_request,
    sample_messages,
    sample_reset_request,
)


@dataclass
class CheckResult:
    name: str
    """the interface, e.g. reward_msgs/msg/RewardStamped"""
    ok: bool
    """true when it came back unchanged"""
    seconds: float
    """from sending to receiving the answer"""
    detail: str = ""
    """what went wrong, or a summary of what came back"""


def spin_until(node: Node, done, timeout: float) -> bool:
    """Spin `node` (in its own context) until `done()`; False when `timeout` s passed first."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            executor.spin_once(timeout_sec=min(0.05, remaining))
        return True
    finally:
        executor.remove_node(node)
        executor.shutdown()


def as_transported(msg):
    """`msg` as it looks after serialization (e.g. float64 values rounded to float32)."""
    return deserialize_message(serialize_message(msg), type(msg))


def _diff_fields(sent, got) -> str:
    sent = as_transported(sent)
    names = [n for n in sent.get_fields_and_field_types() if getattr(sent, n) != getattr(got, n)]
    return "fields differ: " + ", ".join(names) if names else ""


def _check_message(node: Node, suffix: str, sample, ping: str, pong: str, timeout: float) -> CheckResult:
    qos = qos_profiles.reliable(10)
    msg_type = MESSAGE_TYPES[suffix]
    name = f"reward_msgs/msg/{msg_type.__name__}"
    received: list = []
    sub = node.create_subscription(msg_type, f"{pong}/{suffix}", received.append, qos)
    pub = node.create_publisher(msg_type, f"{ping}/{suffix}", qos)
    try:
        matched = spin_until(
            node, lambda: pub.get_subscription_count() > 0 and sub.get_publisher_count() > 0, timeout
        )
        if not matched:
            return CheckResult(name, False, timeout, "no echo node matched within the timeout")
        start = time.monotonic()
        pub.publish(sample)
        if not spin_until(node, lambda: bool(received), timeout):
            return CheckResult(name, False, timeout, "sent, but no echo came back")
        seconds = time.monotonic() - start
        diff = _diff_fields(sample, received[0])
        n_fields = len(sample.get_fields_and_field_types())
        return CheckResult(name, not diff, seconds, diff or f"{n_fields} fields equal")
    finally:
        node.destroy_publisher(pub)
        node.destroy_subscription(sub)


def check_messages(node: Node, ping: str, pong: str, timeout: float) -> list[CheckResult]:
    return [
        _check_message(node, suffix, sample, ping, pong, timeout)
        for suffix, sample in sample_messages().items()
    ]


def _call(node: Node, srv_type, service: str, request, timeout: float):
    client = node.create_client(srv_type, service)
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            return None, timeout, f"service {service} not available within {timeout:.0f} s"
        start = time.monotonic()
        future = client.call_async(request)
        if not spin_until(node, future.done, timeout):
            return None, timeout, "called, but no answer came back"
        return future.result(), time.monotonic() - start, ""
    finally:
        node.destroy_client(client)


def _check_service(
    node: Node, key: str, service: str, request, expected, summary, timeout: float
) -> CheckResult:
    """Call one service; `expected(answer)` is what the echo rule says it must be."""
    srv = SERVICE_TYPES[key]
    name = f"reward_msgs/srv/{srv.__name__}"
    answer, seconds, error = _call(node, srv, service, request, timeout)
    if answer is None:
        return CheckResult(name, False, seconds, error)
    diff = _diff_fields(expected(answer), answer)
    return CheckResult(name, not diff, seconds, diff or summary(answer))


def check_services(node: Node, echo_node: str, timeout: float) -> list[CheckResult]:
    scores = sample_compute_rewards_request()
    reset = sample_reset_request()
    return [
        _check_service(
            node,
            "compute_rewards",
            f"{echo_node}/compute_rewards",
            scores,
            lambda a: echo_compute_rewards(scores, a.threshold, a.inference_latency),
            lambda a: f"{len(scores.images)} images scored",
            timeout,
        ),
        _check_service(
            node,
            "reset_episode",
            f"{echo_node}/reset_episode",
            reset,
            lambda a: echo_reset_episode(reset, a.episode_index),
            lambda a: a.message,
            timeout,
        ),
    ]


def _has_node(node: Node, name: str) -> bool:
    return any(n == name for n, _ in node.get_node_names_and_namespaces())


def run_interface_check(
    node: Node,
    echo_node: str = "interface_echo",
    ping: str = "interface_check/ping",
    pong: str = "interface_check/pong",
    timeout: float = 20.0,
) -> list[CheckResult]:
    """Round-trip every reward_msgs message and service through the echo node.

    Fails fast, with one result, when the echo node does not appear within `timeout`.
    """
    start = time.monotonic()
    if not spin_until(node, lambda: _has_node(node, echo_node), timeout):
        seen = sorted(n for n, _ in node.get_node_names_and_namespaces() if n != node.get_name())
        return [
            CheckResult(
                f"/{echo_node}",
                False,
                time.monotonic() - start,
                f"no node /{echo_node} in this ROS domain after {timeout:.0f} s "
                f"(nodes seen: {', '.join(seen) or 'none'}); start interface_echo_node "
                "in the same ROS_DOMAIN_ID, with matching discovery settings",
            )
        ]
    return check_messages(node, ping, pong, timeout) + check_services(node, echo_node, timeout)
