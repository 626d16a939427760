"""The `reward-model` command: a thin layer over the library's functions.

reward-model demo                 the main job on the embedded default (see README)
reward-model check-interfaces     round-trip every reward_msgs type through an echo node
reward-model process BAGS --out D build a training set from episode bags (key=value overrides)
reward-model rl train --config C  train a policy with the learned reward (simulation)
reward-model rl evaluate --checkpoint P   ground-truth success on fixed seeds
reward-model recover BAGS         rebuild bags whose recorder was killed
reward-model train --data D       train the classifier (key=value overrides)
reward-model evaluate --checkpoint C --data D   metrics, plots, recommended threshold
reward-model predict --checkpoint C PATHS       score image files
reward-model lomo --train-data D --data H --out O   leave-one-failure-mode-out figures
reward-model hard-negatives EVAL --out D        an evaluation's mistakes as a dataset to train on
reward-model calibrate C --data D               refit the checkpoint's temperature (calibration)
reward-model quantize C --data D                store int8 calibration frames, compare int8 with fp32
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from reward_model_ros.core.config import OPTIMIZE, PRECISIONS
from reward_model_ros.core.reward import DEFAULT_FUSION, FUSIONS


def _print_results(results) -> None:
    width = max(len(r.name) for r in results)
    for r in results:
        status = "ok  " if r.ok else "FAIL"
        print(f"  {status} {r.name:<{width}}  {r.seconds * 1000:7.1f} ms  {r.detail}")


def _check(echo_node: str, timeout: float) -> list:
    import rclpy

    from reward_model_ros.ros.interface_check import run_interface_check

    rclpy.init()
    try:
        node = rclpy.create_node("interface_check")
        try:
            return run_interface_check(node, echo_node=echo_node, timeout=timeout)
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()


def check_interfaces(spawn_echo: bool, echo_node: str, timeout: float) -> int:
    """Run the interface round trip; with spawn_echo, in an isolated local DDS domain."""
    from reward_model_ros.dds import DomainLease, local_dds_env
    from reward_model_ros.ros.processes import NodeProcess, ros_args

    if not spawn_echo:
        print(
            f"checking against a running echo node /{echo_node} (ROS_DOMAIN_ID="
            f"{os.environ.get('ROS_DOMAIN_ID', '0')})"
        )
        results = _check(echo_node, timeout)
        _print_results(results)
        return 0 if all(r.ok for r in results) else 1

    with DomainLease() as lease:
        env = local_dds_env(lease.domain_id)
        os.environ.update(env)  # before rclpy starts its participant in this process
        print(
            f"DDS kept on this machine: ROS_DOMAIN_ID={lease.domain_id}, "
            f"ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, "
            f"FASTDDS_DEFAULT_PROFILES_FILE={env['FASTDDS_DEFAULT_PROFILES_FILE']}"
        )
        log_path = Path(tempfile.mkdtemp(prefix="reward_model_ros-")) / "interface_echo_node.log"
        start = time.monotonic()
        echo = NodeProcess("interface_echo_node", ros_args(node_name=echo_node), env=env, log_path=log_path)
        print(f"started {echo.command[0]} as process {echo.pid} (log: {log_path})")
        try:
            results = _check(echo_node, timeout)
        finally:
            code = echo.stop()
        print(f"round trip of every reward_msgs type between process {os.getpid()} and process {echo.pid}:")
        _print_results(results)
        passed = sum(r.ok for r in results)
        print(
            f"{passed}/{len(results)} interfaces came back unchanged in "
            f"{time.monotonic() - start:.1f} s; echo node exited with code {code}",
            flush=True,
        )
        if passed != len(results):
            print("echo node log:\n" + echo.output(), file=sys.stderr)
        return 0 if passed == len(results) else 1


def process(args) -> int:
    from tqdm import tqdm

    from reward_model_ros.core.overrides import OverrideError, apply_overrides
    from reward_model_ros.data.bags import BagError
    from reward_model_ros.data.dataset import ProcessConfig, build_dataset

    overrides = [a for a in args.inputs if "=" in a]
    paths = [Path(a) for a in args.inputs if "=" not in a]
    try:
        cfg = apply_overrides(ProcessConfig(), overrides, args.config)
    except OverrideError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar = tqdm(total=0, unit="bag", dynamic_ncols=True, file=sys.stderr)

    def progress(n: int, total: int, what: str) -> None:
        if bar.total != total or n == 0:
            bar.reset(total=total)
        bar.n = n + 1
        bar.set_postfix_str(Path(what.replace("writing ", "")).name)
        bar.refresh()

    start = time.monotonic()
    try:
        summary = build_dataset(
            paths, args.out, cfg.data, log=lambda m: tqdm.write(m, file=sys.stderr), progress=progress
        )
    except (BagError, FileExistsError, ValueError) as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    elapsed = time.monotonic() - start
    print(
        f"dataset in {args.out}: {summary['samples']} samples from cameras {summary['cameras']} "
        f"({elapsed:.1f} s, {summary['samples'] / max(elapsed, 1e-9):.0f} samples/s)"
    )
    print(f"{'split':<6} {'success eps':>11} {'failure eps':>11} {'positive':>9} {'negative':>9}")
    for split, c in summary["splits"].items():
        print(
            f"{split:<6} {c['episodes_success']:>11} {c['episodes_failure']:>11} "
            f"{c['frames_positive']:>9} {c['frames_negative']:>9}"
        )
    if summary["skipped_bags"]:
        print(f"{len(summary['skipped_bags'])} bag(s) skipped (reasons above and in summary.json)")
    return 0


def train_command(args) -> int:
    from reward_model_ros.core.config import ConfigError
    from reward_model_ros.core.overrides import OverrideError, apply_overrides
    from reward_model_ros.paths import share_dir
    from reward_model_ros.training.train import TrainConfig, TrainError, train

    base = share_dir() / "config" / "train_reward.yaml"
    try:
        cfg = apply_overrides(TrainConfig(), args.overrides, [base, *args.config])
        data = list(args.data)
        if args.hard_negatives and int(os.environ.get("RANK", "0")) == 0:
            from reward_model_ros.training.hard_negatives import export_into_run

            mined = export_into_run(args.hard_negatives, Path(cfg.runner.output_dir))
            for d in mined:
                n = sum(1 for line in (d / "manifest.jsonl").read_text().splitlines() if line)
                print(f"hard negatives: {n} disagreeing frame(s) exported to {d}")
            data += mined
        elif args.hard_negatives:  # torchrun: rank 0 exports; the others wait for it
            data += [
                _wait_for_export(Path(cfg.runner.output_dir), k) for k in range(len(args.hard_negatives))
            ]
        result = train(cfg, data if len(data) > 1 else data[0])
    except (OverrideError, TrainError, ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = result["state"]
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"done: {state['step']} steps, best {cfg.runner.best_metric} = {state['best']:.4f} at step "
            f"{state['best_step']}; checkpoint {result['best_model']}"
        )
    return 0


def _wait_for_export(run_dir: Path, k: int, timeout: float = 600.0) -> Path:
    """Another process's `train --hard-negatives` export (its summary.json is written last)."""
    out = run_dir / ("hard_negatives" if k == 0 else f"hard_negatives_{k}")
    end = time.monotonic() + timeout
    while not (out / "summary.json").is_file():
        if time.monotonic() > end:
            raise FileNotFoundError(f"{out}: rank 0 did not export the hard negatives in {timeout:.0f} s")
        time.sleep(0.5)
    return out


