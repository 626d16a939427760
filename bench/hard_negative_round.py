"""One round of the hard-negative loop from the RL monitor, judged in RL (issue 14).

The reward-hacking monitor keeps the frames where the classifier and ground truth disagree
during RL (`disagreements/`). Trained on again, do they make the reward harder to fool? Held-out
scripted episodes cannot say: a policy looks for the frames a reward gets wrong, so the round
is judged by RL on the new reward, with ground truth watching.

    python bench/hard_negative_round.py --checkpoint runs/demo/train/best_model \\
        --data runs/demo/dataset --eval runs/demo/dataset_eval [--steps 12000] [--weight 3] \\
        [--out runs/hn_round]

A later round starts from a round-1 reward: --checkpoint <out>/train_false_positives/best_model
with --data repeated (the base dataset, then round 0's disagreements), and --mined-frames
false_positives to train only the default. Copy the earlier run's rl_mined_false_positives to
<out2>/rl_round0 to reuse it as the new round 0.

1. RL on --checkpoint's reward (`bench/rl_pushcube.py --only learned`, `sac.total_steps=--steps`):
   its monitor saves the disagreeing frames (round 0).
2. `reward-model train --data D --data <round 0>/disagreements data.hard_negative_weight=W`
   once per `data.mined_frames` (false_positives, the default, and all), with the config
   --checkpoint was trained with (train_config.yaml beside it).
3. `reward-model evaluate` of each on --eval, storing its recommendation, as the demo does.
4. RL on each new reward, the two side by side with one thread each. RL here is deterministic
   for a given step count (the same checkpoint gave the same evaluation curve and monitor counts
   in two runs), so --checkpoint's round 0 is its row.
5. Each reward scores the false-positive frames of every other reward's RL run (frames no one
   trained on): how often would it pay for the other policy's exploit?

Prints the table and writes it to <out>/hard_negative_round.json. A finished RL run or training
found in <out> is reused (delete it to run it again). Steps, not seconds, bound the
runs, so the rows compare on a noisy machine. About 30 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
EXE = Path(sys.executable).parent / "reward-model"
MINED = ("false_positives", "all")


def run(cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if code:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"{' '.join(map(str, cmd))} exited {code} (log {log}):\n{tail}")


def rl(checkpoint: Path, steps: int, out: Path) -> subprocess.Popen | None:
    if (out / "learned" / "result.json").is_file():
        print(f"  reusing {out} (delete it to run again)", flush=True)
        return None
    cmd = [
        sys.executable,
        str(BENCH / "rl_pushcube.py"),
        "--checkpoint",
        str(checkpoint),
        "--only",
        "learned",
    ]
    cmd += ["--threads", "1", "--budget", "100000", "--out", str(out), f"sac.total_steps={steps}"]
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, stdout=(out / "log.txt").open("w"), stderr=subprocess.STDOUT)


def wait(procs: dict[str, subprocess.Popen], outs: dict[str, Path]) -> dict[str, dict]:
    results = {}
    for name, p in procs.items():
        if p is not None and p.wait():
            raise SystemExit(f"RL on {name} exited {p.returncode}: see {outs[name] / 'log.txt'}")
        results[name] = json.loads((outs[name] / "learned" / "result.json").read_text())
    return results


def metrics(report_dir: Path) -> dict:
    return json.loads((report_dir / "metrics.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="the PushCube classifier (round 0)")
    ap.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="the data it was trained on (repeatable: a later round gives the base dataset and every earlier "
        "round's disagreements)",
    )
    ap.add_argument("--eval", type=Path, required=True, help="held-out episodes (evaluate stores on them)")
    ap.add_argument("--config", type=Path, help="its train config (default: train_config.yaml beside it)")
    ap.add_argument("--steps", type=int, default=12000, help="env steps of every RL run")
    ap.add_argument("--weight", type=float, default=3.0, help="data.hard_negative_weight")
    ap.add_argument(
        "--mined-frames",
        nargs="+",
        choices=MINED,
        default=list(MINED),
        help="the data.mined_frames values to train and run RL on (default: both)",
    )
    ap.add_argument("--out", type=Path, default=Path("runs/hn_round"))
    args = ap.parse_args()
    config = args.config or args.checkpoint.parent / "train_config.yaml"
    if not config.is_file():
        raise SystemExit(f"{config}: no train config beside the checkpoint; give --config")
    start = time.monotonic()
    out = args.out

    outs = {"round 0": out / "rl_round0"}
    print(f"round 0: RL on {args.checkpoint} for {args.steps} steps", flush=True)
    results = wait({"round 0": rl(args.checkpoint, args.steps, outs["round 0"])}, outs)
    mined = outs["round 0"] / "learned" / "disagreements"
    rows = [json.loads(line) for line in (mined / "manifest.jsonl").read_text().splitlines() if line]
    fp = sum(r["label"] == 0 for r in rows)
    print(
        f"  {len(rows)} disagreeing frames: {fp} false positives, {len(rows) - fp} missed successes",
        flush=True,
    )

    checkpoints = {"round 0": args.checkpoint}
    for kind in args.mined_frames:
        name = f"mined {kind}"
        run_dir = out / f"train_{kind}"
        where = [f"runner.output_dir={run_dir}", f"runner.logger.log_path={run_dir / 'logs'}"]
        cmd = [str(EXE), "train", *(a for d in [*args.data, mined] for a in ("--data", str(d)))]
        cmd += ["--config", str(config)]
        cmd += [*where, f"data.hard_negative_weight={args.weight}", f"data.mined_frames={kind}"]
        if (run_dir / "best_model" / "model.safetensors").is_file():
            print(f"  reusing {run_dir} (delete it to train again)", flush=True)
        else:
            data = ", ".join(map(str, args.data))
            print(f"training on {data} + the disagreeing frames, data.mined_frames={kind}", flush=True)
            run([*cmd, "runner.progress=false"], run_dir / "train.log")
        checkpoints[name] = run_dir / "best_model"
    held_out = {}
    for name, ckpt in checkpoints.items():  # round 0's keeps what it stores; the new ones store theirs
        held_out[name] = out / "held_out" / name.replace(" ", "_")
        cmd = [str(EXE), "evaluate", "--checkpoint", str(ckpt), "--data", str(args.eval), "--split", "all"]
        cmd += ["--out", str(held_out[name]), *(["--no-store"] if name == "round 0" else [])]
        run(cmd, held_out[name] / "evaluate.log")

    names = [f"mined {k}" for k in args.mined_frames]
    outs |= {n: out / f"rl_{n.replace(' ', '_')}" for n in names}
    print(f"round 1: RL on {', '.join(names)} side by side, {args.steps} steps each", flush=True)
    results |= wait({n: rl(checkpoints[n], args.steps, outs[n]) for n in names}, outs)

    table = []
    for name, ckpt in checkpoints.items():
        held = metrics(held_out[name])
        r = results[name]
        totals = r["monitor_totals"]
        fooled = {}
        for other in checkpoints:
            if other == name:
                continue
            frames = outs[other] / "learned" / "disagreements"
            ev = out / "cross" / f"{name.replace(' ', '_')}_on_{other.replace(' ', '_')}"
            cmd = [str(EXE), "evaluate", "--checkpoint", str(ckpt), "--data", str(frames), "--split", "all"]
            run([*cmd, "--no-store", "--out", str(ev)], ev / "evaluate.log")
            f = metrics(ev)["frames"]
            fooled[other] = [int(f["fp"]), int(f["fp"] + f["tn"])]
        table.append(
            {
                "reward": name,
                "checkpoint": str(ckpt),
                "held_out": {
                    "accuracy": held["frames"]["accuracy"],
                    "auroc": held["frames"]["auroc"],
                    "ece": held["calibration"]["ece"],
                    "false_positive_episodes": held["episodes"]["false_positive_episodes"],
                    "failure_episodes": held["episodes"]["failure_episodes"],
                    "served_threshold": held["recommended_threshold"],
                },
                "rl": {
                    "steps": r["steps"],
                    "gt_success": r["final_eval"]["gt_success"],
                    "curve": [[c["step"], c["gt_success"]] for c in r["eval_curve"]],
                    "episodes": totals["episodes"],
                    "false_positive_episodes": totals["false_positive"],
                    "missed_success_episodes": totals["false_negative"],
                },
                "pays_for_others_false_positive_frames": fooled,
            }
        )
    print(
        "\n| reward | held-out accuracy | AUROC | ECE | served threshold | RL ground-truth success (curve) "
        "| RL episodes paid for nothing | RL successes missed | pays for the others' false-positive frames |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for t in table:
        h, r = t["held_out"], t["rl"]
        curve = " / ".join(f"{s:.2f}" for _, s in r["curve"])
        others = "; ".join(
            f"{k}: {a} of {b}" for k, (a, b) in t["pays_for_others_false_positive_frames"].items()
        )
        print(
            f"| {t['reward']} | {h['accuracy']:.2%} | {h['auroc']:.4f} | {h['ece']:.3f} "
            f"| {h['served_threshold']:.2f} "
            f"| {r['gt_success']:.2f} ({curve}) | {r['false_positive_episodes']} of {r['episodes']} "
            f"| {r['missed_success_episodes']} | {others} |"
        )
    summary = {
        "steps": args.steps,
        "weight": args.weight,
        "round0_disagreements": {"frames": len(rows), "false_positive": fp, "missed_success": len(rows) - fp},
        "rows": table,
        "wall_s": time.monotonic() - start,
    }
    (out / "hard_negative_round.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\n{(time.monotonic() - start) / 60:.1f} min; {out / 'hard_negative_round.json'}")


if __name__ == "__main__":
    main()
