"""The vectorised env protocol the RL algorithms train against (torch tensors on `env.device`).

An env runs `num_envs` sub-envs in lockstep and auto-resets the ones that end:

    obs = env.reset(seed=1)                 # (N, obs_dim) float32
    res = env.step(action)                  # action (N, act_dim) in [-1, 1]
    res.obs                                 # next obs; already the first obs of a new episode where one ended
    res.final_obs                           # the true last obs where an episode ended (= obs elsewhere)
    res.reward, res.terminated, res.truncated
    res.episodes                            # one dict per episode that ended this step

`terminated` means the task ended (no bootstrapping); `truncated` means the time limit cut the
episode (bootstrap from `final_obs`). Where both would hold, report `terminated` only.

Each episode dict has at least `return`, `length`, `success` (the reward model's decision: what
the learner was told) and `gt_success` (the simulator's ground truth: for monitoring and
evaluation only; the algorithms never read it). Other numeric keys are logged under `charts/`.
The dicts come in ascending sub-env order of `terminated | truncated`; an optional `env_index`
key names the sub-env explicitly (evaluation uses either to count episodes per sub-env).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

EPISODE_KEYS = ("return", "length", "success", "gt_success")


class EnvProtocolError(ValueError):
    """An env whose reset/step results do not follow the protocol; the message says which field."""


@dataclass
class StepResult:
    obs: torch.Tensor
    """(N, obs_dim) float32: the next observation (first obs of the next episode where one ended)"""
    reward: torch.Tensor
    """(N,) float32: the reward (from the learned reward model, for the learned-reward envs)"""
    terminated: torch.Tensor
    """(N,) bool: the episode ended on the task's terms (no bootstrapping)"""
    truncated: torch.Tensor
    """(N,) bool: the time limit cut the episode (bootstrap from final_obs)"""
    final_obs: torch.Tensor
    """(N, obs_dim): the true last observation where an episode ended, equal to obs elsewhere"""
    episodes: list[dict[str, Any]] = field(default_factory=list)
    """one dict per episode that ended this step (return, length, success, gt_success, ...)"""


@runtime_checkable
class VecEnv(Protocol):
    num_envs: int
    obs_dim: int
    act_dim: int
    device: torch.device
    max_episode_steps: int

    def reset(self, seed: int | None = None) -> torch.Tensor: ...

    def step(self, action: torch.Tensor) -> StepResult: ...

    def close(self) -> None: ...


def episode_env_indices(res: StepResult) -> list[int]:
    """The sub-env index of each dict in `res.episodes` (`env_index` if given, else the order of
    `terminated | truncated`)."""
    done = torch.nonzero(res.terminated | res.truncated).flatten().tolist()
    if all("env_index" in ep for ep in res.episodes):
        return [int(ep["env_index"]) for ep in res.episodes]
    if len(done) != len(res.episodes):
        raise EnvProtocolError(
            f"{len(res.episodes)} episode dicts for {len(done)} sub-envs with terminated|truncated: "
            "an env must report one dict per episode that ended (or give each an env_index)"
        )
    return done


def check_env(env: VecEnv, steps: int | None = None, seed: int = 0) -> None:
    """Run `steps` random steps (default: one episode and a bit) and check shapes, dtypes, devices,
    the action range and the episode dicts. Raises EnvProtocolError naming the first problem."""
    for name in ("num_envs", "obs_dim", "act_dim", "device", "max_episode_steps"):
        if not hasattr(env, name):
            raise EnvProtocolError(f"the env has no attribute {name!r}")
    n, device = env.num_envs, torch.device(env.device)
    _check_tensor("reset()", env.reset(seed=seed), (n, env.obs_dim), torch.float32, device)
    gen = torch.Generator(device=device).manual_seed(seed)
    for _ in range(steps if steps is not None else env.max_episode_steps + 2):
        action = torch.rand((n, env.act_dim), generator=gen, device=device) * 2 - 1
        res = env.step(action)
        if not isinstance(res, StepResult):
            raise EnvProtocolError(f"step() returned {type(res).__name__}, not StepResult")
        _check_step(res, env, device)


def _check_step(res: StepResult, env: VecEnv, device: torch.device) -> None:
    n = env.num_envs
    _check_tensor("step().obs", res.obs, (n, env.obs_dim), torch.float32, device)
    _check_tensor("step().final_obs", res.final_obs, (n, env.obs_dim), torch.float32, device)
    _check_tensor("step().reward", res.reward, (n,), torch.float32, device)
    _check_tensor("step().terminated", res.terminated, (n,), torch.bool, device)
    _check_tensor("step().truncated", res.truncated, (n,), torch.bool, device)
    ended = res.terminated | res.truncated
    if not torch.equal(res.obs[~ended], res.final_obs[~ended]):
        raise EnvProtocolError("step().final_obs differs from obs in sub-envs that did not end")
    episode_env_indices(res)
    for ep in res.episodes:
        missing = [k for k in EPISODE_KEYS if k not in ep]
        if missing:
            raise EnvProtocolError(f"an episode dict lacks {missing} (has {sorted(ep)})")


def _check_tensor(what: str, t: Any, shape: tuple, dtype: torch.dtype, device: torch.device) -> None:
    if not torch.is_tensor(t):
        raise EnvProtocolError(f"{what} is a {type(t).__name__}, not a torch.Tensor")
    if tuple(t.shape) != shape or t.dtype != dtype or t.device.type != device.type:
        raise EnvProtocolError(
            f"{what} is {tuple(t.shape)} {t.dtype} on {t.device}; expected {shape} {dtype} on {device}"
        )
