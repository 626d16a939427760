"""rl_trainer's episode loop when Ctrl-C lands mid-episode, in this process, without a simulator.

A stop while the actor waits for an input is the node shutting down: the episode ends as
`(stopped)`, no input is counted missing, no ABORT goes out, and its partial return stays out
of the episode statistics. (An aborted episode on the robot path publishes ABORT; the CI log
of stop 34 showed SIGINT reported as a missing observation.)
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rclpy.parameter import Parameter
from reward_msgs.msg import RewardStamped

from reward_model_ros.nodes.rl_trainer import RLTrainerNode


class _Learner:
    num_updates = 0


class _SAC:
    """What the episode loop touches of AsyncSAC."""

    def __init__(self):
        self.added, self.episodes, self.env_steps, self.metrics = [], 0, 0, {}
        self.learner = _Learner()

    def add(self, *transition, demo=False):
        self.added.append(transition)

    def act(self, obs):
        return np.zeros(4, np.float32)


class _Logger:
    def __init__(self):
        self.recorded = []

    def episodes(self, records, step):
        self.recorded.extend(records)

    def scalars(self, *a):
        pass

    def scalar(self, *a):
        pass


@pytest.fixture
def trainer(ros_node, tmp_path):
    node = RLTrainerNode(
        context=ros_node.context,
        parameter_overrides=[
            Parameter("episode_start", value="first_observation"),  # the robot path: aborts publish ABORT
            Parameter("output_dir", value=str(tmp_path / "rl")),
            Parameter("step_timeout", value=30.0),
            Parameter("reward_timeout", value=30.0),
            Parameter("max_episode_steps", value=10),
        ],
    )
    node._stop.set()  # the node's own actor thread: out of the way, the test drives _episode
    node._thread.join(timeout=10)
    assert not node._thread.is_alive()
    node._stop.clear()
    node.sac, node.logger, node._last_log = _SAC(), _Logger(), time.monotonic()
    node.published_events, node.ends = [], []
    node._publish_event = node.published_events.append
    end = node._end
    node._end = lambda *a: (node.ends.append(a[-1]), end(*a))
    yield node
    node._stop.set()
    node.sac = None  # nothing of the stand-ins to save
    node.destroy_node()


T0 = 1_000_000_000


@pytest.mark.parametrize("where", ["before_acting", "waiting_for_state", "waiting_for_reward"])
def test_a_stop_mid_episode_ends_it_as_stopped_not_aborted(trainer, where):
    node = trainer
    steps = []

    def publish_action(episode, step, action):
        steps.append(step)
        with node._cv:
            if step == 0:  # step 1 arrives whole: its observation and its reward
                node.states[T0 + 1] = np.ones(8, np.float32)
                node.arrivals[T0 + 1] = time.monotonic() + 1.0
                node.rewards[T0 + 1] = RewardStamped(valid=True, reward=1.0, success=False)
            elif where == "waiting_for_reward":  # step 2's observation, never its reward
                node.states[T0 + 2] = np.ones(8, np.float32)
                node.arrivals[T0 + 2] = time.monotonic() + 1.0
        if step == 1:
            threading.Timer(0.3, node._stop.set).start()

    node._publish_action = publish_action
    if where == "before_acting":
        node._stop.set()
    started = time.monotonic()
    node._episode(3, T0, np.zeros(8, np.float32))
    took = time.monotonic() - started

    assert node.ends == ["stopped"]
    assert took < 5.0, f"the stop took {took:.1f} s: the wait ran on towards its 30 s timeout"
    assert node.published_events == [], "a stop is not an ABORT (nor any other event)"
    for count in ("observations_missing", "rewards_missing", "aborted"):
        assert node.counts[count] == 0, (count, node.counts)
    assert node.counts["episodes"] == 1
    assert node.logger.recorded == [], "a stopped episode's partial return went into the statistics"
    assert steps == ([] if where == "before_acting" else [0, 1])
    assert len(node.sac.added) == (0 if where == "before_acting" else 1)


def test_a_missing_observation_without_a_stop_still_aborts(trainer):
    """The other side: the same wait running out (no stop) is an abort, with its ABORT event."""
    node = trainer
    node.p["step_timeout"] = 0.3
    node._publish_action = lambda *a: None
    node._episode(4, T0, np.zeros(8, np.float32))
    assert node.ends == ["aborted"]
    assert node.counts["observations_missing"] == 1 and node.counts["aborted"] == 1
    assert [e.episode_index for e in node.published_events] == [4]
    assert "no observation for step 1" in node.published_events[0].message