def lomo_command(args) -> int:
    from reward_model_ros.core.config import ConfigError
    from reward_model_ros.core.overrides import OverrideError, apply_overrides
    from reward_model_ros.paths import share_dir
    from reward_model_ros.training.protocols import ProtocolError, format_table, leave_one_mode_out
    from reward_model_ros.training.train import TrainConfig, TrainError

    base = share_dir() / "config" / "train_reward.yaml"
    try:
        cfg = apply_overrides(TrainConfig(), args.overrides, [base, *args.config])
        report = leave_one_mode_out(
            cfg,
            args.train_data,
            args.data,
            args.out,
            args.split,
            args.modes or None,
            args.delay_bar,
            log=print,
        )
    except (OverrideError, TrainError, ConfigError, ProtocolError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"\nleave one failure mode out: trained without each mode, scored on {report['heldout']} "
        f"(split {report['split']}) episodes of that mode + its successes; threshold and debounce of "
        "each model chosen on its own validation split"
    )
    print(format_table(report))
    print(f"report in {Path(args.out) / 'lomo.json'}")
    return 0


def hard_negatives_command(args) -> int:
    from reward_model_ros.training.hard_negatives import HardNegativeError, export_hard_negatives

    try:
        s = export_hard_negatives(args.evaluation, args.out, args.threshold, link=not args.copy)
    except (HardNegativeError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    src = s["mined_from"][0]
    print(
        f"{s['samples']} disagreeing frame(s) of {len(src['episodes'])} episode(s) of {src['data']} "
        f"(split {src['split']}) at threshold {s['threshold']:.2f} ({s['threshold_source']}): "
        f"{s['false_positive_frames']} false positive(s), {s['false_negative_frames']} false negative(s), "
        f"{s['invalid_frames_passed_over']} invalid frame(s) passed over; dataset in {args.out}"
    )
    print(
        f"train on them: reward-model train --data DATASET --data {args.out} [data.hard_negative_weight=N]; "
        f"report figures on a held-out set, not on {src['data']} (evaluate refuses those episodes)"
    )
    return 0


def evaluate_command(args) -> int:
    from reward_model_ros.core.checkpoint import CheckpointError
    from reward_model_ros.training.evaluate import evaluate

    try:
        report = evaluate(
            args.checkpoint,
            args.data,
            args.split,
            args.out,
            args.debounce,
            args.logs,
            fusion=args.fusion,
            store=args.store,
            allow_trained_episodes=args.allow_trained_episodes,
            model_overrides={"precision": args.precision, "optimize": args.optimize},
        )
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if report["trained_episodes"]:
        print(
            f"WARNING: {len(report['trained_episodes'])} of these episodes were trained on as hard "
            "negatives: these are not held-out figures",
            file=sys.stderr,
        )
    m, e, r = report["frames"], report["episodes"], report["episodes_at_recommended"]
    d = report["decision"]
    print(
        f"{report['samples']} samples of {e['count']} episodes ({args.split}): accuracy {m['accuracy']:.4f}, "
        f"AUROC {m['auroc']:.4f}, precision {m['precision']:.4f}, recall {m['recall']:.4f}, "
        f"FPR {m['false_positive_rate']:.4f}, ECE {report['calibration']['ece']:.4f} at temperature "
        f"{report['calibration']['temperature']:.2f}"
    )
    fe = report["frame_errors"]
    print(
        f"{fe['errors']} frame errors, {fe['at_a_label_change']} of them on either side of a ground-truth "
        f"label change; accuracy {fe['accuracy_away_from_changes']:.4f} more than 2 frames from one"
    )
    print(
        f"as reward_node decides with this checkpoint ({d['source']}): "
        f"{e['false_positive_episodes']}/{e['failure_episodes']} failure episode(s) judged successful, "
        f"{e['detected_success_episodes']}/{e['success_episodes']} successes detected, delay mean "
        f"{e['mean_delay_frames']:.1f} / max {e['max_delay_frames']} frames"
        + (" (WARNING: settings chosen on these very frames)" if d["chosen_on_these_frames"] else "")
    )
    fooled = {k: v for k, v in e["failure_modes"].items() if v["judged_successful"]}
    if fooled or e["transient_failure_episodes"]:
        print(
            f"  of them passes (ground-truth success seen, then lost): {e['transient_judged_successful']}/"
            f"{e['transient_failure_episodes']}; by mode: "
            + (
                ", ".join(f"{k} {v['judged_successful']}/{v['episodes']}" for k, v in fooled.items())
                or "none"
            )
        )
    print(
        f"recommended on these frames: reward_threshold {report['recommended_threshold']:.2f}, "
        f"debounce_frames {report['debounce']} (also safe on {report['recommendation_also_safe_on']}): "
        f"{r['false_positive_episodes']} failure episode(s) judged successful, "
        f"{r['detected_success_episodes']}/{r['success_episodes']} successes detected, mean delay "
        f"{r['mean_delay_frames']:.1f} frames; report in {report['out']}"
    )
    print(f"recommendation {report['stored']}")
    return 0


def predict_command(args) -> int:
    import json

    from reward_model_ros.core.checkpoint import CheckpointError
    from reward_model_ros.core.config import ConfigError
    from reward_model_ros.training.evaluate import predict_files

    try:
        rows, settings = predict_files(
            args.checkpoint,
            args.paths,
            args.threshold,
            args.camera,
            args.sequence,
            args.debounce,
            args.debug_save_dir,
        )
    except (CheckpointError, ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"decision: {settings.source}", file=sys.stderr)
    for r in rows:
        if args.json:
            print(json.dumps(r))
        elif r.get("error"):
            print(f"{r['path']}  error: {r['error']}")
        elif not r["valid"]:
            print(f"{r['path']}  invalid  failure  ({r['invalid_reason']})")
        else:
            print(f"{r['path']}  {r['probability']:.4f}  {'success' if r['success'] else 'failure'}")
    return 1 if any(r.get("error") for r in rows) else 0


def calibrate_command(args) -> int:
    from reward_model_ros.core.checkpoint import CheckpointError
    from reward_model_ros.training.temperature import calibrate, describe

    try:
        cal = calibrate(args.checkpoint, args.data, args.split)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe(cal))
    t, r = cal["thresholds"]["threshold"], cal["thresholds"]["reward_threshold"]
    print(
        f"temperature {cal['temperature']:.4f} stored in {args.checkpoint / 'config.json'}; threshold "
        f"{t[0]:.4f} -> {t[1]:.4f}"
        + (f", recommended reward_threshold {r[0]:.4f} -> {r[1]:.4f}" if r else "")
        + " (the same decisions on the new probabilities)"
    )
    return 0


