"""Checkpoints: a directory with model.safetensors and config.json. Never pickle.

config.json:
    {"format_version": 1, "model": {ModelConfig}, "threshold": 0.5,
     "training": {...free-form metadata: data, epochs, metrics...},
     "validation_decision": {"debounce_frames": 4, "frames": .., "episodes": .., "scored_as": "int8",
                             "reason": "...", "failure_bounds": {"temperature": .., "by_debounce":
                             {"1": 0.99, ..}}},   (written by `reward-model train`)
     "recommended": {"reward_threshold": 0.35, "debounce_frames": 4, "camera_fusion": "mean",
                     "source": "...", "figures": {...}},   (written by `reward-model evaluate`)
     "calibration": {"temperature": 1.4, "applied": true, "ece_before": .., "ece_after": ..,
                     "nll_before": .., "nll_after": .., "fitted_on": "<data> val, N frames", ...}}
                     (written by `reward-model train` and `reward-model calibrate`)
     "int8": {"frames": 64, "source": "<data> train", "created": ".."}}
                     (written with int8_calibration.safetensors by `train` and `reward-model quantize`)

`threshold` and `validation_decision.debounce_frames` are chosen by `train` on its validation
episodes, scored as reward_node scores them (served precision, fitted temperature):
metrics.validation_decision. `recommended` holds the decision settings `evaluate` chose on
other held-out episodes (no failure episode judged successful there, nor among the validation
episodes: `failure_bounds`, see validation_failure_bounds). Whoever scores frames with the
checkpoint takes its decision settings from `decision_settings()`: explicit values first, then
`recommended`, then `threshold` and `validation_decision`.

`calibration` holds the temperature T that the model's probabilities are scaled with:
sigmoid(logit / T), applied in `ResNetRewardModel.predict` (which every scorer goes through).
Without the field (older checkpoints) T = 1. Both thresholds above are on the calibrated
probabilities: `store_calibration` maps them to a new T so that decisions stay the same.

`int8_calibration.safetensors` (optional) holds a few of the model's own training inputs, from
which model.precision=int8 is quantized at load (core/quantize.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reward_model_ros.core import quantize
from reward_model_ros.core.config import ConfigError, ModelConfig
from reward_model_ros.core.model import ResNetRewardModel, resolve_inference
from reward_model_ros.core.reward import DEFAULT_FUSION, FUSIONS

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
# keys that change the network or its input: a contradicting override is an error
STRUCTURAL_KEYS = ("arch", "hidden_dim", "image_size", "normalize", "frame_stack")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file or field and what to do."""


@dataclass
class Checkpoint:
    model: ResNetRewardModel
    config: ModelConfig
    threshold: float
    """the recommended decision threshold (chosen on validation data)"""
    model_id: str
    """"<directory name>@<first 12 hex digits of sha256(model.safetensors)>\""""
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    recommended: dict[str, Any] | None = None
    """decision settings validated by `reward-model evaluate` (see module docstring), or None"""
    calibration: dict[str, Any] | None = None
    """the temperature fit (see module docstring), or None (uncalibrated: T = 1)"""
    debounce: int = 1
    """the debounce `train` chose with `threshold` on validation episodes (1: none stored)"""
    validation_decision: dict[str, Any] | None = None
    """config.json `validation_decision` as `train` wrote it (None: older checkpoints)"""

    @property
    def temperature(self) -> float:
        """The temperature the model's probabilities are scaled with (1 = uncalibrated)."""
        return float(self.model.temperature)


@dataclass(frozen=True)
class DecisionSettings:
    """Threshold, debounce and camera fusion for scoring with a checkpoint, and where each came from."""

    reward_threshold: float
    debounce_frames: int
    camera_fusion: str
    source: str
    """one line for logs: e.g. 'threshold 0.35, debounce 4, fusion mean: recommended by evaluate ...'"""


