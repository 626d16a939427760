"""The demo's replay report judges an episode's truth as its datasets do (data.episode_success)."""

from __future__ import annotations

from reward_msgs.msg import EpisodeEvent, RewardStamped, SuccessLabel

from reward_model_ros.demo import DemoConfig, _replay_report
from reward_model_ros.ros.conversions import seconds_to_stamp
from reward_model_ros.ros.reward_listener import Received


def _pass_episode():
    """One replayed episode that ended a failure after its success flag was on for 3 frames."""
    start = EpisodeEvent(event=EpisodeEvent.START, episode_index=0, mode="push_past", seed=7)
    start.header.stamp = seconds_to_stamp(100.0)
    end = EpisodeEvent(event=EpisodeEvent.FAILURE, episode_index=0, label=EpisodeEvent.LABEL_FAILURE)
    end.header.stamp = seconds_to_stamp(102.0)
    labels, rewards = [], []
    for i in range(20):
        t = 100.05 + 0.1 * i
        label = SuccessLabel(success=8 <= i < 11, episode_index=0)
        label.header.stamp = seconds_to_stamp(t)
        labels.append(label)
        msg = RewardStamped(probability=0.9 if 8 <= i < 11 else 0.1, success=8 <= i < 11, threshold=0.5)
        msg.header.stamp = seconds_to_stamp(t)
        rewards.append(Received(msg, 0))
    return [start, end], labels, rewards


def test_replay_truth_follows_episode_success(tmp_path):
    events, labels, rewards = _pass_episode()
    once = _replay_report(DemoConfig(out_dir=tmp_path, episode_success="once"), events, labels, rewards)
    end = _replay_report(DemoConfig(out_dir=tmp_path, episode_success="end"), events, labels, rewards)
    assert once["episodes"][0]["truth"] == "success"  # success_once: the pass succeeded
    assert end["episodes"][0]["truth"] == "failure"  # only the outcome counts
    assert once["episodes"][0]["judged_success"] and once["episodes"][0]["delay_s"] == 0.0
