"""`reward-model evaluate` and `reward-model predict`.

evaluate: a checkpoint on a dataset split -> frame metrics (accuracy, precision, recall,
false-positive rate, AUROC, ECE), per-episode results with reward_node's debounce (failure
episodes judged successful; delay from the first true success frame to the first detected
one), a sweep over thresholds and debounce lengths with the recommended pair (set them as
reward_node's reward_threshold and debounce_frames); written as metrics.json
and PNG plots (loss curves from the TensorBoard logs, ROC and PR curves, reliability
diagram, confusion matrix, the worst false positives and false negatives).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from reward_model_ros.core.checkpoint import load_checkpoint
from reward_model_ros.core.inference import BatchScorer
from reward_model_ros.core.preprocess import Preprocessor
from reward_model_ros.core.reward import fuse
from reward_model_ros.data.dataset import read_manifest
from reward_model_ros.training import metrics as M
from reward_model_ros.training.data import load_rgb

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
DEBOUNCES = list(range(1, 9))  # swept when --debounce is not given (frames; 8 = 0.4 s at 20 Hz)


def score_rows(ckpt, rows: list[dict], root: Path, batch: int = 64) -> np.ndarray:
    """Fused (mean over cameras, as reward_node's default) success probability per sample."""
    pre = Preprocessor(ckpt.config)
    scorer = BatchScorer(ckpt.model, micro_batch_size=batch)
    out = np.empty(len(rows), np.float32)
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        inputs, owners = [], []
        for j, r in enumerate(chunk):
            for cam, rel in r["images"].items():
                inputs.append(pre(load_rgb(root / rel), cam))
                owners.append(j)
        probs = scorer(np.stack(inputs))
        per: dict[int, list[float]] = defaultdict(list)
        for j, p in zip(owners, probs, strict=True):
            per[j].append(float(p))
        for j in range(len(chunk)):
            out[start + j] = fuse(per[j], "mean")
    return out


def evaluate(
    checkpoint: Path,
    data: Path,
    split: str = "val",
    out: Path | None = None,
    debounce: int | None = None,
    logs: Path | None = None,
) -> dict[str, Any]:
    ckpt = load_checkpoint(checkpoint)
    rows = read_manifest(data)
    if split != "all":
        rows = [r for r in rows if r["split"] == split]
    if not rows:
        raise ValueError(f"{data}: no samples in split {split!r}")
    rows.sort(key=lambda r: (r["episode"], r["frame"]))
    probs = score_rows(ckpt, rows, Path(data))
    labels = np.array([r["label"] for r in rows], int)
    episodes: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
    idx_by_ep: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        idx_by_ep[r["episode"]].append(i)
    for ep, idx in idx_by_ep.items():
        episodes[ep] = (int(rows[idx[0]]["episode_label"]), labels[idx], probs[idx])
    sweep, (recommended, debounce) = M.threshold_sweep(
        labels, probs, episodes, DEBOUNCES if debounce is None else debounce
    )
    threshold = ckpt.threshold
    frames = M.binary_metrics(labels, probs, threshold)
    outcomes = M.episode_outcomes(episodes, recommended, debounce)
    delays = [o.delay_frames for o in outcomes if o.label == 1 and o.delay_frames is not None]
    out = Path(out) if out else Path(checkpoint) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "checkpoint": str(checkpoint),
        "model_id": ckpt.model_id,
        "data": str(data),
        "split": split,
        "samples": len(rows),
        "threshold": threshold,
        "frames": frames,
        "frames_at_recommended": M.binary_metrics(labels, probs, recommended),
        "calibration": M.calibration(labels, probs),
        "debounce": debounce,
        "recommended_threshold": recommended,
        "episodes": {
            "count": len(outcomes),
            "success_episodes": sum(o.label == 1 for o in outcomes),
            "failure_episodes": sum(o.label == 0 for o in outcomes),
            "false_positive_episodes": sum(o.label == 0 and o.judged_success for o in outcomes),
            "detected_success_episodes": sum(o.label == 1 and o.judged_success for o in outcomes),
            "mean_delay_frames": float(np.mean(delays)) if delays else float("nan"),
            "max_delay_frames": int(max(delays)) if delays else None,
            "false_positive_episode_names": [
                o.episode for o in outcomes if o.label == 0 and o.judged_success
            ],
            "per_episode": [
                {
                    "episode": o.episode,
                    "label": o.label,
                    "judged_success": o.judged_success,
                    "first_true_frame": o.first_true,
                    "first_detected_frame": o.first_detected,
                    "delay_frames": o.delay_frames,
                    "mean_probability": float(np.mean(episodes[o.episode][2])),
                }
                for o in outcomes
            ],
        },
        "sweep": sweep,
        "out": str(out),
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    plots(out, labels, probs, rows, Path(data), report, logs or _log_dir(ckpt))
    return report


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
    ax.set_title(f"reliability (ECE {cal['ece']:.4f})")
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


def predict_files(checkpoint: Path, paths: list[Path], threshold: float | None = None) -> list[dict]:
    ckpt = load_checkpoint(checkpoint)
    threshold = ckpt.threshold if threshold is None else threshold
    pre = Preprocessor(ckpt.config)
    scorer = BatchScorer(ckpt.model, micro_batch_size=32)
    rows, inputs, owners = [], [], []
    for f in image_files(paths):
        try:
            inputs.append(pre(load_rgb(f)))
            owners.append(len(rows))
            rows.append({"path": str(f)})
        except (FileNotFoundError, ValueError) as exc:
            rows.append({"path": str(f), "error": str(exc)})
    if inputs:
        probs = scorer(np.stack(inputs))
        for i, p in zip(owners, probs, strict=True):
            rows[i].update(probability=float(p), success=bool(p >= threshold), threshold=threshold)
    return rows
