"""rl_trainer across processes: the lockstep bridge (PushCube), reward_node and the trainer.

Every stored transition's reward must be the RewardStamped of its next frame (matched by the
frame's stamp, which the trainer stores beside each row), and a killed reward_node must abort
the episode without a made-up reward. To make a wrong pairing visible, the rewards differ
from frame to frame: reward_node adds an "environment reward" (combine_mode add) that this
test changes continuously.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from helpers import spin_until, write_rl_episode_bag
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from reward_msgs.msg import EpisodeEvent, ObservationVector, PolicyAction, RewardStamped
from std_msgs.msg import Float32

from reward_model_ros.core.checkpoint import save_checkpoint, untrained
from reward_model_ros.core.config import ModelConfig
from reward_model_ros.core.stamps import stamp_ns

pytest.importorskip("mani_skill")

QOS = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
STEPS = 10  # per episode

BRIDGE = {
    "task": "PushCube-v1",
    "driver": "lockstep",
    "control_mode": "pd_ee_delta_pos",
    "real_time": False,
    "auto_reset": False,
    "max_episode_steps": STEPS,
    "camera_width": 64,
    "camera_height": 64,
    "camera_pose": [0.55, 0.0, 0.55, 0.1, 0.0, 0.0],
    "camera_fov": 0.9,
    # the trainer, not the bridge, must notice the dead reward node
    "lockstep_timeout": 60.0,
}


def trainer_params(out):
    return {
        "reset_service": "/maniskill_bridge/reset",
        "max_episode_steps": STEPS,
        "terminate_on_success": False,
        "reward_timeout": 2.0,
        "reset_timeout": 20.0,
        "output_dir": str(out),
        "checkpoint_interval": 0.0,
        "learning_starts": 10,
        "batch_size": 16,
        "buffer_size": 1000,
        "demo_buffer_size": 1000,
        "hidden": [32, 32],
        "param_push_interval": 5,
        "teleop_topic": "teleop",
    }


def test_rewards_are_paired_by_stamp_and_a_dead_reward_node_aborts(ros_node, start_node, tmp_path):
    ckpt = save_checkpoint(
        tmp_path / "clf", untrained(ModelConfig(arch="resnet10", image_size=[3, 64, 64]), 0.5).model, 0.5
    )
    rewards: dict[int, RewardStamped] = {}
    states: dict[int, np.ndarray] = {}
    events: list[EpisodeEvent] = []
    actions: list[PolicyAction] = []
    trainer_status: list = []
    ros_node.create_subscription(
        RewardStamped, "/reward", lambda m: rewards.update({stamp_ns(m.header.stamp): m}), QOS
    )
    ros_node.create_subscription(
        ObservationVector,
        "/state",
        lambda m: states.update({stamp_ns(m.header.stamp): np.array(m.data)}),
        QOS,
    )
    ros_node.create_subscription(EpisodeEvent, "/episode/event", events.append, QOS)
    ros_node.create_subscription(PolicyAction, "/action", actions.append, QOS)
    ros_node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: trainer_status.extend(s for s in m.status if s.name.startswith("rl_trainer")),
        QOS,
    )
    # an environment reward that changes all the time: every frame's reward differs
    env = ros_node.create_publisher(Float32, "/env_reward", QOS)
    counter = iter(range(10**9))
    # a person takes over during the first episode: +5 cm per step in x (half the step limit)
    teleop = ros_node.create_publisher(PolicyAction, "/teleop", QOS)
    takeover = PolicyAction(gripper=1.0)
    takeover.delta_position.x = 0.05

    def tick():
        env.publish(Float32(data=next(counter) * 1e-2))
        if not any(e.event == EpisodeEvent.TIMEOUT for e in events):
            teleop.publish(takeover)

    ros_node.create_timer(0.01, tick)

    bridge = start_node("maniskill_bridge", params=BRIDGE)
    reward = start_node(
        "reward_node",
        params={
            "model.checkpoint_path": str(ckpt),
            "image_qos": "reliable",
            "combine_mode": "add",
            "env_reward_topic": "env_reward",
        },
    )
    spin_until(
        ros_node,
        lambda: ros_node.count_subscribers("/image_raw") > 0 and ros_node.count_publishers("/state") > 0,
        90,
        "the bridge and reward_node",
    )
    assert bridge.alive() and reward.alive(), bridge.output() + reward.output()
    out = tmp_path / "rl"
    trainer = start_node("rl_trainer", params=trainer_params(out))

    def ended():
        return [e for e in events if e.event == EpisodeEvent.TIMEOUT]

    spin_until(ros_node, lambda: len(ended()) >= 3 or not trainer.alive(), 90, "3 episodes")
    assert trainer.alive(), trainer.output()
    # mid-episode: kill reward_node (SIGKILL: dead, no goodbye) after a few steps of the next episode
    episode = max(e.episode_index for e in events if e.event == EpisodeEvent.START)
    spin_until(
        ros_node,
        lambda: any(a.episode_index > ended()[-1].episode_index and a.step >= 3 for a in actions),
        30,
        "a few steps of the next episode",
    )
    os.killpg(reward.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    spin_until(
        ros_node,
        lambda: any(e.event == EpisodeEvent.ABORT and "reward_timeout" in e.message for e in events),
        20,
        "the trainer to abort the episode",
    )
    abort = next(e for e in events if e.event == EpisodeEvent.ABORT)
    assert abort.episode_index >= episode and time.monotonic() - killed_at >= 1.5

    def counts():
        return {v.key: v.value for v in trainer_status[-1].values} if trainer_status else {}

    spin_until(
        ros_node,
        lambda: int(counts().get("rewards_missing", 0)) >= 1 and int(counts().get("updates", 0)) > 0,
        10,
        "diagnostics that count the missing reward and learner updates",
    )
    last = counts()
    assert int(last["rewards_missing"]) >= 1 and int(last["parameter_pushes"]) >= 1, last
    assert int(last["interventions"]) >= STEPS, last
    assert trainer.stop(timeout=20) == 0, trainer.output()  # SIGINT: the final checkpoint
    log = trainer.output()
    assert "aborted" in log and "is reward_node running (dead or late)?" in log, log

    from reward_model_ros.rl.async_learner import load_transitions

    saved = load_transitions(out / "checkpoint")
    demos = load_transitions(out / "checkpoint", demo=True)
    n, n_demo = len(saved["rewards"]), len(demos["rewards"])
    assert n + n_demo >= 3 * STEPS and n_demo >= STEPS, (n, n_demo)
    last_reward = max(rewards)
    for rows in (saved, demos):
        for i in range(len(rows["rewards"])):
            t = int(rows["next_stamp_ns"][i])
            assert t in rewards, f"row {i}: no RewardStamped with its stamp {t}: a made-up reward"
            assert t <= last_reward
            assert np.float32(rows["rewards"][i]) == np.float32(rewards[t].reward), f"row {i}: paired wrongly"
            np.testing.assert_allclose(rows["next_obs"][i], states[t], rtol=1e-6)
        assert len({float(r) for r in rows["rewards"]}) > len(rows["rewards"]) // 2  # the rewards varied
        assert rows["dones"].sum() == 0  # terminate_on_success false
    # the intervention steps went to the demonstration buffer, with the person's action
    np.testing.assert_allclose(demos["actions"], np.tile([0.5, 0.0, 0.0, 1.0], (n_demo, 1)), atol=1e-6)
    assert not np.any(np.all(np.isclose(saved["actions"], [0.5, 0.0, 0.0, 1.0]), axis=1))

    # a restart with the same output_dir resumes (the buffer comes back)
    again = start_node("rl_trainer", params=trainer_params(out))
    spin_until(ros_node, lambda: "resumed from" in again.output() or not again.alive(), 40, "the resume")
    assert f"resumed from {out / 'checkpoint'}: {n + n_demo} transitions" in again.output(), again.output()


def test_unjudgeable_frames_are_skipped_not_learned_from(ros_node, start_node, tmp_path):
    """invalid_reward: skip. This test is the reward node: every third frame is invalid."""
    from sensor_msgs.msg import Image

    sent: dict[int, RewardStamped] = {}
    events: list[EpisodeEvent] = []
    ros_node.create_subscription(EpisodeEvent, "/episode/event", events.append, QOS)
    pub = ros_node.create_publisher(RewardStamped, "/reward", QOS)

    def score(img: Image) -> None:
        n = len(sent)
        msg = RewardStamped(header=img.header, reward=float(n), valid=n % 3 != 2)
        msg.invalid_reason = "" if msg.valid else "image_raw: near-uniform frame"
        sent[stamp_ns(img.header.stamp)] = msg
        pub.publish(msg)

    ros_node.create_subscription(Image, "/image_raw", score, QOS)
    start_node("maniskill_bridge", params=BRIDGE)
    spin_until(ros_node, lambda: ros_node.count_publishers("/state") > 0, 90, "the bridge")
    out = tmp_path / "rl"
    # a recorded successful episode (PushCube's 35-value state) seeds the demonstration buffer
    bag_stamps = write_rl_episode_bag(tmp_path / "demos" / "episode_0", "success", [0, 0.2, 0.4, 1.0], 35)
    params = {**trainer_params(out), "invalid_reward": "skip", "demo_bags": [str(tmp_path / "demos")]}
    trainer = start_node("rl_trainer", params=params)
    spin_until(
        ros_node,
        lambda: sum(e.event == EpisodeEvent.TIMEOUT for e in events) >= 2 or not trainer.alive(),
        60,
        "2 episodes",
    )
    assert trainer.stop(timeout=20) == 0, trainer.output()
    assert not any(e.event == EpisodeEvent.ABORT for e in events), trainer.output()

    from reward_model_ros.rl.async_learner import load_transitions

    rows = load_transitions(out / "checkpoint")
    stamps = [int(t) for t in rows["next_stamp_ns"]]
    assert len(stamps) >= 2 * (STEPS - 4), len(stamps)
    assert all(sent[t].valid for t in stamps), "a transition was stored with an unjudgeable frame's reward"
    assert [float(r) for r in rows["rewards"]] == [sent[t].reward for t in stamps]
    assert any(not sent[t].valid for t in sent)
    demos = load_transitions(out / "checkpoint", demo=True)
    assert [int(t) for t in demos["next_stamp_ns"]] == bag_stamps[1:]
    assert [float(r) for r in demos["rewards"]] == pytest.approx([0.2, 0.4, 1.0])
    assert not any(demos["dones"])  # terminate_on_success is off here: the success ends nothing