def decision_settings(
    ckpt: Checkpoint, threshold: float = -1.0, debounce: int = -1, fusion: str = ""
) -> DecisionSettings:
    """Explicit values (threshold >= 0, debounce >= 1, fusion non-empty) win; the rest come from
    the checkpoint's `recommended` settings, else train's validation threshold and debounce
    (`validation_decision`; no debounce without it), DEFAULT_FUSION."""
    rec = ckpt.recommended or {}
    parts = []

    def pick(name: str, given: Any, explicit: bool, fallback: Any, fallback_why: str) -> Any:
        if explicit:
            parts.append(f"{name} {given} (set)")
            return given
        if name in _REC_KEYS and _REC_KEYS[name] in rec:
            parts.append(f"{name} {rec[_REC_KEYS[name]]} (recommended)")
            return rec[_REC_KEYS[name]]
        parts.append(f"{name} {fallback} ({fallback_why})")
        return fallback

    t = pick("threshold", threshold, threshold >= 0, ckpt.threshold, "the checkpoint's validation threshold")
    d = pick(
        "debounce",
        debounce,
        debounce >= 1,
        ckpt.debounce,
        "chosen on validation episodes by train" if ckpt.debounce > 1 else "off",
    )
    f = pick("fusion", fusion, bool(fusion), DEFAULT_FUSION, "default")
    where = f"; recommended by {rec.get('source', 'evaluate')}" if rec else "; no recommendation stored"
    return DecisionSettings(float(t), int(d), str(f), ", ".join(parts) + where)


_REC_KEYS = {"threshold": "reward_threshold", "debounce": "debounce_frames", "fusion": "camera_fusion"}


def store_recommendation(
    directory: str | Path,
    threshold: float,
    debounce: int,
    fusion: str,
    source: str,
    figures: dict[str, Any] | None = None,
    chosen_on: dict[str, str] | None = None,
) -> None:
    """Record validated decision settings in the checkpoint's config.json (atomically);
    `chosen_on`: the dataset and split they were chosen on ({"data", "split"})."""
    directory = Path(directory)
    meta = _read_config(directory)
    meta["recommended"] = _check_recommended(
        {
            "reward_threshold": float(threshold),
            "debounce_frames": int(debounce),
            "camera_fusion": fusion,
            "source": source,
            "figures": figures or {},
            **({"chosen_on": chosen_on} if chosen_on else {}),
        },
        directory / CONFIG,
    )
    _write_config(directory, meta)


def store_validation_decision(
    directory: str | Path, threshold: float, debounce: int, details: dict[str, Any]
) -> None:
    """Record the threshold and debounce `train` chose on validation episodes (as served) in the
    checkpoint's config.json (atomically): `threshold` and `validation_decision`."""
    directory = Path(directory)
    meta = _read_config(directory)
    if not 0.0 <= threshold <= 1.0:
        raise CheckpointError(f"threshold {threshold} is not a probability in [0, 1]")
    meta["threshold"] = float(threshold)
    meta["validation_decision"] = _check_decision(
        {**details, "debounce_frames": int(debounce)}, directory / CONFIG
    )
    _write_config(directory, meta)


def _check_decision(dec: Any, path: Path) -> dict[str, Any] | None:
    if dec is None:
        return None
    ok = isinstance(dec, dict) and isinstance(dec.get("debounce_frames"), int) and dec["debounce_frames"] >= 1
    if not ok:
        raise CheckpointError(
            f"{path}: 'validation_decision' must hold debounce_frames >= 1; got {dec!r}. Retrain, or delete "
            "the field (the checkpoint then decides without a debounce unless one is set)"
        )
    return dec


def _write_config(directory: Path, meta: dict[str, Any]) -> None:
    tmp = directory / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=float) + "\n")
    tmp.replace(directory / CONFIG)  # atomic


def applied_temperature(calibration: dict[str, Any] | None) -> float:
    """T of a `calibration` entry: its temperature when applied, else 1."""
    if not calibration or not calibration.get("applied"):
        return 1.0
    return float(calibration["temperature"])


