"""Policy checkpoints: safetensors + JSON, never pickle.

A checkpoint directory holds
- `policy.safetensors`: the weights of every module saved, keys `<module>.<parameter>`;
- `policy.json`: {"format_version", "kind" ("sac" | "ppo"), "obs_dim", "act_dim", "hidden",
  "step", "metrics", "config", "state"};
- for resuming, `optim.safetensors` + `optim.json`: optimizer tensors (`optim.<name>.<param id>.<key>`)
  and random generator states (`rng.<name>`) in safetensors, param groups and scalars in JSON;
- (SAC) `replay_buffer/` (rl.buffer's format).
`load_policy` rebuilds the actor for evaluation; `load_modules` / `load_training_state` restore
a run for `resume=`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT_VERSION = 1
POLICY_WEIGHTS = "policy.safetensors"
POLICY_META = "policy.json"
OPTIM_WEIGHTS = "optim.safetensors"
OPTIM_META = "optim.json"
# kind -> the module that acts (its name in policy.safetensors)
ACTOR_MODULE = {"sac": "actor", "ppo": "agent"}


class PolicyCheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt or does not fit; the message names the file and the fix."""


class Policy:
    """A loaded actor: `act(obs, deterministic=True) -> actions` in [-1, 1], no gradients."""

    def __init__(self, net: nn.Module, kind: str, meta: dict[str, Any], device: str | torch.device):
        self.net, self.kind, self.meta, self.device = net, kind, meta, torch.device(device)
        self.obs_dim, self.act_dim = int(meta["obs_dim"]), int(meta["act_dim"])

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.net.act(obs.to(self.device, torch.float32), deterministic)


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def read_json(path: Path, version: int, what: str = "a policy checkpoint directory") -> dict[str, Any]:
    """The JSON in `path`, checked for its format_version."""
    if not path.is_file():
        raise PolicyCheckpointError(f"{path} is missing: pass {what} (it holds {path.name})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicyCheckpointError(
            f"{path} is not valid JSON ({exc}): the file is corrupt, save it again"
        ) from exc
    if not isinstance(meta, dict) or meta.get("format_version") != version:
        got = meta.get("format_version") if isinstance(meta, dict) else None
        raise PolicyCheckpointError(
            f"{path}: format_version {got!r} is not supported (this version reads {version}): "
            "save the checkpoint again with this version"
        )
    return meta


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise PolicyCheckpointError(f"{path} is missing: the checkpoint is incomplete, save it again")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PolicyCheckpointError(
            f"{path} cannot be read ({exc}): the file is corrupt, save it again"
        ) from exc


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)  # atomic: a crash never leaves a half-written file


def save_policy(
    directory: str | Path,
    kind: str,
    modules: dict[str, nn.Module],
    config: dict[str, Any],
    state: dict[str, Any],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    generators: dict[str, torch.Generator] | None = None,
) -> Path:
    """Write a checkpoint into `directory` (created). `state` needs obs_dim, act_dim and step
    (metrics and any other JSON-able keys are kept); `config["hidden"]` gives the hidden dims."""
    if kind not in ACTOR_MODULE:
        raise ValueError(f"kind {kind!r}: expected one of {sorted(ACTOR_MODULE)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}
    _write_tensors(directory / POLICY_WEIGHTS, weights)
    rest = {k: v for k, v in state.items() if k not in ("obs_dim", "act_dim", "step", "metrics")}
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "obs_dim": int(state["obs_dim"]),
        "act_dim": int(state["act_dim"]),
        "hidden": list(config.get("hidden", [])),
        "step": int(state["step"]),
        "metrics": state.get("metrics", {}),
        "config": config,
        "state": rest,
        "modules": sorted(modules),
    }
    write_json(directory / POLICY_META, meta)
    if optimizers is not None:
        _save_training_state(directory, optimizers, generators or {})
    return directory


