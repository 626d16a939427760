"""Classification metrics on success probabilities, frame and episode level (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reward_model_ros.core.reward import first_success


def confusion(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, int]:
    pred = probs >= threshold
    y = labels.astype(bool)
    return {
        "tp": int(np.sum(pred & y)),
        "fp": int(np.sum(pred & ~y)),
        "tn": int(np.sum(~pred & ~y)),
        "fn": int(np.sum(~pred & y)),
    }


def _div(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    """accuracy, balanced accuracy, precision, recall, false-positive rate, F1 at `threshold`;
    AUROC and average precision (threshold-free); log loss."""
    labels = np.asarray(labels, int)
    probs = np.asarray(probs, float)
    c = confusion(labels, probs, threshold)
    recall = _div(c["tp"], c["tp"] + c["fn"])
    specificity = _div(c["tn"], c["tn"] + c["fp"])
    precision = _div(c["tp"], c["tp"] + c["fp"])
    eps = 1e-7
    p = np.clip(probs, eps, 1 - eps)
    return {
        "accuracy": _div(c["tp"] + c["tn"], len(labels)),
        "balanced_accuracy": float(np.nanmean([recall, specificity])),
        "precision": precision,
        "recall": recall,
        "false_positive_rate": _div(c["fp"], c["fp"] + c["tn"]),
        "f1": _div(2 * precision * recall, precision + recall) if precision == precision else float("nan"),
        "auroc": auroc(labels, probs),
        "average_precision": average_precision(labels, probs),
        "log_loss": float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
        if len(p)
        else float("nan"),
        **{k: float(v) for k, v in c.items()},
    }


def auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); nan with one class."""
    labels = np.asarray(labels, bool)
    pos, neg = np.sum(labels), np.sum(~labels)
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(probs, kind="mergesort")
    ranks = np.empty(len(probs))
    sorted_p = np.asarray(probs)[order]
    # average ranks for ties
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((np.sum(ranks[labels]) - pos * (pos + 1) / 2) / (pos * neg))


def roc_curve(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates, thresholds), thresholds descending."""
    labels = np.asarray(labels, bool)
    thresholds = np.unique(probs)[::-1]
    thresholds = np.concatenate([[np.inf], thresholds])
    pos, neg = max(1, labels.sum()), max(1, (~labels).sum())
    tpr = np.array([np.sum((probs >= t) & labels) / pos for t in thresholds])
    fpr = np.array([np.sum((probs >= t) & ~labels) / neg for t in thresholds])
    return fpr, tpr, thresholds


def pr_curve(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) over descending thresholds."""
    labels = np.asarray(labels, bool)
    order = np.argsort(-np.asarray(probs), kind="mergesort")
    tp = np.cumsum(labels[order])
    fp = np.cumsum(~labels[order])
    recall = tp / max(1, labels.sum())
    precision = tp / np.maximum(1, tp + fp)
    return np.concatenate([[0.0], recall]), np.concatenate([[1.0], precision])


