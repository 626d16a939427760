"""Evaluate a policy with deterministic actions over exactly `episodes` episodes of a vectorised env.

Sub-env i runs its first `episodes // N (+1 for i < episodes % N)` episodes; episodes a
sub-env finishes beyond its share are ignored, so short (e.g. early-success) episodes are not
over-counted. Ground-truth success (`gt_success`) is the evaluation metric; `success` is the
reward model's decision, reported beside it.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from reward_model_ros.rl.envs import VecEnv, episode_env_indices
from reward_model_ros.rl.logger import summarize_episodes


class Actor(Protocol):
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor: ...


def episode_quota(episodes: int, num_envs: int) -> list[int]:
    """How many episodes each sub-env runs."""
    return [episodes // num_envs + (1 if i < episodes % num_envs else 0) for i in range(num_envs)]


@torch.no_grad()
def evaluate_policy(policy: Actor, env: VecEnv, episodes: int, seed: int = 0) -> dict[str, Any]:
    """{"episodes", "gt_success", "success", "return", "length", <other numeric keys>, "per_episode"}:
    means over `episodes` episodes, then the episode dicts (in sub-env order)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    quota = episode_quota(episodes, env.num_envs)
    done = [0] * env.num_envs
    per_env: list[list[dict]] = [[] for _ in range(env.num_envs)]
    obs = env.reset(seed=seed)
    limit = (max(quota) + 1) * max(1, env.max_episode_steps) + 1
    for _ in range(limit):
        res = env.step(policy.act(obs, deterministic=True).to(env.device))
        for i, ep in zip(episode_env_indices(res), res.episodes, strict=True):
            if done[i] < quota[i]:
                per_env[i].append(ep)
                done[i] += 1
        obs = res.obs
        if done == quota:
            break
    if done != quota:
        raise RuntimeError(
            f"evaluation did not finish {episodes} episodes in {limit} steps: does the env truncate?"
        )
    finished = [ep for eps in per_env for ep in eps]
    summary = summarize_episodes(finished)
    out: dict[str, Any] = {
        "episodes": len(finished),
        "gt_success": summary.get("charts/gt_success_rate", float("nan")),
        "success": summary["charts/success_rate"],
        "return": summary["charts/episodic_return"],
        "length": summary["charts/episodic_length"],
    }
    skip = {
        "charts/gt_success_rate",
        "charts/success_rate",
        "charts/episodic_return",
        "charts/episodic_length",
    }
    out |= {k.split("/", 1)[1]: v for k, v in summary.items() if k not in skip and k.startswith("charts/")}
    out["per_episode"] = finished
    return out
