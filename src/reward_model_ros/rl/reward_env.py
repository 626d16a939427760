"""The learned reward in the RL loop: a simulator batch wrapped into a `VecEnv` whose reward
comes from the success classifier, through the same code as reward_node.

Per step, the frames of all sub-envs are checked and scored in one batched forward pass
(`core.pipeline.RewardPipeline`: validity checks, crop boxes, camera fusion), and each
sub-env's score is mapped by its own `RewardMapper` (threshold and debounce, by default the
checkpoint's recommended ones; `reward_mode` per_step | terminal; `success_reward` /
`fail_reward`; `combine_mode` with the simulator's own reward). With `terminate_on_success`
the debounced decision ends the episode (terminated: no bootstrapping), as HIL-SERL's
classifier does.

Ground truth never reaches the learner: the simulator's own success termination is not
used (episodes end on the time limit or on the model's decision only), and its success flag
goes into the episode dicts as `gt_success`, for evaluation and the reward-hacking monitor
only. (RLinf's terminal mode scores the frame where the simulator's success ended the
episode: the end of the episode leaks ground truth. Here it cannot.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from reward_model_ros.core.pipeline import FrameSet, RewardPipeline, SetScore
from reward_model_ros.core.reward import RewardMapper
from reward_model_ros.rl.envs import StepResult

log = logging.getLogger(__name__)


@dataclass
class SimStep:
    """What a simulator batch returns after a reset or a step."""

    obs: torch.Tensor
    """(N, obs_dim) float32: the policy's observation (e.g. the task's state vector)"""
    frames: list[list[np.ndarray]]
    """per sub-env, one (H, W, 3) uint8 RGB frame per camera (in `cameras` order)"""
    env_reward: torch.Tensor
    """(N,) float32: the simulator's own reward (used only with combine_mode add/weighted)"""
    gt_success: torch.Tensor
    """(N,) bool: the simulator's success: evaluation and monitoring only, never the learner"""


class SimBatch(Protocol):
    """N simulated sub-envs stepped together: one GPU-simulated env with N parallel scenes, or
    N CPU envs. It never ends episodes itself; `LearnedRewardEnv` decides when they end."""

    num_envs: int
    obs_dim: int
    act_dim: int
    device: torch.device
    cameras: list[str]

    def reset(self, seed: int | None = None, env_idx: Sequence[int] | None = None) -> SimStep:
        """Reset all sub-envs (env_idx None) or the given ones; the returned step covers all N
        (the others unchanged)."""
        ...

    def step(self, action: torch.Tensor) -> SimStep: ...

    def close(self) -> None: ...


@dataclass
class RewardEnvConfig:
    """How the classifier's output becomes the learner's reward and episode ends."""

    max_episode_steps: int = 50
    """episode length; episodes end here (truncated) unless the model's success ends them first"""
    terminate_on_success: bool = True
    """the debounced success decision ends the episode (HIL-SERL); false: run to the time limit"""
    oracle: bool = False
    """BENCHMARK BASELINE ONLY: the simulator's ground truth replaces the classifier's
    probability (1 or 0), through the same mapping; never a way to train a product policy"""


@dataclass
class _Episode:
    length: int = 0
    ret: float = 0.0
    model_success_once: bool = False
    gt_success_once: bool = False
    invalid: int = 0
    probability_sum: float = 0.0


