"""The learned reward in the RL loop (rl/reward_env.py), without a simulator: a fake batch whose
frames encode the classifier's probability, and a fake scorer that reads it back, behind the
real RewardPipeline and RewardMapper that reward_node runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reward_model_ros.core.pipeline import RewardPipeline
from reward_model_ros.core.reward import RewardConfig, RewardMapper
from reward_model_ros.core.scoring import ScoredSet
from reward_model_ros.data.dataset import read_manifest
from reward_model_ros.rl.monitor import RewardHackingMonitor
from reward_model_ros.rl.reward_env import LearnedRewardEnv, RewardEnvConfig, SimStep


class ProbabilityScorer:
    """A FrameScorer stand-in: a frame's probability is its first pixel / 255 (255 = invalid)."""

    frame_stack = 1  # judges each frame alone: no history to keep

    def check(self, rgb, camera=None, greyscale=False):
        return "covered camera" if rgb[0, 0, 0] == 255 else None

    def score(self, frames, cameras=None, greyscale=None, background=False, reasons=None, past=None):
        why = [r or "" for r in (reasons or [None] * len(frames))]
        probs = [0.0 if w else float(f[0, 0, 0]) / 254.0 for f, w in zip(frames, why, strict=True)]
        inputs = np.zeros((sum(not w for w in why), 3, 4, 4), np.uint8)
        return ScoredSet(probs, [not w for w in why], why, inputs, 0.001)


class ScriptedSim:
    """N sub-envs; `probs[t][i]` is what the classifier will say at step t, `gt[t][i]` the ground truth."""

    def __init__(self, probs, gt, env_reward=0.5):
        self.probs, self.gt, self.env_reward = np.asarray(probs, float), np.asarray(gt, bool), env_reward
        self.num_envs = self.probs.shape[1]
        self.obs_dim, self.act_dim, self.device, self.cameras = 3, 2, torch.device("cpu"), ["cam"]
        self.t, self.resets = 0, []

    def _step(self) -> SimStep:
        t = min(self.t, len(self.probs) - 1)
        frames = []
        for i in range(self.num_envs):
            f = np.zeros((4, 4, 3), np.uint8)
            f[0, 0, 0] = 255 if self.probs[t, i] < 0 else round(self.probs[t, i] * 254)
            frames.append([f])
        obs = torch.full((self.num_envs, self.obs_dim), float(self.t))
        return SimStep(obs, frames, torch.full((self.num_envs,), self.env_reward), torch.tensor(self.gt[t]))

    def reset(self, seed=None, env_idx=None):
        self.resets.append(env_idx)
        return self._step()

    def step(self, action):
        s = self._step()
        self.t += 1
        return s

    def close(self):
        pass


def make_env(probs, gt, reward: dict | None = None, **env_cfg):
    cfg = RewardConfig(**{"reward_threshold": 0.5, **(reward or {})})
    sim = ScriptedSim(probs, gt)
    pipeline = RewardPipeline(ProbabilityScorer(), cfg)
    env = LearnedRewardEnv(sim, pipeline, RewardEnvConfig(**{"max_episode_steps": 100, **env_cfg}), ["cam"])
    env.reset(seed=0)
    return env


def run(env, steps):
    out = []
    for _ in range(steps):
        out.append(env.step(torch.zeros(env.num_envs, env.act_dim)))
    return out


@pytest.mark.parametrize("mode", ["per_step", "terminal"])
@pytest.mark.parametrize("combine", ["replace", "add", "weighted"])
def test_rewards_follow_reward_nodes_truth_table(mode, combine):
    """Every step's reward is what reward_node's RewardMapper gives the same probabilities."""
    probs = [[p] for p in (0.1, 0.7, 0.2, 0.9, 0.95, 0.4)]
    reward = {
        "reward_mode": mode,
        "combine_mode": combine,
        "success_reward": 2.0,
        "fail_reward": -0.5,
        "reward_weight": 0.3,
        "env_reward_weight": 4.0,
    }
    env = make_env(probs, [[False]] * 6, reward, terminate_on_success=False, max_episode_steps=6)
    got = [float(r.reward[0]) for r in run(env, 6)]
    ref = RewardMapper(RewardConfig(reward_threshold=0.5, **reward))  # what reward_node runs
    env_r = None if combine == "replace" else 0.5
    want = [ref.step(p[0], env_r)[1] for p in probs[:-1]]
    _, last = ref.step(probs[-1][0], env_r)
    # the last step (the time limit) carries the terminal reward in terminal mode
    want.append(ref.terminal(env_r)[1] if mode == "terminal" else last)
    assert got == pytest.approx(want)
    if mode == "terminal" and combine == "replace":
        assert got[:-1] == [0.0] * 5 and got[-1] == -0.5  # the last frame (p=0.4) is no success


