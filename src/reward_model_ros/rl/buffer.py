"""Replay buffer (a fixed-capacity ring on a device) and RLPD's symmetric demo/online sampling.

On disk (`save`/`load`): `buffer.safetensors` (the filled rows) + `buffer.json` (format_version,
size, position, capacity, obs_dim, act_dim). Never pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from reward_model_ros.rl.checkpoint import PolicyCheckpointError, read_json, read_tensors, write_json

FORMAT_VERSION = 1
WEIGHTS = "buffer.safetensors"
META = "buffer.json"
FIELDS = ("obs", "actions", "rewards", "next_obs", "dones")


@dataclass
class Batch:
    obs: torch.Tensor
    """(B, obs_dim)"""
    actions: torch.Tensor
    """(B, act_dim)"""
    rewards: torch.Tensor
    """(B,)"""
    next_obs: torch.Tensor
    """(B, obs_dim): the observation after the action (the true last one where an episode ended)"""
    dones: torch.Tensor
    """(B,) float: 1 where the episode terminated (not where it was truncated): no bootstrapping"""

    def to(self, device: torch.device) -> Batch:
        return Batch(*(getattr(self, f).to(device) for f in FIELDS))

    @staticmethod
    def cat(a: Batch, b: Batch, device: torch.device) -> Batch:
        """`a`'s rows, then `b`'s, on `device`."""
        return Batch(*(torch.cat([getattr(a, f).to(device), getattr(b, f).to(device)]) for f in FIELDS))


class ReplayBuffer:
    """Transitions (obs, action, reward, next_obs, terminated) in a ring of `capacity` rows."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: str | torch.device = "cpu"):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.obs_dim, self.act_dim = capacity, obs_dim, act_dim
        self.device = torch.device(device)
        self.obs = torch.zeros((capacity, obs_dim), device=self.device)
        self.actions = torch.zeros((capacity, act_dim), device=self.device)
        self.rewards = torch.zeros(capacity, device=self.device)
        self.next_obs = torch.zeros((capacity, obs_dim), device=self.device)
        self.dones = torch.zeros(capacity, device=self.device)
        self.size = 0
        """rows filled"""
        self.position = 0
        """the row the next transition goes to"""

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
    ) -> None:
        """Add N transitions (one per sub-env): obs (N, obs_dim), action (N, act_dim), reward (N,),
        next_obs (N, obs_dim) (use the env's final_obs), terminated (N,) bool."""
        n = obs.shape[0]
        if n > self.capacity:
            obs, action, reward, next_obs, terminated = (
                t[-self.capacity :] for t in (obs, action, reward, next_obs, terminated)
            )
            n = self.capacity
        idx = (self.position + torch.arange(n, device=self.device)) % self.capacity
        self.obs[idx] = obs.to(self.device, torch.float32)
        self.actions[idx] = action.to(self.device, torch.float32)
        self.rewards[idx] = reward.to(self.device, torch.float32)
        self.next_obs[idx] = next_obs.to(self.device, torch.float32)
        self.dones[idx] = terminated.to(self.device, torch.float32)
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """`batch_size` rows drawn uniformly with replacement (indices from `generator`)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        dev = generator.device if generator is not None else self.device
        idx = torch.randint(0, self.size, (batch_size,), generator=generator, device=dev).to(self.device)
        return Batch(*(getattr(self, f)[idx] for f in FIELDS))

    def save(self, directory: str | Path) -> Path:
        """Write buffer.safetensors + buffer.json into `directory` (created)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f: getattr(self, f)[: self.size].detach().contiguous().cpu() for f in FIELDS}
        tmp = directory / (WEIGHTS + ".tmp")
        save_file(tensors, str(tmp))
        tmp.replace(directory / WEIGHTS)
        meta = {"format_version": FORMAT_VERSION, "size": self.size, "position": self.position}
        meta |= {"capacity": self.capacity, "obs_dim": self.obs_dim, "act_dim": self.act_dim}
        write_json(directory / META, meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> ReplayBuffer:
        """The buffer saved in `directory`. Raises PolicyCheckpointError naming the bad file."""
        directory = Path(directory)
        meta = read_json(
            directory / META, FORMAT_VERSION, what="a replay buffer directory (ReplayBuffer.save)"
        )
        try:
            buf = cls(meta["capacity"], meta["obs_dim"], meta["act_dim"], device)
            size, position = int(meta["size"]), int(meta["position"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PolicyCheckpointError(f"{directory / META}: bad or missing field ({exc})") from exc
        tensors = read_tensors(directory / WEIGHTS)
        for f in FIELDS:
            t = tensors.get(f)
            expected = (size, *getattr(buf, f).shape[1:])
            if t is None or tuple(t.shape) != expected:
                got = None if t is None else tuple(t.shape)
                raise PolicyCheckpointError(
                    f"{directory / WEIGHTS}: {f!r} is {got}, {META} says {expected}: the files do not match"
                )
            getattr(buf, f)[:size] = t.to(buf.device)
        buf.size, buf.position = size, position
        return buf


def sample_symmetric(
    online: ReplayBuffer,
    demo: ReplayBuffer | None,
    batch_size: int,
    generator: torch.Generator | None = None,
    demo_ratio: float = 0.5,
) -> Batch:
    """RLPD's symmetric sampling: round(batch_size * demo_ratio) rows from `demo`, the rest from
    `online` (demo rows first), on the online buffer's device. Online only without demos; demo
    only while `online` is empty."""
    if demo is None or len(demo) == 0 or demo_ratio <= 0:
        return online.sample(batch_size, generator)
    if len(online) == 0:
        return demo.sample(batch_size, generator).to(online.device)
    n_demo = round(batch_size * demo_ratio)
    if n_demo >= batch_size:
        return demo.sample(batch_size, generator).to(online.device)
    return Batch.cat(
        demo.sample(n_demo, generator), online.sample(batch_size - n_demo, generator), online.device
    )
