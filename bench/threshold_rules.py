"""How much of the classifier's held-out accuracy the choice of its decision threshold costs:
the same checkpoints, thresholds chosen on their validation split by several rules, each
judged on held-out episodes.

    python bench/threshold_rules.py --data runs/demo/dataset --eval runs/demo/dataset_eval \
        --checkpoints runs/bench_seeds/base/seed*/best_model [--out runs/threshold_rules.json]

Every checkpoint scores the validation split of --data (the episodes its training held out for
early stopping, temperature and threshold) and every frame of --eval, with the same scorer as
reward_node (its precision, temperature and crops). On the validation probabilities each rule
picks a threshold; the debounce is then the shortest (1-8 frames) that judges no validation
failure episode successful at that threshold. Rules:

- balanced: metrics.best_accuracy_threshold, the best balanced accuracy on a 0.01 grid, ties
  closest to 0.5 (what `train` stores as the checkpoint's threshold);
- plateau: the middle of the longest run of grid thresholds that reach that best balanced
  accuracy (the widest margin on both sides);
- smooth: the best balanced accuracy expected when every logit moves by Gaussian noise of
  one logit unit (a frame near the threshold counts partly on both sides);
- settled_plateau, settled_smooth: plateau and smooth on the frames at least 3 frames from a
  change of label only (tried, not kept: docs/benchmarks.md, "The threshold at 0.5");
- half: 0.5, which class-balanced sampling makes the balanced-accuracy threshold of the
  training distribution; the temperature leaves logit 0 where it is;
- train:<rule>: metrics.validation_decision with that rule (metrics.THRESHOLD_RULES: balanced;
  half_floor, balanced but never below 0.5, the cost-sensitive view that a false positive costs
  a policy more than a late detection) and DECISION_DEBOUNCES: what `train` stores, with its
  fallback to the sweep's pair where no debounce is safe at the rule's threshold (the rows
  above use 8 frames there);
- sweep: the threshold and debounce `evaluate` recommends on the validation split (no
  failure episode judged successful, most successes detected, shortest debounce, middle
  threshold);
- fastest: among the (threshold, debounce) pairs of the 0.01 grid and 1-8 frames that judge no
  validation failure episode successful and detect the most validation successes, the
  shortest debounce, then the best balanced accuracy (ties closest to 0.5): the detection
  delay first, the frames second;
- oracle: the best frame accuracy on the held-out frames themselves (a bound, not a rule).

Prints per checkpoint and rule: held-out frame accuracy, failure episodes judged successful,
successes detected and their largest delay; then per rule the mean and the worst over the
checkpoints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from reward_model_ros.core.reward import DEFAULT_FUSION
from reward_model_ros.training.evaluate import DEBOUNCES, DECISION_DEBOUNCES

GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)  # the grid of metrics.best_accuracy_threshold


def balanced_scores(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    pos, neg = labels == 1, labels == 0
    out = []
    for t in GRID:
        judged = probs >= t
        parts = [judged[pos].mean() if pos.any() else np.nan, (~judged[neg]).mean() if neg.any() else np.nan]
        out.append(np.nanmean(parts))
    return np.array(out)


def rule_plateau(labels, probs) -> float:
    s = balanced_scores(labels, probs)
    at_best = s == s.max()
    runs, start = [], None
    for i, flag in enumerate([*at_best, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((i - start, start, i - 1))
            start = None
    _, lo, hi = max(runs, key=lambda r: (r[0], -abs(GRID[(r[1] + r[2]) // 2] - 0.5)))
    return float(GRID[(lo + hi) // 2])


def rule_smooth(labels, probs, sigma: float = 1.0) -> float:
    from scipy.special import ndtr

    z = np.log(np.clip(probs, 1e-6, 1 - 1e-6) / np.clip(1 - probs, 1e-6, 1))
    pos, neg = labels == 1, labels == 0
    scores = []
    for t in GRID:
        zt = np.log(t / (1 - t))
        above = ndtr((z - zt) / sigma)  # chance a frame's noisy logit lands above the threshold
        scores.append(np.nanmean([above[pos].mean() if pos.any() else np.nan, (1 - above[neg]).mean()]))
    scores = np.array(scores)
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(GRID[best[np.argmin(np.abs(GRID[best] - 0.5))]])


def settled_frames(episodes, margin: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The labels and probabilities of the frames at least `margin` frames from a change of
    label in their episode (the onset frames, whose label no single frame can show, left out)."""
    from reward_model_ros.training import metrics as M

    labels, probs = [], []
    for _label, lab, p in episodes.values():
        far = M.frames_from_label_change([{"episode": 0}] * len(lab), lab) >= margin
        labels.append(np.asarray(lab)[far])
        probs.append(np.asarray(p)[far])
    return np.concatenate(labels), np.concatenate(probs)


def rule_fastest(labels, probs, episodes) -> tuple[float, int]:
    from reward_model_ros.training import metrics as M

    scores = balanced_scores(labels, probs)
    best = None
    for d in DEBOUNCES:
        for t, score in zip(GRID, scores, strict=True):
            outcomes = M.episode_outcomes(episodes, float(t), d)
            if any(o.label == 0 and o.judged_success for o in outcomes):
                continue
            detected = sum(o.label == 1 and o.judged_success for o in outcomes)
            key = (detected, -d, score, -abs(t - 0.5))
            if best is None or key > best[0]:
                best = (key, float(t), d)
    return (best[1], best[2]) if best else (0.5, DEBOUNCES[-1])


