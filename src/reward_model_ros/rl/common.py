"""Small helpers shared by the SAC and PPO loops."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def as_config(cfg: Any, cls: type[T]) -> T:
    """A config dataclass instance from an instance or an OmegaConf config (apply_overrides)."""
    if isinstance(cfg, cls):
        return cfg
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        obj = OmegaConf.to_object(cfg)
        if isinstance(obj, cls):
            return obj
        return cls(**obj)  # a plain DictConfig with the same keys
    raise TypeError(f"expected a {cls.__name__} or an OmegaConf config, got {type(cfg).__name__}")


def adam(
    params: Iterable[torch.nn.Parameter], lr: float, device: torch.device, eps: float = 1e-8
) -> torch.optim.Adam:
    """Adam, fused where torch has the kernel (CPU, CUDA): same maths, less per-step overhead."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=device.type in ("cpu", "cuda"))


def resolve_device(name: str, env_device: torch.device | str) -> torch.device:
    """`name`, or the env's device when `name` is empty."""
    return torch.device(name) if name else torch.device(env_device)


def crossed(before: int, after: int, interval: int) -> bool:
    """True when a multiple of `interval` lies in (before, after] (never for interval <= 0)."""
    return interval > 0 and after // interval > before // interval
