"""Does the classifier want more episodes? Record more scripted training episodes (through
ROS, as the demo does), add them to the bags a model was trained on, train again with the
same config and judge both on the same held-out episodes.

    python bench/data_scaling.py --task PickCube-v1 --bags runs/pick_once/bags/train \
        --extra 26 --extra-seed 50000 --eval runs/pick_once/dataset_eval \
        --config runs/pick_once/train/train_config.yaml --seeds 0 [--with-base] \
        [--out runs/data_scaling]

--extra N records N successful and N failed episodes from bridge seed --extra-seed on (keep
it away from the seeds of --bags and of the held-out set: the demo's are 0+, 100000+ and
200000+). Datasets are built as the demo builds them (val_fraction 0.2, split seed 0,
episode_success once). Per seed it trains on the bags plus the new ones (`more`) and, with
--with-base, on the bags alone (`base`), then scores every frame of --eval at each
checkpoint's validation settings (bench/train_seeds.py's rows). Needs the project's venv (ROS
2, ManiSkill); DDS stays on this machine (a fresh ROS domain per run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_seeds import one_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="PickCube-v1")
    ap.add_argument("--bags", type=Path, nargs="+", required=True, help="the training bags so far")
    ap.add_argument("--extra", type=int, required=True, help="successful and failed episodes to add, each")
    ap.add_argument("--extra-seed", type=int, default=50_000, help="bridge seed of the first new episode")
    ap.add_argument("--eval", type=Path, required=True, help="held-out dataset: every frame is scored")
    ap.add_argument("--config", type=Path, action="append", default=[], help="train config YAML (repeatable)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--with-base", action="store_true", help="train on --bags alone too")
    ap.add_argument("--episode-success", default="once", choices=["once", "end"])
    ap.add_argument("--out", type=Path, default=Path("runs/data_scaling"))
    args = ap.parse_args()

    from reward_model_ros.data.dataset import DataConfig, build_dataset
    from reward_model_ros.demo import DemoConfig, collect

    args.out.mkdir(parents=True, exist_ok=True)
    extra_bags = args.out / "bags_extra"
    demo_cfg = DemoConfig(out_dir=args.out, task=args.task)
    (args.out / "logs").mkdir(exist_ok=True)
    seconds = collect(demo_cfg, extra_bags, args.extra, args.extra_seed, "extra")
    print(f"recorded {args.extra}+{args.extra} {args.task} episodes in {seconds / 60:.1f} min", flush=True)
    data_cfg = DataConfig(val_fraction=0.2, seed=0, episode_success=args.episode_success)
    datasets = {"more": [*args.bags, extra_bags]}
    if args.with_base:
        datasets["base"] = list(args.bags)
    rows = []
    print(
        "| data | seed | episodes | accuracy | AUROC | ECE | failures judged successful | successes detected "
        "| train s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, bags in datasets.items():
        start = time.monotonic()
        summary = build_dataset(bags, args.out / name / "dataset", data_cfg, log=lambda m: None)
        episodes = sum(s["episodes_success"] + s["episodes_failure"] for s in summary["splits"].values())
        print(
            f"  {name}: {summary['samples']} samples, {episodes} episodes ({time.monotonic() - start:.0f} s)"
        )
        for seed in args.seeds:
            r = one_run(
                args.out / name / "dataset", args.eval, args.config, [], seed, args.out / name / f"seed{seed}"
            )
            r |= {"data": name, "episodes": episodes, "samples": summary["samples"]}
            rows.append(r)
            print(
                f"| {name} | {seed} | {episodes} | {r['accuracy']:.2%} | {r['auroc']:.4f} | {r['ece']:.3f} | "
                f"{r['false_positive_episodes']} / {r['failure_episodes']} | {r['detected']} / "
                f"{r['success_episodes']} (max delay {r['max_delay_frames']}) | {r['train_s']:.0f} |",
                flush=True,
            )
            (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