def shortest_safe_debounce(episodes, threshold: float) -> int:
    from reward_model_ros.training import metrics as M

    d = M.shortest_safe_debounce(episodes, threshold, DECISION_DEBOUNCES)  # train's choice: 2 to 8 frames
    return DECISION_DEBOUNCES[-1] if d is None else d


def split_scores(ckpt, data: Path, split: str, fusion: str = DEFAULT_FUSION):
    from reward_model_ros.data.dataset import read_manifest
    from reward_model_ros.training.evaluate import score_rows

    rows = [r for r in read_manifest(data) if split == "all" or r["split"] == split]
    rows.sort(key=lambda r: (r["episode"], r["frame"]))
    probs, _ = score_rows(ckpt, rows, data, fusion)  # an invalid frame scores 0, as in reward_node
    labels = np.array([r["label"] for r in rows], int)
    from reward_model_ros.training import metrics as M

    return labels, probs, M.episodes_of(rows, labels, probs)


def judge(labels, probs, episodes, threshold: float, debounce: int) -> dict:
    from reward_model_ros.training import metrics as M

    outcomes = M.episode_outcomes(episodes, threshold, debounce)
    delays = [o.delay_frames for o in outcomes if o.label == 1 and o.delay_frames is not None]
    return {
        "threshold": threshold,
        "debounce": debounce,
        "accuracy": float(((probs >= threshold).astype(int) == labels).mean()),
        "false_positive_episodes": sum(o.label == 0 and o.judged_success for o in outcomes),
        "failure_episodes": sum(o.label == 0 for o in outcomes),
        "detected": sum(o.label == 1 and o.judged_success for o in outcomes),
        "success_episodes": sum(o.label == 1 for o in outcomes),
        "max_delay_frames": int(max(delays)) if delays else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the checkpoints' training dataset")
    ap.add_argument("--eval", type=Path, required=True, help="held-out dataset: every frame is scored")
    ap.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()

    from reward_model_ros.core.checkpoint import load_checkpoint
    from reward_model_ros.training import metrics as M

    rules = {
        "balanced": M.best_accuracy_threshold,  # train's own rule
        "plateau": rule_plateau,
        "smooth": rule_smooth,
        "half": lambda labels, probs: 0.5,
    }
    episode_rules = {  # rules that read the episodes (the frames' distance to a label change)
        "settled_plateau": lambda episodes: rule_plateau(*settled_frames(episodes)),
        "settled_smooth": lambda episodes: rule_smooth(*settled_frames(episodes)),
    }
    rows = []
    print(
        "| checkpoint | rule | threshold | debounce | accuracy | failures judged successful "
        "| successes detected |"
    )
    print("|---|---|---|---|---|---|---|")
    for path in args.checkpoints:
        ckpt = load_checkpoint(path)
        val = split_scores(ckpt, args.data, "val")
        held = split_scores(ckpt, args.eval, "all")
        picks = {name: rule(val[0], val[1]) for name, rule in rules.items()}
        picks |= {name: rule(val[2]) for name, rule in episode_rules.items()}
        chosen = {name: (t, shortest_safe_debounce(val[2], t)) for name, t in picks.items()}
        for rule in M.THRESHOLD_RULES:  # what `train` would store under each rule, its fallback included
            chosen[f"train:{rule}"] = M.validation_decision(*val, DECISION_DEBOUNCES, rule)[:2]
        chosen["sweep"] = M.threshold_sweep(val[0], val[1], val[2], DEBOUNCES, GRID)[1]
        chosen["fastest"] = rule_fastest(*val)
        oracle = max(GRID, key=lambda t: (((held[1] >= t).astype(int) == held[0]).mean(), -abs(t - 0.5)))
        chosen["oracle"] = (float(oracle), chosen["balanced"][1])
        for name, (t, d) in chosen.items():
            r = {"checkpoint": str(path), "rule": name, **judge(*held, float(t), int(d))}
            rows.append(r)
            print(
                f"| {path} | {name} | {t:.2f} | {d} | {r['accuracy']:.2%} | "
                f"{r['false_positive_episodes']} / {r['failure_episodes']} | {r['detected']} / "
                f"{r['success_episodes']} (max delay {r['max_delay_frames']}) |",
                flush=True,
            )
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(
        "\n| rule | accuracy mean (min) | failures judged successful (sum) | successes missed (sum) "
        "| largest delay (frames) |"
    )
    print("|---|---|---|---|---|")
    trained = [f"train:{rule}" for rule in M.THRESHOLD_RULES]
    for name in [*rules, *episode_rules, *trained, "sweep", "fastest", "oracle"]:
        rs = [r for r in rows if r["rule"] == name]
        acc = np.array([r["accuracy"] for r in rs])
        fp = sum(r["false_positive_episodes"] for r in rs)
        missed = sum(r["success_episodes"] - r["detected"] for r in rs)
        worst = max((r["max_delay_frames"] for r in rs if r["max_delay_frames"] is not None), default=None)
        print(f"| {name} | {acc.mean():.2%} ({acc.min():.2%}) | {fp} | {missed} | {worst} |")


if __name__ == "__main__":
    main()
