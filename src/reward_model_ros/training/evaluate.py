"""`reward-model evaluate` and `reward-model predict`.

evaluate: a checkpoint on a dataset split -> frame metrics (accuracy, precision, recall,
false-positive rate, AUROC, ECE), per-episode results with reward_node's debounce (failure
episodes judged successful; delay from the first true success frame to the first detected
one), a sweep over thresholds and debounce lengths with the recommended pair (set them as
reward_node's reward_threshold and debounce_frames, and stored in the checkpoint);
written as metrics.json, predictions.jsonl (the probability of every frame) and PNG plots
(loss curves from the TensorBoard logs, ROC and PR curves, reliability diagram, confusion
matrix, the worst false positives and false negatives).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from reward_model_ros.core.checkpoint import (
    DecisionSettings,
    decision_settings,
    load_checkpoint,
    store_recommendation,
    validation_failure_bounds,
)
from reward_model_ros.core.debug import debug_writer
from reward_model_ros.core.reward import DEFAULT_FUSION, Debouncer, decide, fuse
from reward_model_ros.core.scoring import FrameScorer
from reward_model_ros.data.dataset import read_manifest
from reward_model_ros.training import metrics as M
from reward_model_ros.training.data import PastFrames, is_training_data, load_frame, load_rgb
from reward_model_ros.training.hard_negatives import trained_episodes

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
DEBOUNCES = list(range(1, 9))  # swept when --debounce is not given (frames; 8 = 0.4 s at 20 Hz)
MIN_DEBOUNCE = 2
"""the shortest debounce `train` and `evaluate` choose. One frame above the threshold is what a
cube carried through the goal gives, and a success a simulator or a human confirms needs the
object to stay (PickCube also needs the robot still, which one frame cannot show). On the
PickCube demo's seed-1 checkpoint the debounce of 1 chosen on validation judged 2 of 24 held-out
failure episodes successful, each on one frame (p 0.84 and 0.89 between frames under 0.6); 2
frames judged none, at one frame more of delay here and on PushCube (docs/benchmarks.md).
`--debounce 1` or reward_node's `debounce_frames: 1` still set one frame"""
DECISION_DEBOUNCES = [d for d in DEBOUNCES if d >= MIN_DEBOUNCE]
"""the debounces the stored and recommended decisions are chosen from"""


def score_rows(
    ckpt, rows: list[dict], root: Path, fusion: str = DEFAULT_FUSION, batch: int = 64
) -> tuple[np.ndarray, list[str]]:
    """Fused success probability per sample, and why a sample is invalid ('' when valid):
    the same FrameScorer (validity checks, crop boxes by camera name, resize, model) and
    fusion as reward_node, which gives an invalid set probability 0 and no success."""
    scorer = FrameScorer(ckpt, micro_batch_size=batch)
    history = PastFrames(rows, root, scorer.frame_stack)
    out = np.empty(len(rows), np.float32)
    invalid = [""] * len(rows)
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        frames, cameras, grey, owners, past = [], [], [], [], []
        for j, r in enumerate(chunk):
            for cam, rel in r["images"].items():
                rgb, is_grey = history.frame(root / rel)
                frames.append(rgb)
                grey.append(is_grey)
                cameras.append(cam)
                owners.append(j)
                past.append(history.of(start + j, cam))
        scored = scorer.score(frames, cameras, grey, past=past)
        per: dict[int, list[float]] = defaultdict(list)
        for j, prob, why in zip(owners, scored.probabilities, scored.reasons, strict=True):
            per[j].append(prob)
            if why and not invalid[start + j]:
                invalid[start + j] = why
        for j in range(len(chunk)):
            out[start + j] = 0.0 if invalid[start + j] else fuse(per[j], fusion)
    return out, invalid


