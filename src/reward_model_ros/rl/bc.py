"""Behaviour cloning on demonstrations: the no-RL baseline (same demos, no reward at all)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from reward_model_ros.rl.buffer import ReplayBuffer


@dataclass
class BCConfig:
    steps: int = 2000
    """gradient steps"""
    batch_size: int = 256
    """transitions per step"""
    lr: float = 1e-3
    """Adam learning rate"""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """MLP hidden layer widths"""
    seed: int = 1
    """initialisation and sampling seed"""


class BCPolicy(nn.Module):
    """obs -> tanh-bounded action; `act()` as the RL policies have it."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int]) -> None:
        super().__init__()
        layers, width = [], obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, act_dim), nn.Tanh())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self(obs.to(next(self.parameters()).device, torch.float32))


def train_bc(demos: ReplayBuffer, cfg: BCConfig) -> tuple[BCPolicy, list[float]]:
    """Regress the demonstrated actions (MSE); returns the policy and the loss curve."""
    if len(demos) == 0:
        raise ValueError("behaviour cloning needs demonstrations: the demo buffer is empty")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=demos.device).manual_seed(cfg.seed)
    policy = BCPolicy(demos.obs_dim, demos.act_dim, list(cfg.hidden)).to(demos.device)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    losses = []
    for _ in range(cfg.steps):
        batch = demos.sample(cfg.batch_size, gen)
        loss = ((policy(batch.obs) - batch.actions) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return policy.eval(), losses
