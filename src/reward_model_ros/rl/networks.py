"""Networks: SAC's tanh-Gaussian actor and LayerNorm critic ensemble (SERL/RLPD), PPO's actor-critic.

Every stochastic call takes an optional `torch.Generator`, so a run's randomness can be saved
and restored with the generator's state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0


class TanhGaussianActor(nn.Module):
    """a = tanh(mean + std * eps); log-std squashed smoothly into [LOG_STD_MIN, LOG_STD_MAX] (CleanRL)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.mean = nn.Linear(width, act_dim)
        self.log_std = nn.Linear(width, act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(obs)
        log_std = torch.tanh(self.log_std(h))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        return self.mean(h), log_std

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action in [-1, 1] and its log-probability (B,)."""
        mean, log_std = self(obs)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + log_std.exp() * eps
        log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log|d tanh(u)/du| = 2 * (log 2 - u - softplus(-2u)), numerically stable
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, deterministic: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if deterministic:
            return torch.tanh(self(obs)[0])
        return self.sample(obs, generator)[0]


class EnsembleLinear(nn.Module):
    """`num` independent linear layers applied at once: (num, B, in) -> (num, B, out)."""

    def __init__(self, num: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1 / math.sqrt(in_dim)  # nn.Linear's default init
        self.weight = nn.Parameter(torch.empty(num, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with its own scale and shift per ensemble member."""

    def __init__(self, num: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


class CriticEnsemble(nn.Module):
    """`num_qs` Q(s, a) networks (LayerNorm after each hidden layer, as SERL/RLPD), evaluated together."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        num_qs: int = 2,
        layer_norm: bool = True,
    ):
        super().__init__()
        self.num_qs = num_qs
        layers: list[nn.Module] = []
        in_dim = obs_dim + act_dim
        for h in hidden:
            layers += [EnsembleLinear(num_qs, in_dim, h)]
            layers += [EnsembleLayerNorm(num_qs, h)] if layer_norm else []
            layers += [nn.ReLU()]
            in_dim = h
        layers.append(EnsembleLinear(num_qs, in_dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(num_qs, B) Q-values."""
        x = torch.cat([obs, action], dim=-1).unsqueeze(0).expand(self.num_qs, -1, -1)
        return self.net(x).squeeze(-1)


def min_over_subset(
    q: torch.Tensor, num_min_qs: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(num_qs, B) -> (B,): the minimum over `num_min_qs` members drawn at random (RLPD)."""
    if num_min_qs >= q.shape[0]:
        return q.min(0).values
    idx = torch.randperm(q.shape[0], generator=generator, device=generator.device if generator else q.device)
    return q[idx[:num_min_qs].to(q.device)].min(0).values


class Temperature(nn.Module):
    """SAC's entropy temperature alpha, learned as log(alpha)."""

    def __init__(self, init: float = 1e-2):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init)))

    def forward(self) -> torch.Tensor:
        return self.log_alpha.exp()


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights, constant bias (CleanRL's PPO)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def _tanh_mlp(in_dim: int, hidden: Sequence[int], out_dim: int, out_std: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [layer_init(nn.Linear(in_dim, h)), nn.Tanh()]
        in_dim = h
    layers.append(layer_init(nn.Linear(in_dim, out_dim), std=out_std))
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """PPO's agent: a Gaussian actor with a state-independent log-std and a separate value network."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64), init_log_std: float = 0.0
    ):
        super().__init__()
        self.critic = _tanh_mlp(obs_dim, hidden, 1, out_std=1.0)
        self.actor_mean = _tanh_mlp(obs_dim, hidden, act_dim, out_std=0.01)
        self.actor_logstd = nn.Parameter(torch.full((1, act_dim), float(init_log_std)))

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def get_action_and_value(
        self, obs: torch.Tensor, action: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(action, log_prob, entropy, value); samples the action when none is given. Actions are
        unbounded here: the env step clamps them to [-1, 1]."""
        mean = self.actor_mean(obs)
        std = self.actor_logstd.expand_as(mean).exp()
        if action is None:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            action = mean + std * eps
        dist = torch.distributions.Normal(mean, std)
        return action, dist.log_prob(action).sum(-1), dist.entropy().sum(-1), self.get_value(obs)

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, deterministic: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if deterministic:
            return self.actor_mean(obs).clamp(-1.0, 1.0)
        return self.get_action_and_value(obs, generator=generator)[0].clamp(-1.0, 1.0)
