"""Real-robot labellers: pose hold (core logic and node) and the keyboard node under a pty."""

from __future__ import annotations

import math
import os
import pty
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from helpers import spin_for, spin_until
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from reward_msgs.msg import EpisodeEvent, SuccessLabel

from reward_model_ros.core.poses import PoseHoldLabeller, quaternion_angle, rpy_to_quaternion
from reward_model_ros.ros.conversions import seconds_to_stamp

QOS = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
TARGET = (0.5, 0.0, 0.1, math.pi, 0.0, 0.0)


def test_rpy_and_angles():
    assert np.allclose(rpy_to_quaternion(0, 0, 0), [0, 0, 0, 1])
    assert np.allclose(rpy_to_quaternion(math.pi, 0, 0), [1, 0, 0, 0], atol=1e-12)
    assert np.allclose(
        rpy_to_quaternion(0, 0, math.pi / 2), [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)]
    )
    q = rpy_to_quaternion(0.1, -0.2, 0.3)
    assert math.isclose(quaternion_angle(q, -q), 0.0, abs_tol=1e-6)  # q and -q: the same orientation
    assert math.isclose(quaternion_angle(rpy_to_quaternion(0, 0, 0), rpy_to_quaternion(0, 0, 0.25)), 0.25)


def test_pose_hold_needs_consecutive_steps_in_tolerance():
    lab = PoseHoldLabeller(TARGET, position_tolerance=0.01, orientation_tolerance=0.1, hold_steps=3)
    down = rpy_to_quaternion(math.pi, 0, 0)
    at, near, off = (0.5, 0.0, 0.1), (0.505, 0.0, 0.1), (0.53, 0.0, 0.1)
    tilted = rpy_to_quaternion(math.pi, 0.2, 0)  # 0.2 rad off: outside
    seq = [
        (at, down),
        (near, down),
        (off, down),
        (at, down),
        (at, tilted),
        (at, down),
        (near, down),
        (at, down),
    ]
    out = [lab.update(p, q) for p, q in seq]
    assert [o[0] for o in out] == [True, True, False, True, False, True, True, True]
    assert [o[1] for o in out] == [False] * 7 + [True]  # the third consecutive one
    assert lab.update(at, down) == (True, False)  # once per episode
    lab.reset()
    assert lab.streak == 0 and not lab.done
    with pytest.raises(ValueError, match="6 values"):
        PoseHoldLabeller((1, 2, 3))


def pose(t: float, x: float, rpy=(math.pi, 0.0, 0.0)) -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp = seconds_to_stamp(t)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, 0.0, 0.1
    q = rpy_to_quaternion(*rpy)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = q.tolist()
    return msg


def test_pose_success_node_on_a_synthetic_trajectory(ros_node, start_node):
    labels, events = [], []
    ros_node.create_subscription(SuccessLabel, "/success_label", labels.append, QOS)
    ros_node.create_subscription(EpisodeEvent, "/episode/event", events.append, QOS)
    pub = ros_node.create_publisher(PoseStamped, "/ee_pose", QOS)
    node = start_node(
        "pose_success_node",
        params={"target_ee_pose": list(TARGET), "success_hold_steps": 5, "position_tolerance": 0.01},
    )
    spin_until(ros_node, lambda: pub.get_subscription_count() > 0 or not node.alive(), 30, "the labeller")
    assert node.alive(), node.output()
    # approach, touch the target for 3 steps, leave, come back and hold for 8 steps
    xs = [0.6, 0.55, 0.52, 0.5, 0.5, 0.5, 0.53, 0.505, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    t0 = time.time()
    for i, x in enumerate(xs):
        pub.publish(pose(t0 + i * 0.05, x))
        spin_for(ros_node, 0.02)
    spin_until(ros_node, lambda: len(labels) == len(xs), 10, "a label per pose")
    assert [m.success for m in labels] == [abs(x - 0.5) <= 0.01 for x in xs]
    assert all(m.source == SuccessLabel.SOURCE_POSE_HOLD for m in labels)
    assert labels[3].header.stamp == seconds_to_stamp(t0 + 3 * 0.05)  # the pose's stamp
    spin_until(ros_node, lambda: events, 5, "the success event")
    spin_for(ros_node, 0.3)
    assert len(events) == 1 and events[0].event == EpisodeEvent.SUCCESS
    assert events[0].label == EpisodeEvent.LABEL_SUCCESS
    assert events[0].header.stamp == seconds_to_stamp(t0 + 11 * 0.05)  # 5th pose of the second hold


def test_keyboard_labeller_in_a_terminal(ros_node, start_node):
    labels, events = [], []
    ros_node.create_subscription(SuccessLabel, "/success_label", labels.append, QOS)
    ros_node.create_subscription(EpisodeEvent, "/episode/event", events.append, QOS)
    master, slave = pty.openpty()
    node = start_node("label_keyboard_node", params={"rate": 20.0}, stdin=slave)
    os.close(slave)
    spin_until(ros_node, lambda: len(labels) > 0 or not node.alive(), 30, "the labeller's first label")

    def key(k: str) -> None:
        os.write(master, k.encode())
        spin_for(ros_node, 0.3)

    key("n")
    key(" ")
    n_on = len(labels)
    key(" ")
    key("\r")
    key("n")
    key("f")
    spin_for(ros_node, 0.3)
    assert [(e.event, e.label) for e in events] == [
        (EpisodeEvent.START, -1),
        (EpisodeEvent.SUCCESS, EpisodeEvent.LABEL_SUCCESS),
        (EpisodeEvent.START, -1),
        (EpisodeEvent.FAILURE, EpisodeEvent.LABEL_FAILURE),
    ]
    assert labels[n_on - 1].success and not labels[-1].success
    assert all(m.source == SuccessLabel.SOURCE_PERSON for m in labels)
    key("q")
    spin_until(ros_node, lambda: not node.alive(), 10, "q to quit")
    out = node.output()
    assert "recorded: 1 success, 1 failure" in out
    os.close(master)


def test_keyboard_labeller_without_a_terminal_says_so(ros_node, start_node):
    node = start_node("label_keyboard_node")
    spin_until(ros_node, lambda: not node.alive(), 30, "the node to exit")
    assert node.popen.returncode == 2 and "stdin is not a terminal" in node.output()
