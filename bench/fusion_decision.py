"""Which camera fusion a late multi-view checkpoint should decide with, each judged with the
threshold and debounce chosen on its validation episodes (as `train` chooses them), not on
the held-out frames.

    python bench/fusion_decision.py --data runs/pick2cam/dataset --eval runs/pick2cam/dataset_eval \
        --checkpoints runs/pick2cam/train/best_model [--fusions logit mean min max]

For every checkpoint and fusion: the validation split of --data and every frame of --eval are
scored with reward_node's scorer and that fusion of the per-camera probabilities;
metrics.validation_decision picks threshold and debounce on the validation episodes; the
held-out episodes are judged at them. Prints frame accuracy, AUROC, ECE, failure episodes
judged successful (and their modes), successes detected and the largest delay.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from threshold_rules import judge, split_scores

from reward_model_ros.core.reward import FUSIONS
from reward_model_ros.training.evaluate import DECISION_DEBOUNCES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the checkpoints' training dataset")
    ap.add_argument("--eval", type=Path, required=True, help="held-out dataset: every frame is scored")
    ap.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    ap.add_argument("--fusions", nargs="+", default=list(FUSIONS), choices=FUSIONS)
    args = ap.parse_args()

    from reward_model_ros.core.checkpoint import load_checkpoint
    from reward_model_ros.data.dataset import read_manifest
    from reward_model_ros.training import metrics as M

    modes = {r["episode"]: r.get("mode", "") for r in read_manifest(args.eval)}
    print(
        "| checkpoint | fusion | threshold | debounce | accuracy | AUROC | ECE | failures judged successful "
        "| successes detected |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for path in args.checkpoints:
        ckpt = load_checkpoint(path)
        if ckpt.config.multi_view != "late" or len(ckpt.config.camera_names) < 2:
            raise SystemExit(f"{path}: fusion applies to late multi-view checkpoints of 2+ cameras")
        for fusion in args.fusions:
            val = split_scores(ckpt, args.data, "val", fusion)
            held = split_scores(ckpt, args.eval, "all", fusion)
            t, d, _ = M.validation_decision(val[0], val[1], val[2], DECISION_DEBOUNCES)
            r = judge(*held, t, d)
            fooled = [
                modes.get(o.episode, "")
                for o in M.episode_outcomes(held[2], t, d)
                if o.label == 0 and o.judged_success
            ]
            ece, auc = M.calibration(held[0], held[1])["ece"], M.auroc(held[0], held[1])
            print(
                f"| {path} | {fusion} | {t:.2f} | {d} | {r['accuracy']:.2%} | {auc:.4f} | "
                f"{ece:.3f} | {r['false_positive_episodes']} / {r['failure_episodes']}"
                f"{' (' + ', '.join(sorted(fooled)) + ')' if fooled else ''} | {r['detected']} / "
                f"{r['success_episodes']} (max delay {r['max_delay_frames']}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
