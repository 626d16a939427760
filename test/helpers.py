"""Helpers for tests that talk to nodes over DDS."""

from __future__ import annotations

from collections.abc import Callable

from rclpy.node import Node

from reward_model_ros.ros.interface_check import spin_until as _spin


def spin_until(node: Node, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Spin `node` until `predicate()` holds; fail the test with `what` after `timeout` s."""
    if not _spin(node, predicate, timeout):
        raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")


def spin_for(node: Node, seconds: float) -> None:
    """Process `node`'s callbacks for `seconds`."""
    _spin(node, lambda: False, seconds)


def wait_for_topic(node: Node, topic: str, timeout: float = 15.0) -> None:
    """Wait until some process publishes `topic` (absolute name)."""
    spin_until(node, lambda: node.count_publishers(topic) > 0, timeout, f"a publisher of {topic}")


def wait_for_service(node: Node, srv_type, name: str, timeout: float = 15.0):
    client = node.create_client(srv_type, name)
    if not client.wait_for_service(timeout_sec=timeout):
        raise AssertionError(f"service {name} did not appear within {timeout:.0f} s")
    return client


def call(node: Node, client, request, timeout: float = 10.0, resend: bool = False):
    """The answer of `client` to `request`. `resend` (idempotent services only): after the
    timeout without an answer, drop the request and send it again once, with a new timeout. A server can
    answer before its response writer has matched the client's reader (the rmw then logs
    "failed to send response (timeout)"; seen once under a full `make test`)."""
    if resend:
        future = client.call_async(request)
        if _spin(node, future.done, timeout):
            return future.result()
        client.remove_pending_request(future)
    future = client.call_async(request)
    spin_until(node, future.done, timeout, f"an answer from {client.srv_name}")
    return future.result()


def write_rl_episode_bag(path, label: str, rewards: list[float], obs_dim: int, invalid: tuple[int, ...] = ()):
    """An episode bag as maniskill_bridge + reward_node + recorder leave it: per step t a state
    (all values t), from t=1 the applied action that led to it (delta_position.x = 0.01 t,
    stamped like the frame) and reward_node's RewardStamped (rewards[t], success when >= 1,
    invalid at `invalid`; reward_mode terminal's extra message too). Returns the stamps (ns)."""
    from rclpy.serialization import serialize_message
    from reward_msgs.msg import ObservationVector, PolicyAction, RewardStamped

    from reward_model_ros.data.bags import EpisodeBagWriter, TypeRegistry
    from reward_model_ros.ros.conversions import seconds_to_stamp, stamp_to_nanoseconds

    w = EpisodeBagWriter(path, TypeRegistry(), "mcap")
    for topic, kind in (
        ("/state", ObservationVector),
        ("/applied_action", PolicyAction),
        ("/reward", RewardStamped),
    ):
        w.add_topic(topic, f"reward_msgs/msg/{kind.__name__}")
    stamps = []
    for t, r in enumerate(rewards):
        stamp = seconds_to_stamp(200.0 + 0.05 * t)
        ns = stamp_to_nanoseconds(stamp)
        stamps.append(ns)
        state = ObservationVector(data=[float(t)] * obs_dim)
        state.header.stamp = stamp
        w.write("/state", ns, serialize_message(state))
        if t == 0:
            continue
        action = PolicyAction(gripper=1.0)
        action.delta_position.x = 0.01 * t
        action.header.stamp = stamp
        w.write("/applied_action", ns, serialize_message(action))
        reward = RewardStamped(reward=r, success=r >= 1.0, valid=t not in invalid)
        reward.header.stamp = stamp
        w.write("/reward", ns, serialize_message(reward))
        if reward.success:
            terminal = RewardStamped(reward=99.0, success=True, terminal=True)
            terminal.header.stamp = stamp
            w.write("/reward", ns, serialize_message(terminal))
    w.close({"label": label})
    return stamps