def average_precision(labels: np.ndarray, probs: np.ndarray) -> float:
    labels = np.asarray(labels, bool)
    if labels.sum() == 0:
        return float("nan")
    recall, precision = pr_curve(labels, probs)
    return float(np.sum(np.diff(recall) * precision[1:]))


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict:
    """Expected calibration error and the reliability diagram's bins (equal width)."""
    labels = np.asarray(labels, float)
    probs = np.asarray(probs, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    conf, acc, count = [], [], []
    ece = 0.0
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        count.append(n)
        if n:
            conf.append(float(probs[m].mean()))
            acc.append(float(labels[m].mean()))
            ece += n / len(probs) * abs(conf[-1] - acc[-1])
        else:
            conf.append(float("nan"))
            acc.append(float("nan"))
    return {"ece": float(ece), "edges": edges.tolist(), "confidence": conf, "accuracy": acc, "count": count}


@dataclass
class EpisodeOutcome:
    episode: str
    label: int
    """the episode's ground truth: 1 success, 0 failure"""
    judged_success: bool
    """the debounced decision was success at some frame"""
    first_true: int | None
    """index of the first ground-truth success frame"""
    first_detected: int | None
    """index of the first frame the debounced decision said success"""

    @property
    def delay_frames(self) -> int | None:
        if self.first_true is None or self.first_detected is None:
            return None
        return self.first_detected - self.first_true


def episodes_of(
    rows: list[dict], labels: np.ndarray, probs: np.ndarray
) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
    """Per episode of dataset `rows` (sorted by episode, then frame): (episode label, frame
    labels, frame probabilities), as episode_outcomes takes them."""
    labels, probs = np.asarray(labels), np.asarray(probs)
    index = _episode_index(rows)
    return {ep: (int(rows[ix[0]]["episode_label"]), labels[ix], probs[ix]) for ep, ix in index.items()}


def frames_from_label_change(rows: list[dict], labels: np.ndarray) -> np.ndarray:
    """Per frame of `rows` (sorted by episode, then frame): how many frames it lies from the
    nearest change of ground-truth label in its episode (0: the last frame before a change or
    the first after it; a large number in an episode whose label never changes)."""
    labels = np.asarray(labels)
    out = np.full(len(rows), 1 << 30, np.int64)
    for ix in _episode_index(rows).values():
        ix = np.asarray(ix)
        lab = labels[ix]
        changes = np.flatnonzero(lab[1:] != lab[:-1])  # between positions c and c + 1
        if len(changes):
            pos = np.arange(len(ix))[:, None]
            out[ix] = np.minimum(np.abs(pos - changes[None, :]), np.abs(pos - changes[None, :] - 1)).min(1)
    return out


def near_change_errors(rows: list[dict], labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    """Where the frame errors at `threshold` lie: at a label change (the frames on either side
    of the ground-truth success boundary, where one frame moves the object by less than a pixel
    of the model's input), within 2 frames of one, or further; and the accuracy away from them."""
    labels = np.asarray(labels)
    wrong = (np.asarray(probs) >= threshold).astype(int) != labels
    dist = frames_from_label_change(rows, labels)
    away = dist > 2
    return {
        "errors": int(wrong.sum()),
        "at_a_label_change": int((wrong & (dist == 0)).sum()),
        "within_2_frames_of_one": int((wrong & (dist <= 2)).sum()),
        "frames_away_from_changes": int(away.sum()),
        "accuracy_away_from_changes": _div(int((~wrong & away).sum()), int(away.sum())),
    }


def _episode_index(rows: list[dict]) -> dict[str, list[int]]:
    idx: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        idx.setdefault(r["episode"], []).append(i)
    return idx


def episode_outcomes(
    episodes: dict[str, tuple[int, np.ndarray, np.ndarray]], threshold: float, debounce: int
) -> list[EpisodeOutcome]:
    """episodes: key -> (episode label, frame labels, frame probabilities) in frame order.
    The decision per frame is debounced as reward_node does: success once `debounce`
    consecutive frames reach the threshold."""
    out = []
    for key, (label, frame_labels, probs) in episodes.items():
        detected = first_success(probs, threshold, debounce)
        true = np.flatnonzero(np.asarray(frame_labels) == 1)
        out.append(
            EpisodeOutcome(
                key, int(label), detected is not None, int(true[0]) if len(true) else None, detected
            )
        )
    return out


def threshold_sweep(
    labels: np.ndarray,
    probs: np.ndarray,
    episodes: dict[str, tuple[int, np.ndarray, np.ndarray]],
    debounce: int | list[int],
    thresholds: np.ndarray | None = None,
    safe_above: dict[int, float] | None = None,
) -> tuple[list[dict], tuple[float, int]]:
    """Frame and episode figures per (threshold, debounce), and the recommended pair: among
    the pairs that judge no failure episode successful, those that detect the most
    successful episodes with the shortest debounce (less delay); of their thresholds the
    middle one (the widest margin on both sides); without such a pair, the best frame
    accuracy. `safe_above` (debounce -> probability, failure_run_bounds of other failure
    episodes, e.g. the checkpoint's validation episodes): a pair counts as safe only where its
    threshold also lies above that bound, so that the recommendation judges no failure episode
    of either set successful."""
    thresholds = np.round(np.arange(0.05, 0.96, 0.05), 2) if thresholds is None else thresholds
    debounces = [debounce] if isinstance(debounce, int) else list(debounce)
    rows = []
    for d in debounces:
        for t in thresholds:
            outcomes = episode_outcomes(episodes, float(t), d)
            delays = [o.delay_frames for o in outcomes if o.label == 1 and o.delay_frames is not None]
            c = confusion(labels, probs, float(t))
            rows.append(
                {
                    "threshold": float(t),
                    "debounce": int(d),
                    "accuracy": _div(c["tp"] + c["tn"], len(labels)),
                    "false_positive_episodes": sum(o.label == 0 and o.judged_success for o in outcomes),
                    "detected_success_episodes": sum(o.label == 1 and o.judged_success for o in outcomes),
                    "mean_delay_frames": float(np.mean(delays)) if delays else float("nan"),
                }
            )
            if safe_above is not None:
                rows[-1]["safe_on_other_failures"] = bool(t > safe_above.get(int(d), 1.0))
    safe = [r for r in rows if r["false_positive_episodes"] == 0 and r.get("safe_on_other_failures", True)]
    if safe:
        # the most successes detected, with the shortest debounce that does it; then, of the
        # thresholds that keep both, the middle one: the widest margin to the thresholds where
        # a failure episode would be judged successful or a success missed (a policy explores
        # frames the held-out set never showed; the best accuracy often sits at an edge)
        most = max(r["detected_success_episodes"] for r in safe)
        shortest = min(r["debounce"] for r in safe if r["detected_success_episodes"] == most)
        keep = sorted(
            (r for r in safe if r["detected_success_episodes"] == most and r["debounce"] == shortest),
            key=lambda r: r["threshold"],
        )
        best = keep[(len(keep) - 1) // 2]
    else:
        best = max(rows, key=lambda r: (r["accuracy"], -r["debounce"], -r["threshold"]))
    return rows, (best["threshold"], best["debounce"])


def failure_run_bounds(
    episodes: dict[str, tuple[int, np.ndarray, np.ndarray]], debounces: list[int]
) -> dict[int, float]:
    """Per debounce d: the highest probability that some failure episode holds for d
    consecutive frames (the best window's lowest frame; 0 when no failure episode has d
    frames). The debounced decision judges none of these episodes successful at (threshold, d)
    exactly when the threshold lies above it (decisions are probability >= threshold)."""
    out = {}
    for d in debounces:
        bound = 0.0
        for label, _frames, probs in episodes.values():
            p = np.asarray(probs, float)
            if label == 0 and len(p) >= d:
                windows = np.lib.stride_tricks.sliding_window_view(p, d)
                bound = max(bound, float(windows.min(axis=1).max()))
        out[int(d)] = bound
    return out


def best_accuracy_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """The threshold (grid of 0.01) with the best balanced accuracy; ties: closest to 0.5."""
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    scores = []
    for t in grid:
        c = confusion(labels, probs, float(t))
        r = _div(c["tp"], c["tp"] + c["fn"])
        s = _div(c["tn"], c["tn"] + c["fp"])
        scores.append((np.nanmean([r, s]), -abs(t - 0.5), float(t)))
    return max(scores)[2]


# how validation_decision places the threshold (runner.threshold_rule); bench/threshold_rules.py
# measures them: "half" (the default) gave the best held-out accuracy on the current checkpoints
# of both tasks and rejects PickCube's unseen wrong_depth; "balanced" follows validation's few
# onset frames (it chose 0.81-0.85 on PickCube, missing success plateaus at 0.5-0.8)
THRESHOLD_RULES = {  # rule -> how validation_decision's reason names it
    "balanced": "best balanced accuracy",
    "half_floor": "best balanced accuracy, at least 0.5",
    "half": "0.5, the calibrated, class-balanced boundary",
}


def shortest_safe_debounce(
    episodes: dict[str, tuple[int, np.ndarray, np.ndarray]], threshold: float, debounces: list[int]
) -> int | None:
    """The shortest debounce of `debounces` at which no failure episode is judged successful
    at `threshold`; None when every one judges one successful."""
    for d in sorted(debounces):
        if not any(o.label == 0 and o.judged_success for o in episode_outcomes(episodes, threshold, d)):
            return int(d)
    return None


def validation_decision(
    labels: np.ndarray,
    probs: np.ndarray,
    episodes: dict[str, tuple[int, np.ndarray, np.ndarray]],
    debounces: list[int],
    rule: str = "half",
) -> tuple[float, int, str]:
    """The decision settings `train` stores, chosen on validation episodes: the threshold of
    best balanced accuracy (rule "balanced": best_accuracy_threshold; "half_floor": the same but
    never below 0.5, the calibrated, class-balanced boundary; "half": 0.5 itself, where
    class-balanced training put the boundary from every training frame, not from validation's
    few episodes), then the shortest debounce that judges no
    validation failure episode successful there. Where no debounce of `debounces` does, the
    pair threshold_sweep recommends (a higher threshold). Returns (threshold, debounce, how).

    On three demo checkpoints the balanced rule held out 99.32% frame accuracy on average against
    96.18% for threshold_sweep's pair chosen on the same validation episodes; on four PickCube
    checkpoints "half" held out 99.09% against balanced's 98.18% (bench/threshold_rules.py,
    docs/benchmarks.md)."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule {rule!r}: choose one of {', '.join(THRESHOLD_RULES)}")
    # "half": the boundary the whole training set placed (class-balanced sampling)
    threshold = 0.5 if rule == "half" else best_accuracy_threshold(labels, probs)
    if rule == "half_floor":  # never below the calibrated, class-balanced boundary
        threshold = max(threshold, 0.5)
    debounce = shortest_safe_debounce(episodes, threshold, debounces)
    if debounce is not None:
        failures = sum(e[0] == 0 for e in episodes.values())
        why = (
            f"{THRESHOLD_RULES[rule]}; debounce {debounce}: the shortest of {min(debounces)} to "
            f"{max(debounces)} that judges none of {failures} validation failure episodes successful"
        )
        return threshold, debounce, why
    _, (t, d) = threshold_sweep(labels, probs, episodes, debounces)
    why = (
        f"no debounce up to {max(debounces)} judged every validation failure episode a failure at the "
        f"best balanced-accuracy threshold {threshold:.2f}: evaluate's sweep rule chose this pair"
    )
    return t, d, why
