"""Generalisation protocols: leave-one-failure-mode-out (`reward-model lomo`).

Held-out seeds measure the classifier on kinds of failure it was trained on; a policy finds
new ones. For each failure mode m of the training data's failure episodes, a model is trained
with every episode of m left out of training and validation (`data.exclude_modes`), its
decision threshold and debounce chosen on its own validation split (which holds no m either),
and it is then scored on the held-out dataset's episodes of m plus its success episodes. The
reference model trains on every mode and is scored on the same episodes, and on the whole
held-out set. Per row: failure episodes, false-positive episodes (the bar: 0), success
episodes detected and detected within `delay_bar` frames of the first true success frame,
the delays, frame accuracy at the decision threshold, AUROC and ECE.

Outputs under `out`: one training run per model (`all_modes/`, `without_<mode>/`, each with
`best_model/`, `episodes.json` and `heldout_predictions.jsonl`) and `lomo.json`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from reward_model_ros.core.checkpoint import decision_settings, load_checkpoint
from reward_model_ros.core.overrides import to_plain
from reward_model_ros.data.dataset import read_manifest
from reward_model_ros.training import metrics as M
from reward_model_ros.training.data import exclude_modes
from reward_model_ros.training.evaluate import score_rows

_log = logging.getLogger(__name__)
REFERENCE = "all_modes"
"""output directory (and `model` column) of the model trained on every mode"""


class ProtocolError(ValueError):
    """Data or settings the protocol cannot run on; says what to change."""


def failure_modes(rows: list[dict]) -> list[str]:
    """The modes of the failure episodes (episode_label 0), sorted; episodes without a mode are
    not counted (they stay in every model's training data)."""
    return sorted(
        {str(r.get("mode", "")) for r in rows if int(r.get("episode_label", r["label"])) == 0} - {""}
    )


def _rows(data_dirs: list[Path]) -> list[dict]:
    """The samples of the datasets, image paths made absolute (as the trainer reads them)."""
    rows = []
    for k, d in enumerate(data_dirs):
        for r in read_manifest(d):
            r["images"] = {cam: str((d / rel).resolve()) for cam, rel in r["images"].items()}
            if k:
                r["episode"] = f"{d.name}:{r['episode']}"
            rows.append(r)
    return rows


def figures(
    rows: list[dict], probs: np.ndarray, threshold: float, debounce: int, delay_bar: int = 5
) -> dict[str, Any]:
    """The protocol's figures of one model on `rows` (frame order within episodes)."""
    labels = np.array([r["label"] for r in rows], int)
    outcomes = M.episode_outcomes(M.episodes_of(rows, labels, probs), threshold, debounce)
    delays = [o.delay_frames for o in outcomes if o.label == 1 and o.delay_frames is not None]
    fp = [o.episode for o in outcomes if o.label == 0 and o.judged_success]
    successes = sum(o.label == 1 for o in outcomes)
    within = sum(abs(d) <= delay_bar for d in delays)
    failure_frames = np.array([int(r["episode_label"]) == 0 for r in rows])
    return {
        "frames": len(rows),
        "failure_episodes": sum(o.label == 0 for o in outcomes),
        "false_positive_episodes": len(fp),
        "false_positive_episode_names": fp,
        "success_episodes": successes,
        "detected_success_episodes": len(delays),
        "detected_within_bar": within,
        "min_delay_frames": int(min(delays)) if delays else None,
        "max_delay_frames": int(max(delays)) if delays else None,
        "failure_frames_judged_success": float(np.mean(probs[failure_frames] >= threshold))
        if failure_frames.any()
        else float("nan"),
        "frame_accuracy": M.binary_metrics(labels, probs, threshold)["accuracy"],
        "auroc": M.auroc(labels, probs),
        "ece": M.calibration(labels, probs)["ece"],
        "passes": not fp and within == successes,
    }


def _of_mode(rows: list[dict], mode: str) -> list[int]:
    """Indices of the success episodes' frames and of the failure episodes of `mode`."""
    return [i for i, r in enumerate(rows) if int(r["episode_label"]) == 1 or r.get("mode") == mode]


def _dir_name(mode: str) -> str:
    return "without_" + re.sub(r"[^A-Za-z0-9_.-]", "_", mode)


def _write_predictions(path: Path, rows: list[dict], probs: np.ndarray, invalid: list[str]) -> None:
    keys = ("episode", "frame", "stamp_ns", "label", "episode_label", "mode", "seed", "images")
    with path.open("w") as f:
        for r, p, why in zip(rows, probs, invalid, strict=True):
            row = {**{k: r[k] for k in keys if k in r}, "probability": float(p), "valid": not why}
            f.write(json.dumps(row) + "\n")


def leave_one_mode_out(
    cfg: Any,
    train_data: list[Path],
    heldout: Path,
    out: Path,
    split: str = "all",
    modes: list[str] | None = None,
    delay_bar: int = 5,
    log: Callable[[str], None] = _log.info,
) -> dict[str, Any]:
    """Run the protocol (see the module docstring) with the training settings `cfg` (a
    TrainConfig, with `train`'s overrides applied; runner.output_dir and the log path are
    set per model under `out`); returns the report, also written to `out/lomo.json`.

    :raises ProtocolError: no failure modes, an unknown mode asked for, no held-out success
        episodes, or a held-out split the models train on.
    """
    from reward_model_ros.training.train import train

    train_data = [Path(d) for d in train_data]
    heldout, out = Path(heldout), Path(out)
    base = cfg if OmegaConf.is_config(cfg) else OmegaConf.structured(cfg)
    if base.runner.resume:
        raise ProtocolError("runner.resume is set: the protocol trains every model from scratch; unset it")
    already = list(base.data.exclude_modes)
    trained = _rows(train_data)
    try:
        kept = exclude_modes(trained, already, ", ".join(map(str, train_data)))
    except ValueError as exc:
        raise ProtocolError(str(exc)) from exc
    present = failure_modes(kept)
    if not present:
        raise ProtocolError(
            f"{', '.join(map(str, train_data))}: no failure episode has a `mode` in its manifest; the "
            "protocol needs datasets whose episodes record their failure mode (scripted ManiSkill ones do)"
        )
    if modes:
        unknown = [m for m in modes if m not in present]
        if unknown:
            raise ProtocolError(
                f"--modes {unknown}: the training data's failure modes are {', '.join(present)}"
            )
        present = [m for m in present if m in modes]
    if split in ("train", "all") and heldout.resolve() in {d.resolve() for d in train_data}:
        raise ProtocolError(
            f"--data {heldout} is also training data and split {split!r} holds training frames: evaluate "
            "on a separate held-out dataset (or --split val)"
        )
    held = [r for r in read_manifest(heldout) if split == "all" or r["split"] == split]
    held.sort(key=lambda r: (r["episode"], r["frame"]))
    if not any(int(r["episode_label"]) == 1 for r in held):
        raise ProtocolError(f"{heldout} split {split}: no success episodes to measure detection on")
    held_modes = failure_modes(held)
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, dict] = {}
    rows_out: list[dict] = []
    for mode in [None, *present]:
        name = REFERENCE if mode is None else _dir_name(mode)
        excluded = already if mode is None else [*already, mode]
        run = out / name
        log(f"lomo: training {name} (data.exclude_modes={excluded})")
        run_cfg = OmegaConf.merge(
            base,
            {
                "data": {"exclude_modes": excluded},
                "runner": {"output_dir": str(run), "logger": {"log_path": str(run / "logs")}},
            },
        )
        train(run_cfg, train_data if len(train_data) > 1 else train_data[0], log=log)
        ckpt = load_checkpoint(run / "best_model")
        decided = decision_settings(ckpt)  # train chose them on its validation split (no m there)
        threshold, debounce = decided.reward_threshold, decided.debounce_frames
        subset = held if mode is None else [held[i] for i in _of_mode(held, mode)]
        probs, invalid = score_rows(ckpt, subset, heldout)
        _write_predictions(run / "heldout_predictions.jsonl", subset, probs, invalid)
        models[name] = {
            "checkpoint": str(run / "best_model"),
            "exclude_modes": excluded,
            "threshold": threshold,
            "debounce": debounce,
            "decision": decided.source,
        }
        if mode is None:
            ref_probs = probs  # the reference model scored every held-out frame
            rows_out.append(
                {"mode": "all", "model": name, **figures(held, probs, threshold, debounce, delay_bar)}
            )
            continue
        if mode not in held_modes:
            log(f"lomo: {heldout} split {split} has no episode of mode {mode!r}: its row has successes only")
        rows_out.append(
            {"mode": mode, "model": name, **figures(subset, probs, threshold, debounce, delay_bar)}
        )
        ref = models[REFERENCE]
        keep = _of_mode(held, mode)
        rows_out.append(
            {
                "mode": mode,
                "model": REFERENCE,
                **figures(subset, ref_probs[keep], ref["threshold"], ref["debounce"], delay_bar),
            }
        )
    report = {
        "protocol": "leave one failure mode out",
        "train_data": [str(d.resolve()) for d in train_data],
        "heldout": str(heldout.resolve()),
        "split": split,
        "modes": present,
        "heldout_only_modes": sorted(set(held_modes) - set(failure_modes(trained))),
        "delay_bar": delay_bar,
        "models": models,
        "rows": rows_out,
        "config": to_plain(base),
    }
    (out / "lomo.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    return report


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None or v != v else format(v, fmt)


def format_table(report: dict[str, Any]) -> str:
    """The rows of a report as a plain-text table."""
    head = (
        f"{'mode':<18} {'model':<24} {'fail eps':>8} {'FP eps':>6} {'success det.':>12} "
        f"{'<=' + str(report['delay_bar']) + ' fr':>6} {'max delay':>9} {'accuracy':>8} {'AUROC':>6} "
        f"{'ECE':>6}  bars"
    )
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        lines.append(
            f"{r['mode']:<18} {r['model']:<24} {r['failure_episodes']:>8} {r['false_positive_episodes']:>6} "
            f"{str(r['detected_success_episodes']) + '/' + str(r['success_episodes']):>12} "
            f"{r['detected_within_bar']:>6} {_num(r['max_delay_frames'], 'd'):>9} "
            f"{_num(r['frame_accuracy'], '.4f'):>8} {_num(r['auroc'], '.4f'):>6} {_num(r['ece'], '.4f'):>6}  "
            f"{'pass' if r['passes'] else 'FAIL'}"
        )
    return "\n".join(lines)
