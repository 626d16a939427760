"""PointReach: a point in the plane moves to a goal. A toy task for testing the RL algorithms.

Position and goal lie in [-1, 1]^2; the action is a velocity in [-1, 1]^2 times `step_size`.
Observation: (position, goal, goal - position), 6 numbers. The reward is sparse: 1 on every step
where the reward's success decision holds, else 0. The decision comes from `reward_fn(pos, goal)`
(default: within `radius` of the goal, which is also the ground truth), so a test can make the
reward disagree with ground truth. With `terminate_on_success` the reward's decision ends the
episode (as HIL-SERL's classifier does). An episode's `success` / `gt_success`: the reward's
decision / the ground truth held on some step of it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reward_model_ros.rl.envs import StepResult

RewardFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(pos (N, 2), goal (N, 2)) -> (N,) bool: the reward's success decision"""


class PointReach:
    """A vectorised PointReach (the protocol of rl.envs), `num_envs` sub-envs on `device`."""

    obs_dim = 6
    act_dim = 2

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        max_episode_steps: int = 50,
        radius: float = 0.15,
        step_size: float = 0.15,
        terminate_on_success: bool = False,
        reward_fn: RewardFn | None = None,
    ):
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.max_episode_steps = max_episode_steps
        self.radius = radius
        self.step_size = step_size
        self.terminate_on_success = terminate_on_success
        self.reward_fn = reward_fn
        self.gen = torch.Generator(device=self.device).manual_seed(0)
        z = torch.zeros((num_envs, 2), device=self.device)
        self.pos, self.goal = z.clone(), z.clone()
        self.t = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.ret = torch.zeros(num_envs, device=self.device)
        self.success = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self.gt_success = torch.zeros_like(self.success)

    def gt_decision(self, pos: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Ground truth: within `radius` of the goal."""
        return torch.linalg.vector_norm(pos - goal, dim=-1) < self.radius

    def reward_decision(self, pos: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """The reward's success decision (`reward_fn`, or the ground truth); override to change it."""
        return self.reward_fn(pos, goal) if self.reward_fn is not None else self.gt_decision(pos, goal)

    def observe(self) -> torch.Tensor:
        return torch.cat([self.pos, self.goal, self.goal - self.pos], dim=-1)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if seed is not None:
            self.gen.manual_seed(seed)
        self._reset_envs(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self.observe()

    def step(self, action: torch.Tensor) -> StepResult:
        action = action.to(self.device, torch.float32).clamp(-1.0, 1.0)
        self.pos = (self.pos + self.step_size * action).clamp(-1.0, 1.0)
        self.t += 1
        model = self.reward_decision(self.pos, self.goal)
        reward = model.float()
        self.ret += reward
        self.success |= model
        self.gt_success |= self.gt_decision(self.pos, self.goal)
        terminated = model if self.terminate_on_success else torch.zeros_like(model)
        truncated = (self.t >= self.max_episode_steps) & ~terminated
        final_obs = self.observe()
        ended = terminated | truncated
        episodes = self._episodes(ended, final_obs)
        if bool(ended.any()):
            self._reset_envs(ended)
        return StepResult(self.observe(), reward, terminated, truncated, final_obs, episodes)

    def close(self) -> None:
        pass

    def _episodes(self, ended: torch.Tensor, final_obs: torch.Tensor) -> list[dict]:
        idx = torch.nonzero(ended).flatten()
        if len(idx) == 0:
            return []
        distance = torch.linalg.vector_norm(final_obs[idx, 4:6], dim=-1)
        cols = zip(
            idx.tolist(),
            self.ret[idx].tolist(),
            self.t[idx].tolist(),
            self.success[idx].tolist(),
            self.gt_success[idx].tolist(),
            distance.tolist(),
            strict=True,
        )
        return [
            {"env_index": i, "return": r, "length": n, "success": s, "gt_success": g, "final_distance": d}
            for i, r, n, s, g, d in cols
        ]

    def _reset_envs(self, mask: torch.Tensor) -> None:
        n = int(mask.sum())
        sample = torch.rand((n, 4), generator=self.gen, device=self.device) * 2 - 1
        self.pos[mask], self.goal[mask] = sample[:, :2], sample[:, 2:]
        self.t[mask] = 0
        self.ret[mask] = 0.0
        self.success[mask] = False
        self.gt_success[mask] = False