def evaluate(
    checkpoint: Path,
    data: Path,
    split: str = "val",
    out: Path | None = None,
    debounce: int | None = None,
    logs: Path | None = None,
    fusion: str = DEFAULT_FUSION,
    store: bool = True,
    allow_trained_episodes: bool = False,
    model_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics and plots of `checkpoint` on a dataset split (`model_overrides`: runtime model
    settings such as precision or optimize, as reward_node's parameters give them, to measure
    a faster setting's accuracy); with `store`, the recommended
    threshold, debounce and fusion are written into the checkpoint (config.json
    `recommended`), unless the frames are the checkpoint's own training data.

    :raises ValueError: the split holds episodes whose frames the checkpoint was trained on as
        hard negatives (`training.mined_from`), unless `allow_trained_episodes` (then the
        report names them and nothing is stored).
    """
    ckpt = load_checkpoint(checkpoint, model_overrides)
    rows = read_manifest(data)
    if split != "all":
        rows = [r for r in rows if r["split"] == split]
    if not rows:
        raise ValueError(f"{data}: no samples in split {split!r}")
    seen = trained_episodes(ckpt.training, Path(data), {r["episode"] for r in rows})
    if seen and not allow_trained_episodes:
        raise ValueError(
            f"{checkpoint} was trained on frames mined from {len(seen)} episode(s) of {data} split {split} "
            f"(e.g. {seen[:3]}; its config.json training.mined_from): figures there are not held-out "
            "figures. Evaluate on a held-out set nothing was mined from, or pass --allow-trained-episodes "
            "to look anyway (nothing is stored then)"
        )
    rows.sort(key=lambda r: (r["episode"], r["frame"]))
    probs, invalid = score_rows(ckpt, rows, Path(data), fusion)
    labels = np.array([r["label"] for r in rows], int)
    episodes = M.episodes_of(rows, labels, probs)
    kinds = {r["episode"]: (str(r.get("mode", "")), bool(r.get("transient", False))) for r in rows}
    # the recommendation must also judge none of train's validation failure episodes successful:
    # a held-out set without, say, a cube sliding through the goal would otherwise recommend a
    # debounce that validation showed to be fooled (bench/transits.py, docs/benchmarks.md)
    bounds = validation_failure_bounds(ckpt)
    sweep, (recommended, rec_debounce) = M.threshold_sweep(
        labels, probs, episodes, DECISION_DEBOUNCES if debounce is None else debounce, safe_above=bounds
    )
    # the held-out figures: the settings reward_node takes from the checkpoint as it came (chosen
    # on other frames: its validation episodes, or an earlier evaluation); the sweep's pair is
    # chosen on these very frames, so its figures are an optimistic bound, not a measurement
    served = decision_settings(ckpt, -1.0, -1 if debounce is None else debounce, fusion)
    tuned_here = _chosen_on(ckpt.recommended, Path(data), split)
    threshold = served.reward_threshold
    frames = M.binary_metrics(labels, probs, threshold)
    out = Path(out) if out else Path(checkpoint) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "checkpoint": str(checkpoint),
        "model_id": ckpt.model_id,
        "inference": {"precision": ckpt.config.precision, "optimize": ckpt.config.optimize},
        "data": str(data),
        "split": split,
        "samples": len(rows),
        "threshold": threshold,
        "decision": {
            "reward_threshold": threshold,
            "debounce_frames": served.debounce_frames,
            "source": served.source,
            "chosen_on_these_frames": tuned_here,
        },
        "frames": frames,
        "frame_errors": M.near_change_errors(rows, labels, probs, threshold),
        "frames_at_recommended": M.binary_metrics(labels, probs, recommended),
        # on the probabilities reward_node publishes: sigmoid(logit / temperature)
        "calibration": {**M.calibration(labels, probs), "temperature": ckpt.temperature},
        "debounce": rec_debounce,
        "recommended_threshold": recommended,
        "recommendation_also_safe_on": (
            f"train's {ckpt.validation_decision.get('episodes', '?')} validation episodes"
            if bounds is not None
            else "nothing else (the checkpoint stores no validation failure bounds: retrain to add them)"
        ),
        "episodes": episode_report(episodes, threshold, served.debounce_frames, True, kinds),
        "episodes_at_recommended": episode_report(episodes, recommended, rec_debounce, kinds=kinds),
        "sweep": sweep,
        "out": str(out),
    }
    report["camera_fusion"] = fusion
    report["multi_view"] = (
        ckpt.config.multi_view
    )  # joint: the model fused the views, camera_fusion had one value
    report["invalid_frames"] = sum(bool(w) for w in invalid)
    report["invalid_reasons"] = sorted({w.split(":")[0].split(" (")[0] for w in invalid if w})
    with (out / "predictions.jsonl").open("w") as f:  # per frame: what reward_node would publish
        for r, prob, why in zip(rows, probs, invalid, strict=True):
            keys = ("episode", "frame", "stamp_ns", "label", "episode_label", "mode", "seed", "images")
            row = {**{k: r[k] for k in keys if k in r}, "probability": float(prob), "valid": not why}
            f.write(json.dumps({**row, "invalid_reason": why} if why else row) + "\n")
    report["trained_episodes"] = seen
    if seen:
        log.warning("%s: %d evaluated episode(s) were trained on as hard negatives", checkpoint, len(seen))
        report["stored"] = f"not stored: {len(seen)} evaluated episode(s) were trained on as hard negatives"
    else:
        report["stored"] = _store(ckpt, Path(checkpoint), Path(data), split, report) if store else "not asked"
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    plots(out, labels, probs, rows, Path(data), report, logs or _log_dir(ckpt))
    return report


def episode_report(
    episodes: dict[str, tuple[int, np.ndarray, np.ndarray]],
    threshold: float,
    debounce: int,
    per_episode: bool = False,
    kinds: dict[str, tuple[str, bool]] | None = None,
) -> dict[str, Any]:
    """Episode figures at one (threshold, debounce): failure episodes judged successful,
    successes detected and their delay from the first true success frame; with `kinds`
    (episode -> (scripted mode, transient)), the failure episodes judged successful per mode,
    and among the transient ones (ground-truth success seen on the way: passes)."""
    outcomes = M.episode_outcomes(episodes, threshold, debounce)
    delays = [o.delay_frames for o in outcomes if o.label == 1 and o.delay_frames is not None]
    out = {
        "threshold": threshold,
        "debounce_frames": debounce,
        "count": len(outcomes),
        "success_episodes": sum(o.label == 1 for o in outcomes),
        "failure_episodes": sum(o.label == 0 for o in outcomes),
        "false_positive_episodes": sum(o.label == 0 and o.judged_success for o in outcomes),
        "detected_success_episodes": sum(o.label == 1 and o.judged_success for o in outcomes),
        "mean_delay_frames": float(np.mean(delays)) if delays else float("nan"),
        "max_delay_frames": int(max(delays)) if delays else None,
        "false_positive_episode_names": [o.episode for o in outcomes if o.label == 0 and o.judged_success],
    }
    if kinds is not None:
        failures = [o for o in outcomes if o.label == 0]
        by_mode: dict[str, dict[str, int]] = {}
        for o in failures:
            m = by_mode.setdefault(kinds[o.episode][0] or "unknown", {"episodes": 0, "judged_successful": 0})
            m["episodes"] += 1
            m["judged_successful"] += int(o.judged_success)
        out["failure_modes"] = dict(sorted(by_mode.items()))
        passes = [o for o in failures if kinds[o.episode][1]]
        out["transient_failure_episodes"] = len(passes)
        out["transient_judged_successful"] = sum(o.judged_success for o in passes)
    if per_episode:
        out["per_episode"] = [
            {
                "episode": o.episode,
                "label": o.label,
                "judged_success": o.judged_success,
                "first_true_frame": o.first_true,
                "first_detected_frame": o.first_detected,
                "delay_frames": o.delay_frames,
                "mean_probability": float(np.mean(episodes[o.episode][2])),
                **({"mode": kinds[o.episode][0], "transient": kinds[o.episode][1]} if kinds else {}),
            }
            for o in outcomes
        ]
    return out


def _chosen_on(recommended: dict | None, data: Path, split: str) -> bool:
    """Whether a stored recommendation was chosen on this dataset split."""
    where = (recommended or {}).get("chosen_on") or {}
    return where.get("data") == str(Path(data).resolve()) and where.get("split") == split


def _store(ckpt, checkpoint: Path, data: Path, split: str, report: dict) -> str:
    """Write the recommendation into the checkpoint; returns what was done, for the report."""
    if is_training_data(ckpt, data, split):
        return (
            f"not stored: split {split!r} of {data} holds the checkpoint's training frames; evaluate on "
            "split val or on held-out episodes"
        )
    e = report["episodes_at_recommended"]
    store_recommendation(
        checkpoint,
        report["recommended_threshold"],
        report["debounce"],
        report["camera_fusion"],
        f"reward-model evaluate on {data} (split {split}, {e['count']} episodes) at "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}",
        {
            "false_positive_episodes": e["false_positive_episodes"],
            "failure_episodes": e["failure_episodes"],
            "detected_success_episodes": e["detected_success_episodes"],
            "success_episodes": e["success_episodes"],
            "mean_delay_frames": e["mean_delay_frames"],
            "accuracy": report["frames_at_recommended"]["accuracy"],
            "auroc": report["frames"]["auroc"],
            "also_safe_on": report["recommendation_also_safe_on"],
        },
        chosen_on={"data": str(Path(data).resolve()), "split": split},
    )
    return f"stored in {checkpoint / 'config.json'}"


def _log_dir(ckpt) -> Path | None:
    """The run's TensorBoard logs, from train_config.yaml beside the checkpoint."""
    if ckpt.path is None:
        return None
    cfg = ckpt.path.parent / "train_config.yaml"
    if not cfg.is_file():
        return None
    import yaml

    try:
        return Path(yaml.safe_load(cfg.read_text())["runner"]["logger"]["log_path"])
    except (KeyError, TypeError, yaml.YAMLError):
        return None


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags().get("scalars", [])}


def plots(out: Path, labels, probs, rows, root: Path, report: dict, logs: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # loss curves
    if logs is not None and Path(logs).is_dir():
        s = _scalars(Path(logs))
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for tag in ("train/loss", "val/loss"):
            if tag in s:
                ax[0].plot(*zip(*s[tag], strict=True), label=tag)
        for tag in ("val/accuracy", "val/auroc"):
            if tag in s:
                ax[1].plot(*zip(*s[tag], strict=True), label=tag)
        ax[0].set_xlabel("step"), ax[0].set_ylabel("BCE loss"), ax[0].legend()
        ax[1].set_xlabel("step"), ax[1].legend()
        fig.tight_layout()
        fig.savefig(out / "loss_curves.png", dpi=100)
        plt.close(fig)
    # ROC and PR
    fpr, tpr, _ = M.roc_curve(labels, probs)
    rec, prec = M.pr_curve(labels, probs)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(fpr, tpr)
    ax[0].plot([0, 1], [0, 1], "k:")
    ax[0].set_title(f"ROC (AUROC {report['frames']['auroc']:.4f})")
    ax[0].set_xlabel("false-positive rate"), ax[0].set_ylabel("true-positive rate")
    ax[1].plot(rec, prec)
    ax[1].set_title(f"precision-recall (AP {report['frames']['average_precision']:.4f})")
    ax[1].set_xlabel("recall"), ax[1].set_ylabel("precision")
    fig.tight_layout()
    fig.savefig(out / "roc_pr.png", dpi=100)
    plt.close(fig)
    # reliability
    cal = report["calibration"]
    centers = (np.array(cal["edges"][:-1]) + np.array(cal["edges"][1:])) / 2
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.bar(centers, np.nan_to_num(cal["accuracy"]), width=0.09, alpha=0.7, label="fraction successful")
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    ax.set_xlabel("predicted probability"), ax.set_ylabel("observed frequency")
    ax.set_title(f"reliability (ECE {cal['ece']:.4f}, temperature {cal.get('temperature', 1.0):.2f})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=100)
    plt.close(fig)
    # confusion matrix at the checkpoint's threshold
    f = report["frames"]
    cm = np.array([[f["tn"], f["fp"]], [f["fn"], f["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, int(v), ha="center", va="center")
    ax.set_xticks([0, 1], ["failure", "success"]), ax.set_yticks([0, 1], ["failure", "success"])
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    ax.set_title(f"threshold {report['threshold']:.2f}")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=100)
    plt.close(fig)
    # worst errors
    fp = [i for i in np.argsort(-probs) if labels[i] == 0][:8]
    fn = [i for i in np.argsort(probs) if labels[i] == 1][:8]
    fig, axes = plt.subplots(2, 8, figsize=(16, 4.6))
    for row, (idx, name) in enumerate(((fp, "false positive"), (fn, "false negative"))):
        for k in range(8):
            a = axes[row, k]
            a.axis("off")
            if k < len(idx):
                r = rows[idx[k]]
                a.imshow(load_rgb(root / next(iter(r["images"].values()))))
                a.set_title(f"{name}\np={probs[idx[k]]:.3f} {r['episode'][-10:]}#{r['frame']}", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "worst_errors.png", dpi=100)
    plt.close(fig)


def image_files(paths: list[Path]) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return files


def predict_files(
    checkpoint: Path,
    paths: list[Path],
    threshold: float | None = None,
    camera: str | None = None,
    sequence: bool = False,
    debounce: int | None = None,
    debug_dir: str = "",
) -> tuple[list[dict], DecisionSettings]:
    """Score image files as reward_node scores frames of `camera` (default: the checkpoint's
    first camera). Threshold and debounce come from `decision_settings` (explicit, else the
    checkpoint's recommendation); with `sequence`, the files in name order are one episode and
    `success` is the debounced decision, else each file is decided alone. Model inputs go to
    `debug_dir` (default $DEBUG_IMAGE_SAVE_DIR) as reward_node writes them."""
    ckpt = load_checkpoint(checkpoint)
    settings = decision_settings(
        ckpt, -1.0 if threshold is None else threshold, -1 if debounce is None else debounce
    )
    cameras = list(ckpt.config.camera_names)
    if ckpt.config.frame_stack > 1 and not sequence:
        raise ValueError(
            f"{checkpoint} judges each frame with the {ckpt.config.frame_stack - 1} before it "
            "(model.frame_stack): score the files as one episode with --sequence (in name order)"
        )
    if ckpt.config.views > 1:
        raise ValueError(
            f"{checkpoint} judges the frames of its cameras {cameras} together (model.multi_view=joint): "
            "`predict` scores single image files. Score a dataset with `reward-model evaluate`, or serve "
            "all cameras with reward_node"
        )
    if camera is not None and cameras and camera not in cameras:
        raise ValueError(f"--camera {camera!r}: the checkpoint's cameras are {cameras}")
    camera = camera or (cameras[0] if cameras else None)
    scorer = FrameScorer(ckpt, micro_batch_size=32)
    files = image_files(paths)
    if not files:
        raise FileNotFoundError(
            f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) at or under {', '.join(map(str, paths))}"
        )
    rows, frames = [], []
    for f in files:
        try:
            rgb, grey = load_frame(f)
            frames.append((len(rows), rgb, grey))
            rows.append({"path": str(f)})
        except (FileNotFoundError, ValueError) as exc:
            rows.append({"path": str(f), "error": str(exc)})
    for start in range(0, len(frames), 32):
        chunk = frames[start : start + 32]
        past = [
            [frames[max(0, start + j - b)][1] for b in range(1, scorer.frame_stack)]
            for j in range(len(chunk))
        ]
        scored = scorer.score([c[1] for c in chunk], [camera] * len(chunk), [c[2] for c in chunk], past=past)
        inputs = iter(scored.inputs)
        for (i, _, _), prob, why in zip(chunk, scored.probabilities, scored.reasons, strict=True):
            rows[i].update(probability=prob, threshold=settings.reward_threshold, valid=not why)
            if why:
                rows[i]["invalid_reason"] = why
            else:
                rows[i]["_input"] = next(inputs)
    debouncer = Debouncer(settings.debounce_frames if sequence else 1)
    writer = debug_writer(debug_dir, max_files=len(rows))
    for r in rows:
        if "probability" in r:
            r["success"] = debouncer.update(
                r["valid"] and decide(r["probability"], settings.reward_threshold)
            )
            chw = r.pop("_input", None)
            if writer is not None and chw is not None:
                writer.write(chw, r["probability"], r["success"])
    return rows, settings