def quantize_command(args) -> int:
    from reward_model_ros.core.checkpoint import CheckpointError
    from reward_model_ros.core.quantize import QuantizeError
    from reward_model_ros.training.int8 import quantize_checkpoint

    try:
        out = quantize_checkpoint(args.checkpoint, args.data, args.split, args.frames, args.check)
    except (CheckpointError, QuantizeError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"int8 calibration: {out['frames']} inputs from {out['source']} stored in {args.checkpoint}")
    c = out.get("comparison")
    if c:
        print(
            f"int8 against fp32 on {args.data} {c['split']} ({c['frames']} inputs): max |dp| "
            f"{c['max_prob_diff']:.4f}, {c['decisions_changed']} decision(s) changed at threshold "
            f"{c['threshold']:.3f}; accuracy {c['accuracy_fp32']:.4f} -> {c['accuracy_int8']:.4f}, "
            f"AUROC {c['auroc_fp32']:.4f} -> {c['auroc_int8']:.4f}"
        )
    return 0


def rl_command(args) -> int:
    """`reward-model rl train|evaluate`: policies from the learned reward (simulation)."""
    import json
    import logging

    from reward_model_ros.core.overrides import OverrideError, apply_overrides

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from reward_model_sim.rl_train import (
            RLConfig,
            RLError,
            episode_picture,
            evaluate_checkpoint,
            train_rl,
        )
    except ImportError as exc:
        print(f"error: RL in simulation needs ManiSkill ({exc}); run `make setup`", file=sys.stderr)
        return 2
    if args.rl_command == "train":
        try:
            cfg = apply_overrides(RLConfig(), args.overrides, args.config)
            result = train_rl(cfg)
        except (OverrideError, RLError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        e = result["final_eval"] or {}
        print(
            f"done: {result['steps']} env steps in {result['train_s']:.0f} s of training; ground-truth "
            f"success {e.get('gt_success', float('nan')):.2f} on {e.get('episodes', 0)} fixed-seed episodes; "
            f"policy in {result['checkpoint']}"
        )
        return 0

    from reward_model_ros.rl.checkpoint import PolicyCheckpointError, load_policy

    ckpt = Path(args.checkpoint)
    run_cfg = ckpt.parent / "config.yaml"
    try:
        cfg = apply_overrides(RLConfig(), args.overrides, [run_cfg] if run_cfg.is_file() else [])
        result = evaluate_checkpoint(
            ckpt, cfg.env.task, args.episodes, args.seed, cfg.env.max_episode_steps, cfg.env.control_mode
        )
        picture = episode_picture(load_policy(ckpt), cfg, Path(args.out or ckpt.parent) / "episodes.png")
    except (OverrideError, PolicyCheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = {k: v for k, v in result.items() if k != "per_episode"}
    (Path(args.out or ckpt.parent) / "evaluation.json").write_text(
        json.dumps(result, indent=2, default=float)
    )
    print(
        f"{cfg.env.task}: ground-truth success {report['gt_success']:.3f} over {report['episodes']} episodes "
        f"(seeds from {args.seed}), mean length {report['length']:.1f}; picture {picture}"
    )
    return 0


def recover(bags: list[Path]) -> int:
    """Rebuild each bag whose recorder was killed, or whose chunks are damaged; 0 when every
    bag is readable afterwards, 1 when one could not be recovered (it is left untouched)."""
    from reward_model_ros.data.bags import BagError, check_bag, needs_recovery, recover_bag

    def one(bag: Path):
        if needs_recovery(bag):
            return recover_bag(bag)
        if not (bag / "metadata.yaml").is_file():
            raise BagError(f"{bag}: not a bag folder (no metadata.yaml, no .mcap file)")
        try:
            check = check_bag(bag)
        except BagError as exc:  # its summary or header is damaged
            print(f"{exc}: rebuilding it from its chunks")
            return recover_bag(bag, force=True)
        if not check.damaged:
            unchecked = (
                f", {check.chunks_without_crc} of them without a CRC" if check.chunks_without_crc else ""
            )
            print(f"{bag}: nothing to recover (finished; {check.chunks} chunks read correctly{unchecked})")
            return None
        for line in check.describe():
            print(line)
        return recover_bag(bag, force=True)

    code = 0
    for bag in bags:
        try:
            result = one(bag)
        except BagError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 1
            continue
        if result is None:
            continue
        detail = ", ".join(f"{t} {n}" for t, n in result.counts.items())
        print(f"{bag}: recovered {result.messages} messages ({detail})")
        for d in result.damage:
            print(f"  left out: {d.describe()}")
        for skipped in result.skipped_topics:
            print(f"  not recovered: {skipped}")
        print(f"  the file as it was is kept as {result.kept}: delete it once the recovered bag is checked")
    return code


def _sigterm_interrupts() -> None:
    """SIGTERM (a `kill`, a job scheduler, a container stop) ends a command like Ctrl-C: the
    node processes it started (the demo's bridge, recorder, reward_node) are stopped by their
    `finally` blocks and what they recorded is closed, instead of living on as orphans in their
    own process groups (seen: `pkill -f "reward-model demo"` left the bridge and recorder
    running)."""
    import signal
    import threading

    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reward-model", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the main job on the embedded default: the whole loop in simulation")
    demo.add_argument(
        "--episodes", type=int, default=40, help="training episodes: successes and failures, each"
    )
    demo.add_argument("--eval-episodes", type=int, default=10, help="held-out episodes, each outcome")
    demo.add_argument("--replay-episodes", type=int, default=1, help="episodes replayed through reward_node")
    demo.add_argument("--epochs", type=int, default=8, help="training epochs")
    demo.add_argument("--arch", default="resnet10", help="classifier backbone")
    demo.add_argument(
        "--episode-success",
        choices=("once", "end"),
        default="once",
        help="once (default): a cube pushed through the goal and out counts as a success, as the RL "
        "stage's ground truth (success_once) counts it; end: only the episode's outcome counts",
    )
    demo.add_argument(
        "--rl-minutes",
        type=float,
        default=12.0,
        help="stage 6: minutes of SAC on the learned reward (0 = skip)",
    )
    demo.add_argument(
        "--rl-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="stage 6: a `reward-model rl train` override on top of config/rl_pushcube.yaml (repeatable)",
    )
    demo.add_argument(
        "--task",
        default="PushCube-v1",
        choices=("PushCube-v1", "PickCube-v1"),
        help="PushCube-v1 (the default: short episodes, RL fits the CPU budget) or PickCube-v1 (no RL stage)",
    )
    demo.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a process to start")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (cleared first)")
    demo.add_argument("train_overrides", nargs="*", help="extra `train` overrides, key=value")

    chk = sub.add_parser(
        "check-interfaces", help="round-trip every reward_msgs type through interface_echo_node"
    )
    chk.add_argument(
        "--spawn-echo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start the echo node here in an isolated local DDS domain (default); "
        "--no-spawn-echo checks against one already running in your domain, "
        "e.g. on another machine",
    )
    chk.add_argument("--echo-node", default="interface_echo", help="name of the echo node")
    chk.add_argument("--timeout", type=float, default=20.0, help="seconds to wait per interface")

    proc = sub.add_parser(
        "process",
        help="build a training set from episode bags",
        description="Build a dataset from rosbag2 episode bags. Overrides: data.KEY=VALUE "
        "(see README, 'Dataset builder'); e.g. data.fail_success_ratio=2 data.val_fraction=0.2",
    )
    proc.add_argument(
        "inputs",
        nargs="+",
        help="bag folders, or folders holding bags (searched recursively), then key=value overrides",
    )
    proc.add_argument("--out", type=Path, required=True, help="output directory (must not hold a dataset)")
    proc.add_argument(
        "--config", type=Path, action="append", default=[], help="YAML file(s) with data.* keys"
    )

    tr = sub.add_parser(
        "train",
        help="train the success classifier on a dataset",
        description="Train on a dataset from `reward-model process`. Configuration: "
        "config/train_reward.yaml, "
        "then --config files, then key=value overrides (see README, 'Training').",
    )
    tr.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="dataset directory (manifest.jsonl); give it again to add datasets, e.g. an RL run's "
        "disagreements/ (frames the policy's reward got wrong, labelled by ground truth)",
    )
    tr.add_argument(
        "--config", type=Path, action="append", default=[], help="YAML file(s) on top of the defaults"
    )
    tr.add_argument(
        "--hard-negatives",
        type=Path,
        action="append",
        default=[],
        metavar="EVAL_DIR",
        help="an `evaluate` output (or a checkpoint evaluated into its eval/) on a mining set: its "
        "disagreeing frames are exported to <runner.output_dir>/hard_negatives and trained on too "
        "(weight: data.hard_negative_weight); repeatable",
    )
    tr.add_argument("overrides", nargs="*", help="key=value, e.g. runner.max_epochs=5 model.arch=resnet10")

    ev = sub.add_parser("evaluate", help="metrics, plots and the recommended threshold of a checkpoint")
    ev.add_argument("--checkpoint", type=Path, required=True)
    ev.add_argument("--data", type=Path, required=True, help="dataset directory (manifest.jsonl)")
    ev.add_argument("--split", default="val", help="val (default), train or all")
    ev.add_argument("--out", type=Path, default=None, help="report directory (default: <checkpoint>/eval)")
    ev.add_argument(
        "--debounce", type=int, default=None, help="debounce frames (default: sweep 1..8 and recommend one)"
    )
    ev.add_argument("--logs", type=Path, default=None, help="TensorBoard log dir for the loss curves")
    ev.add_argument(
        "--fusion",
        default=DEFAULT_FUSION,
        choices=FUSIONS,
        help=f"camera fusion, as reward_node's (default {DEFAULT_FUSION}: the mean of the cameras' logits)",
    )
    ev.add_argument(
        "--store",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the recommended threshold, debounce and fusion into the checkpoint (default), "
        "so that reward_node, predict and the RL reward use them",
    )
    ev.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="inference precision (default: auto, as reward_node: bf16 where native)",
    )
    ev.add_argument(
        "--optimize", choices=OPTIMIZE, default=None, help="inference graph (default: auto, as reward_node)"
    )
    ev.add_argument(
        "--allow-trained-episodes",
        action="store_true",
        help="evaluate even episodes the checkpoint trained on as hard negatives (refused by default: "
        "those are no held-out figures); nothing is stored then",
    )

    lomo = sub.add_parser(
        "lomo",
        help="leave-one-failure-mode-out: figures on failure modes the model never saw",
        description="For each failure mode of the training data: train with that mode's episodes left out "
        "(data.exclude_modes), choose threshold and debounce on the model's own validation split, score "
        "the held-out dataset's episodes of that mode plus its successes; the same for a model trained on "
        "every mode (the reference). Training settings as `train`: config/train_reward.yaml, --config, "
        "key=value overrides. Writes OUT/lomo.json and one run per model under OUT.",
    )
    lomo.add_argument(
        "--train-data", type=Path, action="append", required=True, help="training dataset(s), as train --data"
    )
    lomo.add_argument("--data", type=Path, required=True, help="held-out dataset (episodes of other seeds)")
    lomo.add_argument(
        "--split", default="all", help="split of the held-out dataset: all (default), val, train"
    )
    lomo.add_argument("--out", type=Path, required=True, help="output directory (runs and lomo.json)")
    lomo.add_argument(
        "--modes",
        type=lambda v: [m.strip() for m in v.split(",") if m.strip()],
        default=[],
        help="only these failure modes, comma-separated (default: every one)",
    )
    lomo.add_argument(
        "--delay-bar",
        type=int,
        default=5,
        help="a success counts as detected in time within this many frames",
    )
    lomo.add_argument(
        "--config", type=Path, action="append", default=[], help="YAML file(s) on top of the defaults"
    )
    lomo.add_argument("overrides", nargs="*", help="key=value training overrides, e.g. runner.max_epochs=5")

    hn = sub.add_parser(
        "hard-negatives",
        help="the frames an evaluation got wrong, as a dataset to train on",
        description="Read `evaluate`'s metrics.json and predictions.jsonl and write the frames where the "
        "thresholded probability and ground truth disagree as a dataset (process format, labelled with "
        "ground truth; summary.json names the episodes they came from). Mine on a mining set and report on "
        "a separate held-out set: evaluate refuses episodes a checkpoint was trained on this way.",
    )
    hn.add_argument("evaluation", type=Path, help="an `evaluate --out` directory, or a checkpoint with eval/")
    hn.add_argument(
        "--out", type=Path, required=True, help="output dataset directory (must not hold a dataset)"
    )
    hn.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold (default: the evaluation's recommended)",
    )
    hn.add_argument("--copy", action="store_true", help="copy the images instead of hard-linking them")

    pr = sub.add_parser("predict", help="score image files with a checkpoint")
    pr.add_argument("--checkpoint", type=Path, required=True)
    pr.add_argument("paths", nargs="+", type=Path, help="images or folders of images")
    pr.add_argument("--json", action="store_true", help="JSON lines instead of text")
    pr.add_argument(
        "--threshold", type=float, default=None, help="default: the checkpoint's recommended, else its own"
    )
    pr.add_argument("--camera", default=None, help="checkpoint camera of the files (default: its first)")
    pr.add_argument(
        "--sequence",
        action="store_true",
        help="the files, in name order, are one episode: debounce the decision as reward_node does",
    )
    pr.add_argument("--debounce", type=int, default=None, help="with --sequence; default: the checkpoint's")
    pr.add_argument(
        "--debug-save-dir",
        default="",
        help="write the model inputs as resnet_success|resnet_fail/{id:06d}_prob{p:.4f}.png "
        "(default: $DEBUG_IMAGE_SAVE_DIR, else off)",
    )

    cal = sub.add_parser(
        "calibrate",
        help="refit the checkpoint's temperature on a dataset split",
        description="Fit the temperature T of sigmoid(logit / T) on a dataset split and store it in the "
        "checkpoint's config.json, applied only if it lowers the expected calibration error there "
        "(see docs/data_and_training.md, 'Calibration'). `train` already fits it on its validation split.",
    )
    cal.add_argument("checkpoint", type=Path, help="checkpoint directory (e.g. runs/train/best_model)")
    cal.add_argument("--data", type=Path, required=True, help="dataset directory (manifest.jsonl)")
    cal.add_argument(
        "--split", default="val", help="val (default), train or all; never the checkpoint's training frames"
    )

    qz = sub.add_parser(
        "quantize",
        help="store int8 calibration frames in a checkpoint and compare int8 with fp32",
        description="Store a few of a dataset's model inputs in the checkpoint "
        "(int8_calibration.safetensors), from which model.precision=int8 is quantized at load, then "
        "score the validation split in fp32 and int8 and print the difference (see "
        "docs/data_and_training.md, 'int8'). `train` already stores them.",
    )
    qz.add_argument("checkpoint", type=Path, help="checkpoint directory (e.g. runs/train/best_model)")
    qz.add_argument("--data", type=Path, required=True, help="dataset directory (manifest.jsonl)")
    qz.add_argument("--split", default="train", help="where the calibration inputs come from (default train)")
    qz.add_argument("--frames", type=int, default=64, help="calibration inputs to store (default 64)")
    qz.add_argument("--check", default="val", help="split scored in fp32 and int8 ('' = skip; default val)")

    rl = sub.add_parser("rl", help="train and evaluate policies with the learned reward (simulation)")
    rl_sub = rl.add_subparsers(dest="rl_command", required=True)
    rl_train = rl_sub.add_parser(
        "train",
        help="train a policy (SAC/RLPD or PPO) on the learned reward",
        description="Configuration: --config files (e.g. config/rl_pushcube.yaml), then key=value overrides "
        "(reward.checkpoint_path=..., sac.total_steps=..., env.num_envs=...; see docs/rl.md)",
    )
    rl_train.add_argument("--config", type=Path, action="append", default=[], help="YAML file(s)")
    rl_train.add_argument("overrides", nargs="*", help="key=value")
    rl_eval = rl_sub.add_parser("evaluate", help="ground-truth success on fixed seeds, and a picture")
    rl_eval.add_argument("--checkpoint", type=Path, required=True, help="the run's policy/ directory")
    rl_eval.add_argument("--episodes", type=int, default=50)
    rl_eval.add_argument("--seed", type=int, default=1_000_000, help="first seed (the training's eval seeds)")
    rl_eval.add_argument("--out", type=Path, default=None, help="default: beside the checkpoint")
    rl_eval.add_argument("overrides", nargs="*", help="key=value on the run's config")

    rec = sub.add_parser(
        "recover",
        help="rebuild bags whose recorder was killed (no metadata.yaml) or whose chunks are damaged",
        description="Rebuild each bag from every chunk of its .mcap that reads correctly. The file as "
        "it was is kept beside the new one (<name>.mcap.original) until you delete it; running it "
        "again is safe. Exit code 1 when a bag could not be recovered (it is then left untouched).",
    )
    rec.add_argument("bags", nargs="+", type=Path, help="bag folders")

    # `process` takes paths and key=value overrides on both sides of --out
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "rl" and not any(e.startswith("-") for e in extra):
        args.overrides += extra
    elif (
        extra
        and args.command in ("process", "train", "demo", "lomo")
        and not any(e.startswith("-") for e in extra)
    ):
        if args.command == "process":
            args.inputs += extra
        elif args.command in ("train", "lomo"):
            args.overrides += extra
        else:
            args.train_overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _sigterm_interrupts()
    try:
        if args.command == "process":
            return process(args)
        if args.command == "train":
            return train_command(args)
        if args.command == "evaluate":
            return evaluate_command(args)
        if args.command == "predict":
            return predict_command(args)
        if args.command == "lomo":
            return lomo_command(args)
        if args.command == "hard-negatives":
            return hard_negatives_command(args)
        if args.command == "calibrate":
            return calibrate_command(args)
        if args.command == "quantize":
            return quantize_command(args)
        if args.command == "rl":
            return rl_command(args)
        if args.command == "recover":
            return recover(args.bags)
        if args.command == "demo":
            from reward_model_ros.demo import DemoConfig, run_demo

            return run_demo(
                DemoConfig(
                    out_dir=args.out,
                    episodes=args.episodes,
                    eval_episodes=args.eval_episodes,
                    replay_episodes=args.replay_episodes,
                    epochs=args.epochs,
                    arch=args.arch,
                    episode_success=args.episode_success,
                    task=args.task,
                    rl_minutes=args.rl_minutes,
                    rl_overrides=list(args.rl_set),
                    timeout=args.timeout,
                    train_overrides=list(args.train_overrides),
                )
            )
        if args.command == "check-interfaces":
            return check_interfaces(args.spawn_echo, args.echo_node, args.timeout)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if type(exc).__name__ == "ExternalShutdownException":  # rclpy shut down by a signal
            print("interrupted", file=sys.stderr)
            return 130
        raise
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