def test_ground_truth_never_changes_a_reward_or_an_episode_end():
    rng = np.random.default_rng(0)
    probs = rng.random((60, 3)).tolist()
    truth_a = rng.random((60, 3)) < 0.5
    truth_b = ~truth_a  # the opposite ground truth
    a = run(make_env(probs, truth_a, max_episode_steps=7), 60)
    b = run(make_env(probs, truth_b, max_episode_steps=7), 60)
    for ra, rb in zip(a, b, strict=True):
        assert torch.equal(ra.reward, rb.reward) and torch.equal(ra.obs, rb.obs)
        assert torch.equal(ra.terminated, rb.terminated) and torch.equal(ra.truncated, rb.truncated)
        assert [e["return"] for e in ra.episodes] == [e["return"] for e in rb.episodes]
    gt_a = [e["gt_success"] for r in a for e in r.episodes]
    gt_b = [e["gt_success"] for r in b for e in r.episodes]
    assert gt_a and gt_a == [not g for g in gt_b]  # ground truth only in the episode dicts


def test_terminate_on_success_waits_for_the_debounce():
    probs = [[p] for p in (0.1, 0.9, 0.2, 0.9, 0.9, 0.9, 0.1)]
    env = make_env(probs, [[False]] * 7, {"debounce_frames": 3})
    results = run(env, 6)
    assert [bool(r.terminated[0]) for r in results] == [False, False, False, False, False, True]
    assert results[5].episodes[0]["length"] == 6 and results[5].episodes[0]["success"]
    assert env.sim.resets[-1] == [0]  # the ended sub-env was reset, by index


def test_without_termination_episodes_end_at_the_time_limit_only():
    env = make_env([[0.9]] * 10, [[True]] * 10, terminate_on_success=False, max_episode_steps=4)
    results = run(env, 8)
    assert [bool(r.truncated[0]) for r in results] == [False, False, False, True] * 2
    assert not any(bool(r.terminated[0]) for r in results)
    assert all(torch.equal(r.final_obs, r.obs) for r in results if not r.truncated[0])


def test_an_invalid_frame_is_never_a_success_and_restarts_the_debounce():
    probs = [[p] for p in (0.9, 0.9, -1, 0.9, 0.9, 0.9)]  # -1: a frame the checks refuse
    env = make_env(probs, [[False]] * 6, {"debounce_frames": 3}, terminate_on_success=False)
    rewards = [float(r.reward[0]) for r in run(env, 6)]
    assert rewards == [0, 0, 0, 0, 0, 1.0]  # not success at step 4: the invalid frame broke the run


def test_the_oracle_baseline_reads_ground_truth_and_says_so():
    env = make_env([[0.0]] * 5, [[False], [False], [True], [True], [True]], oracle=True)
    rewards = [float(r.reward[0]) for r in run(env, 3)]
    assert rewards == [0.0, 0.0, 1.0]


def test_the_monitor_keeps_disagreeing_frames_as_a_training_dataset(tmp_path):
    monitor = RewardHackingMonitor(tmp_path / "dis", max_frames=10, window=10, cameras=["camera"])
    probs = [[0.9]] * 12  # the model always says success ...
    gt = [[False]] * 12  # ... ground truth never does: a reward a policy could hack
    cfg = RewardConfig(reward_threshold=0.5)
    sim = ScriptedSim(probs, gt)
    env = LearnedRewardEnv(
        sim,
        RewardPipeline(ProbabilityScorer(), cfg),
        RewardEnvConfig(max_episode_steps=100),
        ["camera"],
        monitor,
    )
    env.reset(0)
    stats = {}
    for r in run(env, 12):
        stats = monitor.on_episodes(r.episodes, 0) or stats
    rows = read_manifest(tmp_path / "dis")
    assert len(rows) == 10 and all(r["label"] == 0 and r["mode"] == "rl_false_positive" for r in rows)
    assert all((tmp_path / "dis" / r["images"]["camera"]).is_file() for r in rows)
    assert stats["reward/false_positive_rate"] == 1.0 and stats["reward/gt_success_rate"] == 0.0
    assert stats["reward/model_minus_gt_success"] == 1.0