def validation_failure_bounds(ckpt: Checkpoint) -> dict[int, float] | None:
    """Per debounce, the probability above which a threshold judges none of train's validation
    failure episodes successful (metrics.failure_run_bounds, stored by `train` with the
    temperature it was computed at), at the checkpoint's current temperature; None for a
    checkpoint without them (trained before they were stored)."""
    stored = (ckpt.validation_decision or {}).get("failure_bounds")
    if not isinstance(stored, dict) or not isinstance(stored.get("by_debounce"), dict):
        return None
    was = float(stored.get("temperature", 1.0))
    return {
        int(d): rescale_threshold(float(p), was, ckpt.temperature) for d, p in stored["by_debounce"].items()
    }


def rescale_threshold(threshold: float, old_temperature: float, new_temperature: float) -> float:
    """The threshold on sigmoid(z / new) that decides every logit z as `threshold` does on
    sigmoid(z / old)."""
    if not 0.0 < threshold < 1.0 or old_temperature == new_temperature:
        return threshold
    z = math.log(threshold / (1.0 - threshold)) * old_temperature
    return 1.0 / (1.0 + math.exp(-z / new_temperature))


def store_calibration(directory: str | Path, calibration: dict[str, Any]) -> dict[str, Any]:
    """Record a temperature fit in the checkpoint's config.json (atomically). The stored
    thresholds (`threshold`, `recommended.reward_threshold`) are mapped from the old temperature
    to the new one, so that the checkpoint decides every frame as before. Returns
    {"threshold": [old, new], "reward_threshold": [old, new] or None}."""
    directory = Path(directory)
    meta = _read_config(directory)
    calibration = _check_calibration(dict(calibration), directory / CONFIG)
    old = applied_temperature(_check_calibration(meta.get("calibration"), directory / CONFIG))
    new = applied_temperature(calibration)
    was = float(meta["threshold"])
    meta["threshold"] = rescale_threshold(was, old, new)
    changed: dict[str, Any] = {"threshold": [was, meta["threshold"]], "reward_threshold": None}
    rec = _check_recommended(meta.get("recommended"), directory / CONFIG)
    if rec is not None:
        was = float(rec["reward_threshold"])
        rec["reward_threshold"] = rescale_threshold(was, old, new)
        changed["reward_threshold"] = [was, rec["reward_threshold"]]
    meta["calibration"] = calibration
    _write_config(directory, meta)
    return changed


def _check_calibration(cal: Any, path: Path) -> dict[str, Any] | None:
    if cal is None:
        return None
    t = cal.get("temperature") if isinstance(cal, dict) else None
    ok = (
        isinstance(t, (int, float))
        and not isinstance(t, bool)
        and math.isfinite(t)
        and t > 0
        and isinstance(cal.get("applied"), bool)
    )
    if not ok:
        raise CheckpointError(
            f"{path}: 'calibration' must hold a finite temperature > 0 and applied true/false; got "
            f"{cal!r}. Re-run `reward-model calibrate CHECKPOINT --data DATASET` or delete the field"
        )
    return cal


def _check_recommended(rec: Any, path: Path) -> dict[str, Any] | None:
    if rec is None:
        return None
    ok = (
        isinstance(rec, dict)
        and isinstance(rec.get("reward_threshold"), (int, float))
        and 0.0 <= rec["reward_threshold"] <= 1.0
        and isinstance(rec.get("debounce_frames"), int)
        and rec["debounce_frames"] >= 1
        and rec.get("camera_fusion", DEFAULT_FUSION) in FUSIONS
    )
    if not ok:
        raise CheckpointError(
            f"{path}: 'recommended' must hold reward_threshold in [0, 1], debounce_frames >= 1 and "
            f"camera_fusion in {FUSIONS}; got {rec!r}. Re-run `reward-model evaluate` or delete the field"
        )
    return rec


