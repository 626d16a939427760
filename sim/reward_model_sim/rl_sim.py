"""ManiSkill tasks as a `SimBatch` (rl.reward_env) for RL with the learned reward, in process.

CPU (physx_cpu, the default): ManiSkill's CPU backend has one scene per gym env, so
`num_envs` CPU envs are made and stepped one after the other in this process. GPU
(physx_cuda): one ManiSkill env with `num_envs` parallel scenes, partial resets by index,
observations and frames on the GPU until they are scored.

The batch never ends an episode: ManiSkill's own success termination and time limit are
switched off (`LearnedRewardEnv` ends episodes on the time limit or the model's decision).
Its success flag is returned as ground truth, for evaluation and monitoring only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from reward_model_ros.rl.reward_env import SimStep
from reward_model_sim.cameras import check_supersample, downsample
from reward_model_sim.env import sensor_configs


@dataclass
class SimBatchConfig:
    """The simulated task the policy acts in."""

    task: str = "PushCube-v1"
    """ManiSkill task id (PushCube-v1: goal visible, the CPU task; PickCube-v1: the GPU task)"""
    num_envs: int = 1
    """parallel sub-envs (CPU: separate envs stepped in turn; GPU: one env's parallel scenes)"""
    sim_backend: str = "physx_cpu"
    """physx_cpu | physx_cuda"""
    render_backend: str = "cpu"
    """cpu (lavapipe) | gpu"""
    control_mode: str = "pd_ee_delta_pos"
    """the policy's action space: pd_ee_delta_pos (PushCube) or pd_ee_delta_pose"""
    camera_size: int = 128
    """sensor camera width and height (the classifier's frames)"""
    camera_pose: list[float] = field(default_factory=list)
    """[eye xyz, target xyz] of the sensor camera; empty = the task's (use the classifier's!)"""
    camera_fov: float = 0.0
    """its field of view in radians (0 = the task's)"""
    camera_supersample: int = 1
    """render camera_size times this and average each block down (anti-aliasing; 1 = off): the
    bridge's camera_supersample the classifier's frames were recorded with"""
    show_goal: bool = True
    """show the goal marker to the camera (PickCube hides it)"""


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


class ManiSkillBatch:
    def __init__(self, cfg: SimBatchConfig) -> None:
        import gymnasium as gym
        import mani_skill.envs  # noqa: F401  (registers the tasks)

        self.cfg = cfg
        self.supersample = check_supersample(cfg.camera_supersample)
        size = cfg.camera_size * self.supersample
        gpu = cfg.sim_backend != "physx_cpu"
        if not gpu and cfg.num_envs < 1:
            raise ValueError(f"num_envs={cfg.num_envs}: must be >= 1")
        kwargs = dict(
            obs_mode="rgb+state",
            control_mode=cfg.control_mode,
            sim_backend=cfg.sim_backend,
            render_backend=cfg.render_backend,
            max_episode_steps=10**9,  # no time limit: episodes are ended by LearnedRewardEnv
            sensor_configs=sensor_configs(cfg.task, size, size, cfg.camera_pose, cfg.camera_fov),
        )
        if gpu:
            self.envs = [gym.make(cfg.task, num_envs=cfg.num_envs, **kwargs)]
        else:
            self.envs = [gym.make(cfg.task, num_envs=1, **kwargs) for _ in range(cfg.num_envs)]
        self.gpu = gpu
        self.num_envs = cfg.num_envs
        first = self.envs[0].unwrapped
        self.device = torch.device("cuda") if gpu else torch.device("cpu")
        self.act_dim = int(np.prod(self.envs[0].action_space.shape[-1:]))
        obs, _ = self.envs[0].reset(seed=0)
        self.obs_dim = int(obs["state"].shape[-1])
        self.cameras = list(obs["sensor_data"])
        self.control_freq = float(first.control_freq)
        self._seeds = [0] * len(self.envs)
        self._last: SimStep | None = None
        self._cpu_last: list[tuple] = []
        if not gpu:
            self._cpu_last = [None] * len(self.envs)  # type: ignore[list-item]
            self.reset(0)

    # --- helpers ---------------------------------------------------------------------
    def _show_goal(self, env) -> None:
        u = env.unwrapped
        goal = getattr(u, "goal_site", None)
        hidden = getattr(u, "_hidden_objects", [])
        if self.cfg.show_goal and goal is not None and any(o is goal for o in hidden):
            hidden[:] = [o for o in hidden if o is not goal]
            goal.show_visual()

    def _pack(self, parts: list[tuple]) -> SimStep:
        """[(obs, reward, info)] of each gym env -> one SimStep over all sub-envs."""
        states, frames, rewards, success = [], [], [], []
        for obs, reward, info in parts:
            state = obs["state"]
            states.append(state if torch.is_tensor(state) else torch.as_tensor(state))
            # (n, H, W, 3) each; a GPU batch is averaged down on the GPU, before the copy
            imgs = [_np(downsample(obs["sensor_data"][cam]["rgb"], self.supersample)) for cam in self.cameras]
            frames += [[img[k] for img in imgs] for k in range(imgs[0].shape[0])]
            rewards.append(torch.as_tensor(reward, dtype=torch.float32).reshape(-1))
            success.append(torch.as_tensor(info.get("success", False)).reshape(-1).to(torch.bool))
        dev = self.device
        return SimStep(
            obs=torch.cat([s.to(dev, torch.float32).reshape(-1, self.obs_dim) for s in states]),
            frames=frames,
            env_reward=torch.cat([r.to(dev) for r in rewards]),
            gt_success=torch.cat([s.to(dev) for s in success]),
        )

    # --- SimBatch ----------------------------------------------------------------------
    def reset(self, seed: int | None = None, env_idx: Sequence[int] | None = None) -> SimStep:
        if self.gpu:  # ManiSkill resets the scenes in env_idx and returns obs of all of them
            env = self.envs[0]
            options = {}
            if env_idx is not None:
                options["env_idx"] = torch.as_tensor(list(env_idx), device=self.device)
            _, info = env.reset(seed=seed, options=options)
            self._show_goal(env)
            self._last = self._pack([(env.unwrapped.get_obs(), torch.zeros(self.num_envs), info)])
            return self._last
        which = range(len(self.envs)) if env_idx is None else env_idx
        if seed is not None:  # sub-env k plays seeds seed + 100000 k, seed + 100000 k + 1, ...
            self._seeds = [seed + 100_000 * k for k in range(len(self.envs))]
        for k in which:
            env = self.envs[k]
            _, info = env.reset(seed=self._seeds[k])
            self._seeds[k] += 1
            self._show_goal(env)
            self._cpu_last[k] = (env.unwrapped.get_obs(), 0.0, info)
        return self._pack(self._cpu_last)

    def step(self, action: torch.Tensor) -> SimStep:
        action = action.detach()
        if self.gpu:
            obs, reward, _term, _trunc, info = self.envs[0].step(action)
            self._last = self._pack([(obs, reward, info)])
            return self._last
        a = action.cpu().numpy().astype(np.float32)
        for k, env in enumerate(self.envs):
            obs, reward, _term, _trunc, info = env.step(a[k : k + 1])
            self._cpu_last[k] = (obs, reward, info)
        return self._pack(self._cpu_last)

    def close(self) -> None:
        for env in self.envs:
            env.close()


class GroundTruthEvalEnv:
    """Evaluation on ground truth (a VecEnv of rl.envs): the same task with state observations
    only (no camera: 3-4 ms a step instead of ~45 on the CPU), episodes ending at the first
    ground-truth success (success_once, ManiSkill's evaluation metric) or the time limit.
    The same protocol for every policy compared, whatever reward it was trained with."""

    def __init__(self, cfg: SimBatchConfig, max_episode_steps: int) -> None:
        import gymnasium as gym
        import mani_skill.envs  # noqa: F401

        if cfg.sim_backend != "physx_cpu":
            raise ValueError("GroundTruthEvalEnv runs on the CPU backend (one env)")
        self.env = gym.make(
            cfg.task,
            obs_mode="state",
            control_mode=cfg.control_mode,
            sim_backend="physx_cpu",
            render_backend=cfg.render_backend,
            max_episode_steps=10**9,
        )
        self.num_envs, self.device, self.max_episode_steps = 1, torch.device("cpu"), max_episode_steps
        obs, _ = self.env.reset(seed=0)
        self.obs_dim = int(obs.shape[-1])
        self.act_dim = int(np.prod(self.env.action_space.shape[-1:]))
        self._seed, self._t, self._ret = 0, 0, 0.0

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if seed is not None:
            self._seed = seed
        obs, _ = self.env.reset(seed=self._seed)
        self._seed += 1
        self._t, self._ret = 0, 0.0
        return torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)

    def step(self, action: torch.Tensor):
        from reward_model_ros.rl.envs import StepResult

        obs, _r, _term, _trunc, info = self.env.step(action.detach().cpu().numpy().astype(np.float32))
        self._t += 1
        success = bool(_np(info["success"]).reshape(-1)[0])
        self._ret += float(success)
        obs = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
        terminated, truncated = success, not success and self._t >= self.max_episode_steps
        episodes = []
        final = obs.clone()
        if terminated or truncated:
            episodes = [
                {
                    "env_index": 0,
                    "return": self._ret,
                    "length": self._t,
                    "success": success,
                    "gt_success": success,
                }
            ]
            obs = self.reset()
        return StepResult(
            obs=obs,
            reward=torch.tensor([float(success)]),
            terminated=torch.tensor([terminated]),
            truncated=torch.tensor([truncated]),
            final_obs=final,
            episodes=episodes,
        )

    def close(self) -> None:
        self.env.close()
