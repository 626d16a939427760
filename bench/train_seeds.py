"""Run-to-run spread of the classifier: the same dataset trained over several seeds, per setting,
each checkpoint judged on the held-out episodes.

    python bench/train_seeds.py --data runs/demo/dataset --eval runs/demo/dataset_eval \
        --config runs/demo/train/train_config.yaml --seeds 0 1 2 \
        --setting base= --setting ema0.9=runner.ema_decay=0.9 [--out runs/bench_seeds]

A setting is NAME=OVERRIDE[,OVERRIDE...] (`reward-model train` key=value overrides on top of
--config; `base=` adds none). For every setting and seed: train, then evaluate best_model on
every frame of --eval (nothing stored into the checkpoint). --data may be given again, as
`reward-model train --data` may (e.g. hard negatives: an RL run's disagreements/). Prints one
row per training and, per setting, the mean and the worst over the seeds of: frame accuracy at
the checkpoint's threshold, AUROC, ECE, failure episodes judged successful, successes detected,
training seconds; writes them to --out/results.json. Issue 14's bars: accuracy >= 99.5%, AUROC
>= 0.999, ECE <= 0.02, 0 failure episodes judged successful, every success detected within 5
frames of the ground-truth success frame.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def parse_setting(text: str) -> tuple[str, list[str]]:
    name, sep, overrides = text.partition("=")
    if not sep or not name:
        raise SystemExit(
            f"--setting {text!r}: write NAME=OVERRIDE[,OVERRIDE...] (e.g. base= or ema=runner.ema_decay=0.9)"
        )
    return name, [o for o in overrides.split(",") if o]


def one_run(
    data: Path | list[Path], eval_data: Path, configs: list[Path], overrides: list[str], seed: int, out: Path
) -> dict:
    from reward_model_ros.core.overrides import apply_overrides
    from reward_model_ros.paths import share_dir
    from reward_model_ros.training.evaluate import evaluate
    from reward_model_ros.training.train import TrainConfig, train

    cfg = apply_overrides(
        TrainConfig(),
        [
            *overrides,
            f"seed={seed}",
            f"runner.output_dir={out}",
            f"runner.logger.log_path={out / 'logs'}",
            "runner.save_interval=0",
            "runner.progress=false",
        ],
        [share_dir() / "config" / "train_reward.yaml", *configs],
    )
    start = time.monotonic()
    result = train(cfg, data, log=lambda m: None)
    seconds = time.monotonic() - start
    report = evaluate(Path(result["best_model"]), eval_data, split="all", out=out / "eval", store=False)
    ep = report["episodes"]
    return {
        "seed": seed,
        "accuracy": report["frames"]["accuracy"],
        "auroc": report["frames"]["auroc"],
        "ece": report["calibration"]["ece"],
        "false_positive_episodes": ep["false_positive_episodes"],
        "failure_episodes": ep["failure_episodes"],
        "detected": ep["detected_success_episodes"],
        "success_episodes": ep["success_episodes"],
        "max_delay_frames": ep["max_delay_frames"],
        "best_step": result["state"]["best_step"],
        "steps": result["state"]["step"],
        "train_s": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="training dataset (reward-model process); repeat it to add one, e.g. an RL run's disagreements/",
    )
    ap.add_argument("--eval", type=Path, required=True, help="held-out dataset: every frame is scored")
    ap.add_argument("--config", type=Path, action="append", default=[], help="train config YAML (repeatable)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--setting", action="append", default=[], help="NAME=OVERRIDE[,OVERRIDE...] (repeatable)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_seeds"))
    args = ap.parse_args()
    settings = [parse_setting(s) for s in (args.setting or ["base="])]
    rows: list[dict] = []
    print(
        "| setting | seed | accuracy | AUROC | ECE | failures judged successful | successes detected "
        "| best step | train s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, overrides in settings:
        for seed in args.seeds:
            r = one_run(args.data, args.eval, args.config, overrides, seed, args.out / name / f"seed{seed}")
            r["setting"], r["overrides"] = name, overrides
            rows.append(r)
            print(
                f"| {name} | {seed} | {r['accuracy']:.2%} | {r['auroc']:.4f} | {r['ece']:.3f} | "
                f"{r['false_positive_episodes']} / {r['failure_episodes']} | {r['detected']} / "
                f"{r['success_episodes']} (max delay {r['max_delay_frames']}) | "
                f"{r['best_step']} of {r['steps']} | {r['train_s']:.0f} |",
                flush=True,
            )
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(
        "\n| setting | accuracy mean (min) | AUROC mean (min) | ECE mean (max) "
        "| failures judged successful (max) | bars met |"
    )
    print("|---|---|---|---|---|---|")
    for name, _ in settings:
        rs = [r for r in rows if r["setting"] == name]
        acc, auc, ece = (np.array([r[k] for r in rs]) for k in ("accuracy", "auroc", "ece"))
        met = sum(
            r["accuracy"] >= 0.995
            and r["auroc"] >= 0.999
            and r["ece"] <= 0.02
            and r["false_positive_episodes"] == 0
            and r["detected"] == r["success_episodes"]
            and (r["max_delay_frames"] or 0) <= 5
            for r in rs
        )
        print(
            f"| {name} | {acc.mean():.2%} ({acc.min():.2%}) | {auc.mean():.4f} ({auc.min():.4f}) | "
            f"{ece.mean():.3f} ({ece.max():.3f}) | {max(r['false_positive_episodes'] for r in rs)} | "
            f"{met} of {len(rs)} |"
        )


if __name__ == "__main__":
    main()