class LearnedRewardEnv:
    """A `VecEnv` (rl.envs) over a `SimBatch`, rewarded by a `RewardPipeline`.

    `monitor` (optional, e.g. rl.monitor.RewardHackingMonitor) sees every frame:
    `on_frame(env_index, frames, probability, above_threshold, gt_success)` with the
    per-frame decision before the debounce, and `end_episode(env_index)` when a sub-env's
    episode ends (it keeps the frames where the model and ground truth disagree)."""

    def __init__(
        self,
        sim: SimBatch,
        pipeline: RewardPipeline,
        cfg: RewardEnvConfig,
        cameras: Sequence[str],
        monitor: Any = None,
    ) -> None:
        self.sim, self.pipeline, self.cfg = sim, pipeline, cfg
        self.cameras = list(cameras)
        self.num_envs, self.obs_dim, self.act_dim = sim.num_envs, sim.obs_dim, sim.act_dim
        self.device = sim.device
        self.max_episode_steps = cfg.max_episode_steps
        self.monitor = monitor
        self.mappers: list[RewardMapper] = [pipeline.mapper() for _ in range(self.num_envs)]
        self.histories = [pipeline.history() for _ in range(self.num_envs)]  # model.frame_stack
        self.episodes = [_Episode() for _ in range(self.num_envs)]
        self.scoring_seconds = 0.0
        """total time spent checking and scoring frames (for the step-cost benchmark)"""
        if pipeline.cfg.combine_mode != "replace":
            log.warning(
                "combine_mode=%s adds the simulator's own reward to the learned one; ManiSkill's "
                "rewards include its success term, i.e. ground truth reaches the learner through it",
                pipeline.cfg.combine_mode,
            )

    def reset(self, seed: int | None = None) -> torch.Tensor:
        for m in self.mappers:
            m.reset()
        self.episodes = [_Episode() for _ in range(self.num_envs)]
        s = self.sim.reset(seed)
        for i, h in enumerate(self.histories):  # the reset frame is the first frame's predecessor
            h.reset()
            h.push(s.frames[i], self.cameras)
        return s.obs

    def step(self, action: torch.Tensor) -> StepResult:
        s = self.sim.step(action)
        n = self.num_envs
        gt = s.gt_success.detach().to("cpu", torch.bool).tolist()
        if self.cfg.oracle:
            scores = [SetScore(float(g), [float(g)], True, "", 0.0) for g in gt]
        else:
            sets = [
                FrameSet(
                    list(s.frames[i]), self.cameras, past=self.histories[i].push(s.frames[i], self.cameras)
                )
                for i in range(n)
            ]
            scores = self.pipeline.score(sets)
        self.scoring_seconds += sum(x.seconds for x in scores)
        env_r = s.env_reward.detach().to("cpu", torch.float32).tolist()
        rewards, terminated, truncated, ended_info = [0.0] * n, [False] * n, [False] * n, []
        combine = self.pipeline.cfg.combine_mode != "replace"
        for i, score in enumerate(scores):
            ep, mapper = self.episodes[i], self.mappers[i]
            ep.length += 1
            success, reward, terminated[i], truncated[i] = self.decide(
                mapper, score, ep.length, env_r[i] if combine else None
            )
            rewards[i] = reward
            ep.ret += reward
            ep.model_success_once |= success
            ep.gt_success_once |= gt[i]
            ep.invalid += not score.valid
            ep.probability_sum += score.probability
            if self.monitor is not None:
                above = score.valid and score.probability >= mapper.cfg.reward_threshold
                self.monitor.on_frame(i, s.frames[i], score.probability, above, gt[i])
            if terminated[i] or truncated[i]:
                ended_info.append(
                    {
                        "env_index": i,
                        "return": ep.ret,
                        "length": ep.length,
                        "success": bool(success),
                        "gt_success": bool(gt[i]),
                        "success_once": bool(ep.model_success_once),
                        "gt_success_once": bool(ep.gt_success_once),
                        "mean_probability": ep.probability_sum / ep.length,
                        "invalid_frames": ep.invalid,
                    }
                )
        obs = s.obs
        final_obs = obs.clone()
        done = [i for i in range(n) if terminated[i] or truncated[i]]
        if done:
            fresh = self.sim.reset(None, done)
            obs = obs.clone()
            obs[done] = fresh.obs[done]
            for i in done:
                self.mappers[i].reset()
                self.histories[i].reset()
                self.histories[i].push(fresh.frames[i], self.cameras)
                self.episodes[i] = _Episode()
                if self.monitor is not None:
                    self.monitor.end_episode(i)
        dev = self.device
        return StepResult(
            obs=obs,
            reward=torch.tensor(rewards, dtype=torch.float32, device=dev),
            terminated=torch.tensor(terminated, dtype=torch.bool, device=dev),
            truncated=torch.tensor(truncated, dtype=torch.bool, device=dev),
            final_obs=final_obs,
            episodes=ended_info,
        )

    def decide(
        self, mapper: RewardMapper, score: SetScore, length: int, env_reward: float | None
    ) -> tuple[bool, float, bool, bool]:
        """(success, reward, terminated, truncated) of one sub-env's step: the decision with the
        debounce, termination on the model's success, the time limit, and the terminal reward.
        Also what recorded demonstrations are rewarded with (rl.demos)."""
        success, reward = mapper.step(score.probability if score.valid else None, env_reward)
        terminated = self.cfg.terminate_on_success and success
        truncated = not terminated and length >= self.cfg.max_episode_steps
        if (terminated or truncated) and self.pipeline.cfg.reward_mode == "terminal":
            _, reward = mapper.terminal(env_reward)
        return success, reward, terminated, truncated

    def close(self) -> None:
        self.sim.close()