def save_checkpoint(
    directory: str | Path, model: ResNetRewardModel, threshold: float, training: dict[str, Any] | None = None
) -> Path:
    """Write model.safetensors + config.json into `directory` (created). Returns it."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = directory / (WEIGHTS + ".tmp")
    save_file(state, str(tmp), metadata={"format_version": str(FORMAT_VERSION)})
    tmp.replace(directory / WEIGHTS)  # atomic: a crash never leaves a half-written file
    meta = {
        "format_version": FORMAT_VERSION,
        "model": model.cfg.to_dict(),
        "threshold": float(threshold),
        "training": training or {},
    }
    (directory / CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: a checkpoint directory holds {WEIGHTS} and {CONFIG}")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}): the checkpoint is corrupt") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path} holds a JSON {type(meta).__name__}, not an object with format_version, model and "
            "threshold: the checkpoint is corrupt; re-export it (save_checkpoint) or train again"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version!r} is not supported (this version reads {FORMAT_VERSION}); "
            "re-save the checkpoint with a matching reward_model_ros"
        )
    for key in ("model", "threshold"):
        if key not in meta:
            raise CheckpointError(f"{path}: field {key!r} is missing")
    if not isinstance(meta["model"], dict):
        raise CheckpointError(f"{path}: field 'model' must be an object of model keys, got {meta['model']!r}")
    threshold = meta["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise CheckpointError(f"{path}: threshold {threshold!r} must be a number in [0, 1]")
    return meta


def check_overrides(saved: ModelConfig, overrides: dict[str, Any], source: str) -> None:
    """Raise CheckpointError when an explicitly set value contradicts the checkpoint."""
    for key in STRUCTURAL_KEYS:
        if key not in overrides or overrides[key] is None:
            continue
        want, have = overrides[key], getattr(saved, key)
        if (list(want) if key == "image_size" else want) != (list(have) if key == "image_size" else have):
            raise CheckpointError(
                f"model.{key} is {want!r} but the checkpoint {source} was trained with {key}={have!r}; "
                f"remove the model.{key} setting (the checkpoint's value is used) or load a checkpoint "
                f"trained with {key}={want!r}"
            )


def load_checkpoint(
    directory: str | Path, overrides: dict[str, Any] | None = None, device: str | torch.device = "cpu"
) -> Checkpoint:
    """Load a checkpoint strictly.

    `overrides`: model settings given by the user (node parameters, CLI). Structural ones
    (arch, hidden_dim, image_size, normalize, frame_stack) must agree with the checkpoint; runtime ones
    (precision, crop_boxes, resize_mode) replace the saved values.

    :raises CheckpointError: missing or corrupt files, unsupported version, contradicting
        overrides, weights that do not fit the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(
            f"checkpoint directory {directory} does not exist; train one with `reward-model train` "
            "or point model.checkpoint_path at a directory holding model.safetensors and config.json"
        )
    meta = _read_config(directory)
    try:
        saved = ModelConfig.from_dict(meta["model"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{directory / CONFIG}: invalid model section: {exc}") from exc
    overrides = dict(overrides or {})
    check_overrides(saved, overrides, str(directory))
    runtime = {k: v for k, v in overrides.items() if k not in STRUCTURAL_KEYS and v is not None}
    # how to run it is not the checkpoint's to say (it holds the training precision): every
    # loader (reward_node, evaluate, predict, the RL reward) scores alike, auto unless told
    runtime["precision"], runtime["optimize"] = resolve_inference(
        runtime.get("precision", "auto"),
        runtime.get("optimize", "auto"),
        device,
        int8_ready=(directory / quantize.FRAMES_FILE).is_file(),
    )
    cfg = ModelConfig.from_dict({**saved.to_dict(), **runtime, "pretrained": False, "pretrained_path": ""})

    weights = directory / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing: the checkpoint has a config but no weights")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"{weights} is corrupt or not a safetensors file ({exc}); re-export the checkpoint"
        ) from exc
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{weights} holds non-finite values (NaN or inf) in {len(bad)} tensor(s), e.g. {bad[:3]}: the "
            "training diverged or the file is damaged; every frame would score NaN. Use an earlier "
            "checkpoint (checkpoints/step_N/) or retrain"
        )
    model = ResNetRewardModel(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{weights} does not fit a {cfg.arch} with hidden_dim={cfg.hidden_dim} as config.json says: "
            f"{str(exc).splitlines()[0]} ... (config.json and weights come from different models?)"
        ) from exc
    if cfg.precision == "int8":
        model.int8_frames = _int8_frames(directory, cfg, torch.device(device))
    calibration = _check_calibration(meta.get("calibration"), directory / CONFIG)
    model.temperature = applied_temperature(calibration)
    model.to(device).eval()
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    decided = _check_decision(meta.get("validation_decision"), directory / CONFIG) or {}
    return Checkpoint(
        model,
        cfg,
        float(meta["threshold"]),
        f"{directory.name}@{digest}",
        meta.get("training", {}),
        directory,
        _check_recommended(meta.get("recommended"), directory / CONFIG),
        calibration,
        decided.get("debounce_frames", 1),
        decided or None,
    )


