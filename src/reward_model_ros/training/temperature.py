"""Temperature scaling: one scalar T > 0, fitted on held-out frames, that makes the success
probability sigmoid(logit / T) calibrated (Guo et al. 2017, "On Calibration of Modern
Neural Networks"). T > 1 softens an over-confident model; the ranking of frames, and so
AUROC and every decision at a mapped threshold, stays the same.

`reward-model train` fits T on the validation split with the best model and stores it in
best_model/config.json (`calibration`); `reward-model calibrate CHECKPOINT --data D` refits
it on other frames. T is applied only when it lowers the expected calibration error (ECE) on
the frames it was fitted on; otherwise T = 1 is stored, with the reason. The model applies it
(`ResNetRewardModel.predict`), so reward_node, evaluate, predict and the RL reward all see the
calibrated probability.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from reward_model_ros.core.checkpoint import Checkpoint, load_checkpoint, store_calibration
from reward_model_ros.core.scoring import FrameScorer
from reward_model_ros.data.dataset import read_manifest
from reward_model_ros.training import metrics as M
from reward_model_ros.training.data import PastFrames, is_training_data

T_MIN, T_MAX = 0.05, 20.0
"""the temperatures searched"""


class TemperatureError(ValueError):
    """Frames or a checkpoint a temperature cannot be fitted on; says what to change."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of sigmoid(logits / temperature), computed stably."""
    z = np.asarray(logits, np.float64) / temperature
    return float(np.mean(np.logaddexp(0.0, z) - np.asarray(labels, np.float64) * z))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 100) -> float:
    """The T in [T_MIN, T_MAX] with the lowest NLL: golden-section search on log T
    (deterministic; the NLL is convex in 1/T, so it has one minimum on the interval)."""
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(iterations):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    return float(math.exp((lo + hi) / 2.0))


def fit_calibration(logits: np.ndarray, labels: np.ndarray, fitted_on: str) -> dict[str, Any]:
    """Fit T on raw logits and their labels (0/1); the `calibration` entry of config.json:
    temperature (the one applied: the fitted T, or 1 when that would not lower the ECE),
    applied, fitted_temperature, ece/nll before (T = 1) and after (the fitted T), reason.

    :raises TemperatureError: no frames, or non-finite logits.
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, int)
    if len(logits) == 0 or len(logits) != len(labels):
        raise TemperatureError(f"{fitted_on}: no frames to fit a temperature on")
    if not np.isfinite(logits).all():
        raise TemperatureError(
            f"{fitted_on}: the model gives non-finite logits for {int((~np.isfinite(logits)).sum())} "
            "frame(s): the checkpoint is damaged or diverged; retrain it"
        )
    out: dict[str, Any] = {
        "fitted_on": fitted_on,
        "frames": len(logits),
        "fitted_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "ece_before": M.calibration(labels, sigmoid(logits))["ece"],
        "nll_before": nll(logits, labels),
    }
    if len(set(labels.tolist())) < 2:
        return {
            **out,
            "temperature": 1.0,
            "applied": False,
            "reason": "the frames hold one class only: fit on frames of successes and failures",
        }
    t = fit_temperature(logits, labels)
    out.update(
        fitted_temperature=t,
        ece_after=M.calibration(labels, sigmoid(logits / t))["ece"],
        nll_after=nll(logits, labels, t),
    )
    applied = out["ece_after"] < out["ece_before"]
    reason = (
        f"T = {t:.3f} lowers the ECE from {out['ece_before']:.4f} to {out['ece_after']:.4f}"
        if applied
        else f"T = {t:.3f} would not lower the ECE ({out['ece_before']:.4f} -> {out['ece_after']:.4f}): "
        "T = 1 kept"
    )
    return {**out, "temperature": t if applied else 1.0, "applied": applied, "reason": reason}


def describe(cal: dict[str, Any]) -> str:
    """One line for logs."""
    if not cal["applied"]:
        return f"calibration not applied ({cal['fitted_on']}): {cal['reason']}"
    return (
        f"calibration: temperature {cal['temperature']:.3f} ({cal['fitted_on']}): ECE "
        f"{cal['ece_before']:.4f} -> {cal['ece_after']:.4f}, NLL {cal['nll_before']:.4f} -> "
        f"{cal['nll_after']:.4f}"
    )


def split_logits(
    ckpt: Checkpoint, rows: list[dict], root: Path, batch: int = 64
) -> tuple[np.ndarray, np.ndarray, int]:
    """Raw logits and labels of every model input of `rows` (each camera frame, or each sample
    for a joint multi-view checkpoint), checked and preprocessed as reward_node does
    (FrameScorer); inputs that fail a validity check are left out (counted)."""
    scorer = FrameScorer(ckpt, micro_batch_size=batch)
    history = PastFrames(rows, root, scorer.frame_stack)
    logits, labels, invalid = [], [], 0
    for start in range(0, len(rows), batch):
        frames, cameras, grey, label, past = [], [], [], [], []
        for j, r in enumerate(rows[start : start + batch]):
            for cam, rel in r["images"].items():
                rgb, is_grey = history.frame(root / rel)
                frames.append(rgb)
                cameras.append(cam)
                grey.append(is_grey)
                label.append(int(r["label"]))
                past.append(history.of(start + j, cam))
        if not frames:
            continue
        scored = scorer.score(frames, cameras, grey, past=past)
        for i in range(0, len(frames), scorer.views):  # a joint set's frames share one logit
            if scored.valid[i]:
                logits.append(scored.logits[i])
                labels.append(label[i])
            else:
                invalid += 1
    return np.array(logits, np.float32), np.array(labels, int), invalid


def calibrate(checkpoint: Path, data: Path, split: str = "val") -> dict[str, Any]:
    """`reward-model calibrate`: refit the temperature of `checkpoint` on a dataset split and
    store it (with its thresholds mapped to keep their decisions). Returns the calibration entry
    plus `thresholds` (what store_calibration changed) and `invalid_frames`.

    :raises CheckpointError: a missing or broken checkpoint. :raises TemperatureError: the
        checkpoint's own training frames, an empty split, no valid frame.
    """
    checkpoint, data = Path(checkpoint), Path(data)
    ckpt = load_checkpoint(checkpoint)
    if is_training_data(ckpt, data, split):
        raise TemperatureError(
            f"--split {split} of {data} holds the checkpoint's own training frames: a temperature fitted "
            "on them makes an over-confident model look calibrated. Use --split val or a dataset of "
            "held-out episodes"
        )
    rows = read_manifest(data)
    if split != "all":
        rows = [r for r in rows if r["split"] == split]
    if not rows:
        splits = sorted({r["split"] for r in read_manifest(data)})
        raise TemperatureError(f"{data}: no samples in split {split!r} (it has {splits}); choose --split")
    logits, labels, invalid = split_logits(ckpt, rows, data)
    if not len(logits):
        raise TemperatureError(
            f"{data} split {split}: all {invalid} frames failed reward_node's validity checks (frame "
            "size, colour, exposure): they are not frames this checkpoint can score"
        )
    cal = fit_calibration(logits, labels, f"{data} {split}, {len(logits)} frames")
    if invalid:
        cal["invalid_frames_left_out"] = invalid
    changed = store_calibration(checkpoint, cal)
    return {**cal, "thresholds": changed, "invalid_frames": invalid}