def _save_training_state(
    directory: Path, optimizers: dict[str, torch.optim.Optimizer], generators: dict[str, torch.Generator]
) -> None:
    tensors: dict[str, torch.Tensor] = {f"rng.{name}": g.get_state() for name, g in generators.items()}
    meta: dict[str, Any] = {"format_version": FORMAT_VERSION, "optimizers": {}}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars = {}
        for pid, s in sd["state"].items():
            for k, v in s.items():
                if torch.is_tensor(v):
                    tensors[f"optim.{name}.{pid}.{k}"] = v
                else:
                    scalars[f"{pid}.{k}"] = v
        meta["optimizers"][name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    _write_tensors(directory / OPTIM_WEIGHTS, tensors)
    write_json(directory / OPTIM_META, meta)


def read_policy_meta(directory: str | Path) -> dict[str, Any]:
    """policy.json, checked."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PolicyCheckpointError(f"{directory} is not a directory: pass a policy checkpoint directory")
    meta = read_json(directory / POLICY_META, FORMAT_VERSION)
    missing = [k for k in ("kind", "obs_dim", "act_dim", "hidden", "step") if k not in meta]
    if missing:
        raise PolicyCheckpointError(
            f"{directory / POLICY_META} lacks {missing}: the file is corrupt, save it again"
        )
    return meta


def load_modules(directory: str | Path, modules: dict[str, nn.Module]) -> dict[str, Any]:
    """Load the weights of `modules` (by name) from policy.safetensors; returns policy.json."""
    directory = Path(directory)
    meta = read_policy_meta(directory)
    tensors = read_tensors(directory / POLICY_WEIGHTS)
    for name, module in modules.items():
        prefix = name + "."
        sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0:3]
            raise PolicyCheckpointError(
                f"{directory / POLICY_WEIGHTS}: the weights of {name!r} do not fit the network built from "
                f"{POLICY_META} (obs_dim {meta['obs_dim']}, act_dim {meta['act_dim']}, "
                f"hidden {meta['hidden']}): "
                f"{' '.join(first)}; the files do not belong together, or the config was changed"
            ) from exc
    return meta


def load_training_state(
    directory: str | Path,
    optimizers: dict[str, torch.optim.Optimizer],
    generators: dict[str, torch.Generator] | None = None,
) -> None:
    """Restore optimizer states and generator states saved by save_policy(optimizers=...)."""
    directory = Path(directory)
    meta = read_json(directory / OPTIM_META, FORMAT_VERSION, what="a checkpoint saved with its optimizers")
    tensors = read_tensors(directory / OPTIM_WEIGHTS)
    for name, opt in optimizers.items():
        if name not in meta.get("optimizers", {}):
            raise PolicyCheckpointError(f"{directory / OPTIM_META} has no optimizer {name!r}: save it again")
        _load_optimizer(directory, name, opt, meta["optimizers"][name], tensors)
    for name, gen in (generators or {}).items():
        if f"rng.{name}" not in tensors:
            raise PolicyCheckpointError(f"{directory / OPTIM_WEIGHTS} has no generator state {name!r}")
        gen.set_state(tensors[f"rng.{name}"])


def _load_optimizer(
    directory: Path, name: str, opt: torch.optim.Optimizer, meta: dict, tensors: dict[str, torch.Tensor]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim.{name}."
    for key, v in tensors.items():
        if key.startswith(prefix):
            pid, k = key[len(prefix) :].split(".", 1)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    try:
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise PolicyCheckpointError(
            f"{directory / OPTIM_META}: the state of optimizer {name!r} does not fit ({exc})"
        ) from exc


def build_actor(kind: str, obs_dim: int, act_dim: int, hidden: list[int]) -> nn.Module:
    from reward_model_ros.rl.networks import ActorCritic, TanhGaussianActor

    if kind == "sac":
        return TanhGaussianActor(obs_dim, act_dim, hidden)
    return ActorCritic(obs_dim, act_dim, hidden)


def load_policy(directory: str | Path, device: str | torch.device = "cpu") -> Policy:
    """The actor of a checkpoint, for evaluation. Raises PolicyCheckpointError."""
    directory = Path(directory)
    meta = read_policy_meta(directory)
    kind = meta["kind"]
    if kind not in ACTOR_MODULE:
        raise PolicyCheckpointError(
            f"{directory / POLICY_META}: kind {kind!r} is unknown (expected one of {sorted(ACTOR_MODULE)})"
        )
    try:
        net = build_actor(kind, int(meta["obs_dim"]), int(meta["act_dim"]), [int(h) for h in meta["hidden"]])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise PolicyCheckpointError(
            f"{directory / POLICY_META}: cannot build the {kind} actor ({exc})"
        ) from exc
    load_modules(directory, {ACTOR_MODULE[kind]: net})
    device = torch.device(device)
    return Policy(net.to(device).eval(), kind, meta, device)