def store_int8_frames(directory: str | Path, frames: np.ndarray, source: str) -> dict[str, Any]:
    """Store int8 calibration inputs (uint8, the model's input shape) in a checkpoint, and where
    they came from in its config.json (`int8`, atomically). Returns that entry."""
    from safetensors.torch import save_file

    directory = Path(directory)
    meta = _read_config(directory)
    tmp = directory / (quantize.FRAMES_FILE + ".tmp")
    save_file({"frames": torch.from_numpy(np.ascontiguousarray(frames, np.uint8))}, str(tmp))
    tmp.replace(directory / quantize.FRAMES_FILE)
    meta["int8"] = {"frames": len(frames), "source": source, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    _write_config(directory, meta)
    return meta["int8"]


def _int8_frames(directory: Path, cfg: ModelConfig, device: torch.device) -> torch.Tensor:
    """The calibration inputs of a checkpoint loaded with precision int8, checked."""
    if device.type != "cpu":
        raise CheckpointError(f"model.precision=int8 runs on the CPU only, not {device}: use bf16 or auto")
    if not quantize.int8_available():
        raise CheckpointError(
            f"model.precision=int8: this torch has no {quantize.ENGINE!r} quantized engine; use bf16 or auto"
        )
    try:
        frames = quantize.read_frames(directory)
    except quantize.QuantizeError as exc:
        raise CheckpointError(str(exc)) from exc
    if frames is None:
        raise CheckpointError(
            f"model.precision=int8: {directory} has no {quantize.FRAMES_FILE} (calibration frames); "
            f"make it with `reward-model quantize {directory} --data DATASET` (its training dataset), "
            "or use precision auto"
        )
    chw = (cfg.in_channels, *cfg.image_size[1:])
    want = (cfg.views, *chw) if cfg.views > 1 else chw
    if tuple(frames.shape[1:]) != tuple(int(v) for v in want):
        raise CheckpointError(
            f"{directory / quantize.FRAMES_FILE} holds inputs of shape {list(frames.shape[1:])} but the "
            f"model takes {list(want)}: it belongs to another model; rerun "
            f"`reward-model quantize {directory} --data D`"
        )
    return frames


def untrained(
    cfg: ModelConfig, threshold: float, seed: int = 0, device: str | torch.device = "cpu"
) -> Checkpoint:
    """A freshly initialised model (for demos and benchmarks): its outputs mean nothing."""
    torch.manual_seed(seed)
    model = ResNetRewardModel(cfg).to(device).eval()
    return Checkpoint(model, cfg, threshold, f"untrained@{seed}")