def test_demonstrations_from_episode_bags_get_the_learned_reward(tmp_path):
    """A recorded success episode (frames, the state vector, the applied actions) becomes
    transitions in the policy's spaces, rewarded by the classifier (not by the bag's labels)."""
    from rclpy.serialization import serialize_message
    from reward_msgs.msg import ObservationVector, PolicyAction
    from sensor_msgs.msg import Image

    from reward_model_ros.data.bags import EpisodeBagWriter, TypeRegistry
    from reward_model_ros.rl.demos import demos_from_bags
    from reward_model_ros.ros.conversions import array_to_image, seconds_to_stamp, stamp_to_nanoseconds

    probs = [0.1, 0.2, 0.3, 0.9, 0.9]  # the classifier says success from frame 3 on
    for label in ("success", "failure"):
        w = EpisodeBagWriter(tmp_path / label / "episode_0", TypeRegistry(), "mcap")
        for topic, kind in (
            ("/image_raw", Image),
            ("/state", ObservationVector),
            ("/applied_action", PolicyAction),
        ):
            w.add_topic(topic, f"{kind.__module__.split('.')[0]}/msg/{kind.__name__}")
        for t, p in enumerate(probs):
            stamp = seconds_to_stamp(100.0 + 0.05 * t)
            ns = stamp_to_nanoseconds(stamp)
            frame = np.zeros((4, 4, 3), np.uint8)
            frame[0, 0, 0] = round(p * 254)
            img = array_to_image(frame, "rgb8")
            img.header.stamp = stamp
            w.write("/image_raw", ns, serialize_message(img))
            state = ObservationVector(data=[float(t), 0.0, 1.0])
            state.header.stamp = stamp
            w.write("/state", ns, serialize_message(state))
            if t > 0:  # the action that led to this frame
                a = PolicyAction(gripper=-1.0)
                a.delta_position.x = 0.01 * t
                a.header.stamp = stamp
                w.write("/applied_action", ns, serialize_message(a))
        w.close({"label": label})
    env = make_env([[0.0]], [[False]], {"debounce_frames": 1})

    def to_action(dp, drot, grip):
        return np.array([dp[0] / 0.1, grip], np.float32)

    buf, episodes = demos_from_bags([tmp_path], env, to_action)
    assert episodes == 1  # the failure bag is no demonstration
    n = len(buf)
    assert n == 3  # steps 0->1, 1->2, 2->3: the model's success at frame 3 ends the episode
    assert buf.obs[:n, 0].tolist() == [0.0, 1.0, 2.0] and buf.next_obs[:n, 0].tolist() == [1.0, 2.0, 3.0]
    assert buf.actions[:n, 0].tolist() == pytest.approx([0.1, 0.2, 0.3]) and buf.actions[0, 1] == -1.0
    assert buf.rewards[:n].tolist() == [0.0, 0.0, 1.0] and buf.dones[:n].tolist() == [0.0, 0.0, 1.0]


def _episodes(model: list[bool], gt: list[bool]) -> list[dict]:
    return [{"success": m, "gt_success": g, "return": float(m)} for m, g in zip(model, gt, strict=True)]


@pytest.mark.parametrize(
    ("fooled", "missed", "warns"),
    [
        (2, 0, False),  # 2 of 50 paid episodes not real: noise
        (6, 6, True),  # the gap stays 0 (the model also misses 6), but 6 of 44 paid for nothing
        (8, 0, True),  # the gap and the false-positive rate both pass 0.1
    ],
)
def test_the_monitor_warns_when_the_policy_is_paid_for_failures(caplog, fooled, missed, warns):
    """What the CPU benchmark's policy did late in its run: 12% of the episodes the classifier
    paid for were near misses on the goal's rim. A warning must say so; noise must not."""
    mon = RewardHackingMonitor(window=50)
    model = [True] * (50 - missed) + [False] * missed
    gt = [False] * fooled + [True] * (50 - fooled - missed) + [True] * missed
    with caplog.at_level("WARNING"):
        stats = mon.on_episodes(_episodes(model, gt), step=1000)
    assert stats["reward/false_positive_rate"] == pytest.approx(fooled / (50 - missed))
    assert ("reward hacking suspected at step 1000" in caplog.text) == warns, caplog.text
    # the run's totals (result.json monitor_totals) keep counting past the window
    mon.on_episodes(_episodes([True] * 60, [False] * 60), step=2000)
    assert mon.totals == {
        "episodes": 110,
        "false_positive": fooled + 60,
        "false_negative": missed,
        "agree": 50 - fooled - missed,
    }


def test_recorded_episodes_become_demonstrations_with_their_recorded_rewards(tmp_path):
    """rl_trainer's demo_bags: a successful episode bag gives (s_t, a_t+1 applied, r_t+1 as
    reward_node published it, s_t+1) rows up to the model's success; invalid rewards and the
    terminal-mode repeat are not learned from; failure bags are no demonstrations."""
    from helpers import write_rl_episode_bag

    from reward_model_ros.rl.demos import recorded_transitions

    stamps = write_rl_episode_bag(
        tmp_path / "ok" / "episode_0", "success", [0, 0.1, 0.2, 0.3, 1.0, 0.5], 3, (2,)
    )
    write_rl_episode_bag(tmp_path / "bad" / "episode_0", "failure", [0, 0.1, 1.0], 3)
    rows, episodes = recorded_transitions(
        [tmp_path], lambda dp, dr, g: np.array([dp[0] / 0.1, g], np.float32)
    )
    assert episodes == 1
    # steps 0->1, (1->2 invalid: left out), 2->3, 3->4 where the model's success ends it
    assert [r[5] for r in rows] == [stamps[1], stamps[3], stamps[4]]
    assert [r[2] for r in rows] == pytest.approx([0.1, 0.3, 1.0])
    assert [r[4] for r in rows] == [False, False, True]
    assert [float(r[0][0]) for r in rows] == [0.0, 2.0, 3.0] and [float(r[3][0]) for r in rows] == [
        1.0,
        3.0,
        4.0,
    ]
    assert rows[0][1].tolist() == pytest.approx([0.1, 1.0])
