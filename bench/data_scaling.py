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
checkpoint's validation settings (bench/train_seeds.py's rows).

The hard-negative loop against more data (issue 14): with --mine-with CKPT --base-data D
(the checkpoint and the dataset it was trained on), the new episodes are a mining set.
CKPT is evaluated on them (`reward-model evaluate`), its disagreeing frames are exported
(`reward-model hard-negatives`, at the threshold CKPT is served with: its stored
recommendation, not one chosen on the mining frames), and a row
`mined` trains on D plus those frames only (data.hard_negative_weight, --hard-negative-weight)
beside `more`, which trains on every frame of the new episodes. `mined` keeps train's default
data.mined_frames=false_positives (the mined failures only); `--mined-frames false_positives all`
adds a row `mined_all` that trains on the missed successes too.

    python bench/data_scaling.py --task PickCube-v1 --bags runs/pick_cam/bags/train --extra 13 \
        --extra-seed 50000 --eval runs/pick_cam/dataset_eval --config runs/pick_cam/train/train_config.yaml \
        --mine-with runs/pick_cam/train/best_model --base-data runs/pick_cam/dataset --out runs/pick_mine

Needs the project's venv (ROS 2, ManiSkill); DDS stays on this machine (a fresh ROS domain per run).
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
    ap.add_argument("--mine-with", type=Path, help="checkpoint whose mistakes on the new episodes are mined")
    ap.add_argument(
        "--base-data", type=Path, help="the dataset --mine-with was trained on (with --mine-with)"
    )
    ap.add_argument(
        "--hard-negative-weight", type=float, default=3.0, help="data.hard_negative_weight of `mined`"
    )
    ap.add_argument(
        "--mined-frames",
        nargs="+",
        default=["false_positives"],
        choices=["false_positives", "all"],
        help="data.mined_frames of the `mined` rows: one row per value (row `mined` for false_positives, "
        "`mined_all` for all)",
    )
    ap.add_argument("--out", type=Path, default=Path("runs/data_scaling"))
    args = ap.parse_args()
    if (args.mine_with is None) != (args.base_data is None):
        ap.error("--mine-with and --base-data go together: the checkpoint and the dataset it was trained on")

    from reward_model_ros.data.dataset import DataConfig, build_dataset
    from reward_model_ros.demo import DemoConfig, collect
    from reward_model_ros.training.evaluate import evaluate
    from reward_model_ros.training.hard_negatives import export_hard_negatives

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
    mined = None
    if args.mine_with is not None:
        build_dataset([extra_bags], args.out / "mining_set", data_cfg, log=lambda m: None)
        report = evaluate(
            args.mine_with, args.out / "mining_set", split="all", out=args.out / "mining_eval", store=False
        )
        # the served reward's mistakes: the threshold the checkpoint decides with now (its stored
        # recommendation), not one chosen on the mining frames themselves, which would mine the fewest
        served = report["threshold"]
        export = export_hard_negatives(
            args.out / "mining_eval", args.out / "hard_negatives", threshold=served, replace=True
        )
        counts = {k: export[f"{k}_frames"] for k in ("false_positive", "false_negative")}
        print(
            f"  mining set: {report['samples']} frames of {args.extra * 2} episodes; {args.mine_with} got "
            f"{report['frames']['accuracy']:.2%} right at its own threshold; mined {counts} at the "
            f"threshold it is served with, {export['threshold']:.2f}",
            flush=True,
        )
        mined = {"counts": counts, "mining_accuracy": report["frames"]["accuracy"]}
    rows = []
    print(
        "| data | seed | episodes | accuracy | AUROC | ECE | failures judged successful | successes detected "
        "| train s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    runs = []  # (name, training data, overrides, episodes, samples)
    for name, bags in datasets.items():
        start = time.monotonic()
        summary = build_dataset(bags, args.out / name / "dataset", data_cfg, log=lambda m: None)
        episodes = sum(s["episodes_success"] + s["episodes_failure"] for s in summary["splits"].values())
        print(
            f"  {name}: {summary['samples']} samples, {episodes} episodes ({time.monotonic() - start:.0f} s)"
        )
        runs.append((name, args.out / name / "dataset", [], episodes, summary["samples"]))
    if mined is not None:
        base = json.loads((args.base_data / "summary.json").read_text())
        n = sum(mined["counts"].values())
        episodes = sum(s["episodes_success"] + s["episodes_failure"] for s in base["splits"].values())
        weight = [f"data.hard_negative_weight={args.hard_negative_weight}"]
        for kind in args.mined_frames:
            row = "mined" if kind == "false_positives" else "mined_all"
            used = n if kind == "all" else mined["counts"]["false_positive"]
            overrides = [*weight, f"data.mined_frames={kind}"]
            runs.append(
                (
                    row,
                    [args.base_data, args.out / "hard_negatives"],
                    overrides,
                    episodes,
                    base["samples"] + used,
                )
            )
    for name, data, overrides, episodes, samples in runs:
        for seed in args.seeds:
            r = one_run(data, args.eval, args.config, overrides, seed, args.out / name / f"seed{seed}")
            r |= {"data": name, "episodes": episodes, "samples": samples}
            if name.startswith("mined"):
                r["mined"] = mined
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
