"""`key=value` overrides on top of a dataclass config (OmegaConf), with errors a user can act on."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError


class OverrideError(ValueError):
    """An override that does not name a known key or has a value of the wrong type."""


def _keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every settable key: the leaves, and the free-form dicts (e.g. model.crop_boxes), which
    are set whole (`model.crop_boxes={front: [0, 0, 64, 64]}`) or per entry."""
    out = []
    for k, v in cfg.items():
        name = f"{prefix}{k}"
        if OmegaConf.is_dict(v) and OmegaConf.get_type(cfg, k) is not dict:
            out += _keys(v, name + ".")
        else:
            out.append(name)
    return out


def _known(key: str, known: list[str], free: set[str]) -> bool:
    return key in known or any(key.startswith(f + ".") for f in free)


def apply_overrides(defaults: Any, overrides: Sequence[str] = (), yaml_files: Iterable[Path] = ()) -> Any:
    """`defaults` (a dataclass instance) + YAML files + `key=value` strings -> an OmegaConf
    config (attribute access, typed). Unknown keys are errors that list the close matches."""
    cfg = OmegaConf.structured(defaults)
    known = _keys(cfg)
    free = {k for k in known if OmegaConf.is_dict(OmegaConf.select(cfg, k))}
    for path in yaml_files:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        except (ConfigKeyError, ConfigAttributeError) as exc:
            raise OverrideError(f"{path}: {_unknown(str(exc), known)}") from exc
        except (OmegaConfBaseException, OSError) as exc:
            raise OverrideError(f"{path}: {exc}") from exc
    for item in overrides:
        if "=" not in item:
            raise OverrideError(f"{item!r}: overrides are key=value, e.g. data.val_fraction=0.2")
        key, _, value = item.partition("=")
        key = key.strip()
        if not _known(key, known, free):
            raise OverrideError(_unknown(key, known))
        try:
            cfg.merge_with_dotlist([f"{key}={value}"])
        except ValidationError as exc:
            raise OverrideError(f"{key}={value}: {str(exc).splitlines()[0]}") from exc
    return cfg


def to_plain(cfg: Any) -> dict:
    """A config (OmegaConf or a dataclass instance) as plain dicts and lists, for JSON."""
    from dataclasses import asdict

    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else asdict(cfg)


def _unknown(key: str, known: list[str]) -> str:
    key = key.split("\n")[0].replace("Key '", "").strip("'")
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown key {key!r}{hint} (keys: {', '.join(known)})"
