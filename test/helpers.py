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


def call(node: Node, client, request, timeout: float = 10.0):
    future = client.call_async(request)
    spin_until(node, future.done, timeout, f"an answer from {client.srv_name}")
    return future.result()
