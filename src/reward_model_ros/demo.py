"""The main job on the embedded default (`make demo`, `reward-model demo`): the whole loop in
simulation, through the ROS graph, on the CPU.

1. collect: maniskill_bridge's scripted driver plays labelled PickCube episodes (planned
   successes, six kinds of failure) and recorder_node writes one bag per episode, for
   training (seeds from 0) and, separately, for held-out evaluation (seeds from 100000,
   never used in training);
2. process: `reward-model process` turns each set of bags into a dataset;
3. train: `reward-model train` (validation on a fifth of the training episodes);
4. evaluate: `reward-model evaluate` on the held-out episodes (metrics.json, plots);
5. replay: fresh episodes (seeds from 200000) through reward_node with the trained
   checkpoint; the probability is plotted against the ground truth over time.

Everything lands under `runs/demo/`; every process runs in a leased ROS domain with DDS
kept on this machine.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from reward_msgs.msg import EpisodeEvent, SuccessLabel

from reward_model_ros.paths import share_dir
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.conversions import stamp_to_nanoseconds
from reward_model_ros.ros.processes import NodeProcess, ros_args
from reward_model_ros.ros.reward_listener import LocalSession, Received, RewardListener

TRAIN_SEED, EVAL_SEED, REPLAY_SEED = 0, 100_000, 200_000
TARGETS = {"frame_accuracy": 0.97, "auroc": 0.99, "false_positive_episodes": 0}


@dataclass
class DemoConfig:
    out_dir: Path = Path("runs/demo")
    """everything goes here (cleared first)"""
    task: str = "PushCube-v1"
    """PushCube-v1 (goal visible; its episodes are short enough for RL on two cores) or PickCube-v1"""
    episodes: int = 40
    """training: successful and failed episodes to record, each"""
    eval_episodes: int = 10
    """held-out evaluation: successful and failed episodes, each"""
    replay_episodes: int = 1
    """replayed through reward_node: successful and failed episodes, each"""
    epochs: int = 8
    """training epochs"""
    arch: str = "resnet10"
    """classifier backbone"""
    episode_success: str = "once"
    """process's data.episode_success: once (a cube that crossed the goal and left it counts as
    a success, its frames labelled by the simulator's flag, as the RL stage's ground truth,
    ManiSkill's success_once, counts it) or end (every frame of an episode that ended a
    failure is a failure)"""
    train_overrides: list[str] = field(default_factory=list)
    """extra `reward-model train` key=value overrides"""
    timeout: float = 120.0
    """seconds to wait for a process to start; episodes get 30 s each on top"""
    rl_minutes: float = 12.0
    """stage 6: minutes of SAC training on the learned reward (PushCube; 0 = skip)"""
    rl_overrides: list[str] = field(default_factory=list)
    """extra `reward-model rl train` key=value overrides"""


def _qos():
    return qos_profiles.reliable(1000)


STAGES = 6


def _stage(n: int, title: str) -> float:
    print(f"\n== {n}/{STAGES} {title}", flush=True)
    return time.monotonic()


def collect_config(task: str) -> Path:
    """config/collect_<task>.yaml: the bridge's scripted driver and the recorder for a task."""
    return share_dir() / "config" / f"collect_{task.split('-')[0].lower()}.yaml"


def collect(cfg: DemoConfig, save_dir: Path, n: int, seed: int, what: str) -> float:
    """Record n successful and n failed scripted episodes; returns the seconds it took."""
    config = collect_config(cfg.task)
    targets = {"target_success": n, "target_failure": n}
    start = time.monotonic()
    done: list[EpisodeEvent] = []

    def on_event(msg: EpisodeEvent) -> None:
        if msg.event == EpisodeEvent.START:
            return
        done.append(msg)
        label = "success" if msg.label == EpisodeEvent.LABEL_SUCCESS else "failure"
        print(
            f"  [{what} {len(done):>3}] {msg.mode:<13} seed {msg.seed:>6}: {label:<7} {msg.step:>3} steps "
            f"({time.monotonic() - start:5.0f} s)",
            flush=True,
        )

    with LocalSession(f"demo_collect_{what}") as session:
        session.node.create_subscription(EpisodeEvent, "episode/event", on_event, _qos())
        recorder = NodeProcess(
            "recorder_node",
            ros_args({"save_dir": str(save_dir), **targets}, params_file=config),
            env=session.env,
            log_path=cfg.out_dir / "logs" / f"recorder_{what}.log",
        )
        bridge = NodeProcess(
            "maniskill_bridge",
            ros_args({**targets, "seed": seed}, params_file=config),
            env=session.env,
            log_path=cfg.out_dir / "logs" / f"bridge_{what}.log",
        )
        try:
            limit = cfg.timeout + 30.0 * 2 * n * 2  # failures the driver discards count too
            session.spin_until(lambda: not recorder.alive() or not bridge.alive(), limit)
            session.spin_until(lambda: not recorder.alive(), 30.0)
        finally:
            bridge_code = bridge.stop()
            code = recorder.stop()
    if bridge_code not in (0, None):
        raise RuntimeError(f"the bridge exited with code {bridge_code}:\n{bridge.output()[-3000:]}")
    if code != 0:
        raise RuntimeError(
            f"recording {what} episodes failed (recorder exit {code}):\n{recorder.output()[-3000:]}"
        )
    return time.monotonic() - start


def replay(cfg: DemoConfig, checkpoint: Path) -> dict:
    """Fresh episodes through reward_node given only the trained checkpoint: it takes the
    threshold and debounce `evaluate` stored in it. Per-episode ground truth and
    probabilities, plotted over time."""
    config = share_dir() / "config" / f"sim_{cfg.task.split('-')[0].lower()}.yaml"
    events: list[EpisodeEvent] = []
    labels: list[SuccessLabel] = []
    with RewardListener("demo_replay") as listener:
        listener.node.create_subscription(EpisodeEvent, "episode/event", events.append, _qos())
        listener.node.create_subscription(SuccessLabel, "success_label", labels.append, _qos())
        reward = NodeProcess(
            "reward_node",
            ros_args(
                {"model.checkpoint_path": str(checkpoint)},
                params_file=config,
            ),
            env=listener.env,
            log_path=cfg.out_dir / "logs" / "replay_reward_node.log",
        )
        bridge = None
        try:
            if (
                not listener.spin_until(
                    lambda: listener.node.count_subscribers("/image_raw") > 0 or not reward.alive(),
                    cfg.timeout,
                )
                or not reward.alive()
            ):
                raise RuntimeError("reward_node did not start:\n" + reward.output()[-3000:])
            n = cfg.replay_episodes
            bridge = NodeProcess(
                "maniskill_bridge",
                ros_args(
                    {
                        "driver": "scripted",
                        "target_success": n,
                        "target_failure": n,
                        "seed": REPLAY_SEED,
                        "real_time": True,  # 20 Hz, as a robot would send frames
                        "wait_for_subscribers": ["image_raw"],
                    },
                    params_file=config,
                ),
                env=listener.env,
                log_path=cfg.out_dir / "logs" / "replay_bridge.log",
            )
            listener.spin_until(lambda: not bridge.alive(), cfg.timeout + 60.0 * 2 * n)
            listener.spin_until(lambda: False, 1.0)
        finally:
            bridge_code = bridge.stop() if bridge is not None else None
            reward.stop()
    if not any(e.event != EpisodeEvent.START for e in events):
        raise RuntimeError(
            f"replay: no episode ended (the bridge exited with code {bridge_code}; log "
            f"{cfg.out_dir / 'logs' / 'replay_bridge.log'}):\n{bridge.output()[-3000:]}"
        )
    report = _replay_report(cfg, events, labels, listener.received)
    decision = [line for line in reward.output().splitlines() if "decision: " in line]
    report["decision"] = decision[0].split("decision: ", 1)[1] if decision else ""
    report["threshold_served"] = listener.received[0].msg.threshold if listener.received else None
    return report


def _replay_report(cfg: DemoConfig, events, labels, rewards: list[Received]) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts = {e.episode_index: e for e in events if e.event == EpisodeEvent.START}
    ends = [e for e in events if e.event != EpisodeEvent.START and e.episode_index in starts]
    fig, axes = plt.subplots(len(ends), 1, figsize=(9, 2.6 * max(1, len(ends))), squeeze=False)
    out = []
    for ax, end in zip(axes[:, 0], ends, strict=True):
        start = starts[end.episode_index]
        t0 = stamp_to_nanoseconds(start.header.stamp)
        t1 = stamp_to_nanoseconds(end.header.stamp)
        truth = sorted(
            (stamp_to_nanoseconds(m.header.stamp), m.success)
            for m in labels
            if m.episode_index == end.episode_index
        )
        probs = sorted(
            (stamp_to_nanoseconds(r.msg.header.stamp), r.msg.probability, r.msg.success)
            for r in rewards
            if t0 <= stamp_to_nanoseconds(r.msg.header.stamp) <= t1
        )
        threshold = rewards[0].msg.threshold if rewards else 0.5
        if truth:
            ax.step(
                [(t - t0) / 1e9 for t, _ in truth],
                [float(s) for _, s in truth],
                where="post",
                label="ground truth",
            )
        if probs:
            ax.plot(
                [(t - t0) / 1e9 for t, _, _ in probs],
                [p for _, p, _ in probs],
                label="reward_node probability",
            )
        ax.axhline(threshold, color="k", ls=":", lw=0.8, label=f"threshold {threshold:.2f}")
        # as the datasets judge it: with episode_success once a pass (flag on, then lost) is a success
        passed = cfg.episode_success == "once" and any(ok for _, ok in truth)
        truth_label = "success" if end.label == EpisodeEvent.LABEL_SUCCESS or passed else "failure"
        ax.set_title(
            f"episode {end.episode_index}: {start.mode}, seed {start.seed}, ground truth {truth_label}",
            fontsize=9,
        )
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("p(success)")
        first_true = next((t for t, s in truth if s), None)
        first_pred = next((t for t, _, s in probs if s), None)
        out.append(
            {
                "episode": int(end.episode_index),
                "mode": start.mode,
                "seed": int(start.seed),
                "truth": truth_label,
                "frames_scored": len(probs),
                "frames": len(truth),
                "mean_probability": float(np.mean([p for _, p, _ in probs])) if probs else None,
                "judged_success": first_pred is not None,
                "delay_s": (first_pred - first_true) / 1e9
                if first_true is not None and first_pred is not None
                else None,
            }
        )
    axes[-1, 0].set_xlabel("seconds since the episode started")
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(cfg.out_dir / "replay.png", dpi=100)
    plt.close(fig)
    return {"episodes": out, "plot": str(cfg.out_dir / "replay.png")}


def rl_stage(cfg: DemoConfig, checkpoint: Path) -> dict:
    """A policy learns the task from the demo's own learned reward; ground truth only evaluates."""
    from reward_model_ros.core.overrides import apply_overrides
    from reward_model_sim.rl_train import RLConfig, train_rl

    rcfg = apply_overrides(
        RLConfig(),
        [
            f"reward.checkpoint_path={checkpoint}",
            f"sac.time_budget_s={cfg.rl_minutes * 60}",
            "sac.progress=false",
            f"output_dir={cfg.out_dir / 'rl'}",
            *cfg.rl_overrides,
        ],
        [share_dir() / "config" / "rl_pushcube.yaml"],
    )
    result = train_rl(rcfg, log_fn=lambda m: print(f"  {m}", flush=True))
    for point in result["eval_curve"]:
        print(
            f"  step {point['step']:>6} ({point.get('train_s', 0) / 60:4.1f} min): ground-truth success "
            f"{point['gt_success']:.2f} on {int(point.get('episodes', 0))} fixed seeds",
            flush=True,
        )
    result["plot"] = str(_rl_plot(cfg.out_dir / "rl", result))
    return result


def _rl_plot(run: Path, result: dict) -> Path:
    """Ground-truth success on the fixed evaluation seeds, and on the training episodes beside
    what the model judged there, against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reward_model_ros.training.evaluate import _scalars

    s = _scalars(run / "logs")
    fig, ax = plt.subplots(figsize=(8, 4))
    curve = result["eval_curve"]
    if curve:
        ax.plot(
            [c["step"] for c in curve],
            [c["gt_success"] for c in curve],
            "o-",
            label="ground truth, 50 fixed eval seeds",
        )
    for tag, label in (
        ("reward/model_success_rate", "model-judged success (training episodes)"),
        ("reward/gt_success_rate", "ground truth (same training episodes)"),
    ):
        if tag in s:
            ax.plot(*zip(*s[tag], strict=True), label=label, alpha=0.8)
    ax.set_xlabel("env steps"), ax.set_ylabel("success rate"), ax.set_ylim(-0.05, 1.05)
    ax.set_title(
        f"SAC on the learned reward: {result['steps']} steps, {result['train_s'] / 60:.1f} min of training"
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = run / "success.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_demo(cfg: DemoConfig) -> int:
    from reward_model_ros.core.overrides import apply_overrides
    from reward_model_ros.data.dataset import DataConfig, build_dataset
    from reward_model_ros.training.evaluate import evaluate
    from reward_model_ros.training.train import TrainConfig, train

    out = cfg.out_dir
    if out.exists():
        shutil.rmtree(out)
    (out / "logs").mkdir(parents=True)
    timings: dict[str, float] = {}
    begin = time.monotonic()

    t = _stage(
        1,
        f"collect: {cfg.episodes}+{cfg.episodes} training and {cfg.eval_episodes}+{cfg.eval_episodes} "
        f"held-out {cfg.task} episodes (bridge -> recorder, through ROS)",
    )
    timings["collect_train_s"] = collect(cfg, out / "bags" / "train", cfg.episodes, TRAIN_SEED, "train")
    timings["collect_eval_s"] = collect(cfg, out / "bags" / "eval", cfg.eval_episodes, EVAL_SEED, "eval")
    timings["collect_s"] = time.monotonic() - t

    t = _stage(2, "process: bags -> datasets")
    train_summary = build_dataset(
        [out / "bags" / "train"],
        out / "dataset",
        DataConfig(val_fraction=0.2, seed=0, episode_success=cfg.episode_success),
        log=print,
    )
    eval_summary = build_dataset(
        [out / "bags" / "eval"],
        out / "dataset_eval",
        DataConfig(val_fraction=0.0, episode_success=cfg.episode_success),
        log=print,
    )
    for name, s in (("training", train_summary), ("held-out", eval_summary)):
        c = s["splits"]
        print(
            f"  {name}: {s['samples']} samples; train {c['train']['frames_positive']} success / "
            f"{c['train']['frames_negative']} failure frames, val {c['val']['frames_positive']} / "
            f"{c['val']['frames_negative']}; passes through the goal (train/val, counted as "
            f"{'successes' if cfg.episode_success == 'once' else 'failures'}): "
            f"{c['train']['episodes_transient']}/{c['val']['episodes_transient']}"
        )
    timings["process_s"] = time.monotonic() - t

    tcfg = apply_overrides(
        TrainConfig(),
        [
            f"model.arch={cfg.arch}",
            f"runner.max_epochs={cfg.epochs}",
            f"runner.output_dir={out / 'train'}",
            f"runner.logger.log_path={out / 'train' / 'logs'}",
            "runner.save_interval=0",
            *cfg.train_overrides,
        ],
        [share_dir() / "config" / "train_reward.yaml"],
    )
    t = _stage(3, f"train: {tcfg.model.arch}, {tcfg.runner.max_epochs} epochs")
    result = train(tcfg, out / "dataset")
    timings["train_s"] = time.monotonic() - t
    best = out / "train" / "best_model"

    t = _stage(4, "evaluate on the held-out episodes (seeds never used in training)")
    report = evaluate(best, out / "dataset_eval", split="all", out=out / "eval")
    timings["evaluate_s"] = time.monotonic() - t
    # the targets are judged at the settings the checkpoint came with (threshold and debounce
    # chosen on the validation episodes); the recommended ones are chosen on these very frames,
    # so their figures are shown, not judged
    f, e, r = report["frames"], report["episodes"], report["episodes_at_recommended"]
    at_rec = report["frames_at_recommended"]["accuracy"]
    print(
        f"  at the checkpoint's validation settings (threshold {report['threshold']:.2f}, debounce "
        f"{e['debounce_frames']}): frame accuracy {f['accuracy']:.4f}, AUROC {f['auroc']:.4f}, "
        f"ECE {report['calibration']['ece']:.4f}; "
        f"{e['false_positive_episodes']}/{e['failure_episodes']} failure episodes judged successful "
        f"({e['transient_judged_successful']}/{e['transient_failure_episodes']} passes), "
        f"{e['detected_success_episodes']}/{e['success_episodes']} successes detected, delay mean "
        f"{e['mean_delay_frames']:.1f} / max {e['max_delay_frames']} frames"
    )
    fe = report["frame_errors"]
    print(
        f"  {fe['errors']} frame errors: {fe['at_a_label_change']} on either side of a ground-truth label "
        f"change, {fe['within_2_frames_of_one']} within 2 frames of one; accuracy "
        f"{fe['accuracy_away_from_changes']:.4f} on the {fe['frames_away_from_changes']} frames further away"
    )
    print(
        f"  recommended on these frames (stored for the replay): reward_threshold "
        f"{report['recommended_threshold']:.2f}, debounce_frames {report['debounce']}: frame accuracy "
        f"{at_rec:.4f}, {r['false_positive_episodes']}/{r['failure_episodes']} failure episodes judged "
        f"successful, {r['detected_success_episodes']}/{r['success_episodes']} successes detected"
    )

    t = _stage(
        5, "replay: fresh episodes through reward_node with the checkpoint and the recommended settings"
    )
    rep = replay(cfg, best)
    timings["replay_s"] = time.monotonic() - t
    print(f"  reward_node, given only the checkpoint, decided with: {rep['decision']}")
    for r in rep["episodes"]:
        mean = f"{r['mean_probability']:.3f}" if r["mean_probability"] is not None else "-"
        print(
            f"  episode {r['episode']} {r['mode']:<13} seed {r['seed']}: truth {r['truth']:<7} "
            f"mean p {mean}, judged {'success' if r['judged_success'] else 'failure'}, "
            f"{r['frames_scored']}/{r['frames']} frames scored"
        )
    rl = None
    if cfg.rl_minutes > 0 and cfg.task == "PushCube-v1":
        t = _stage(6, f"RL: SAC learns {cfg.task} from this demo's learned reward ({cfg.rl_minutes:g} min)")
        rl = rl_stage(cfg, best)
        timings["rl_s"] = time.monotonic() - t
    else:
        print(f"\n== 6/{STAGES} RL: skipped (rl_minutes={cfg.rl_minutes:g}; RL runs on PushCube-v1 only)")
    timings["total_s"] = time.monotonic() - begin

    measured = {
        "frame_accuracy": f["accuracy"],
        "frame_accuracy_at_recommended": at_rec,
        "auroc": f["auroc"],
        "ece": report["calibration"]["ece"],
        "frame_errors": report["frame_errors"],
        "false_positive_episodes": e["false_positive_episodes"],
        "detected_success_episodes": e["detected_success_episodes"],
        "max_delay_frames": e["max_delay_frames"],
        "threshold": report["threshold"],
        "debounce_frames": e["debounce_frames"],
    }
    met = {
        "frame_accuracy": measured["frame_accuracy"] >= TARGETS["frame_accuracy"],
        "auroc": measured["auroc"] >= TARGETS["auroc"],
        "false_positive_episodes": measured["false_positive_episodes"] <= TARGETS["false_positive_episodes"],
    }
    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items()},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "datasets": {"train": train_summary["splits"], "eval": eval_summary["splits"]},
        "training": {"steps": result["state"]["step"], "best": result["state"]["best"]},
        "evaluation": measured,
        "recommended_threshold": report["recommended_threshold"],
        "recommended_debounce_frames": report["debounce"],
        "targets": TARGETS,
        "targets_met": met,
        "replay": rep["episodes"],
        "replay_decision": rep["decision"],
        "replay_threshold_served": rep["threshold_served"],
        "rl": rl,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"\n== summary ({timings['total_s'] / 60:.1f} min; everything in {out}/)")
    for k in TARGETS:
        v = measured[k]
        print(
            f"  {k:<24} {v:.4f}" if isinstance(v, float) else f"  {k:<24} {v}",
            f"  target {'>=' if k != 'false_positive_episodes' else '<='} {TARGETS[k]}: "
            f"{'met' if met[k] else 'MISSED'}",
        )
    print(
        f"  report: {out / 'eval'}/ (metrics.json, roc_pr.png, reliability.png, confusion_matrix.png, "
        f"worst_errors.png, loss_curves.png); replay plot: {rep['plot']}"
    )
    if rl is not None:
        e = rl["final_eval"] or {}
        print(
            f"  RL: {rl['steps']} env steps in {rl['train_s'] / 60:.1f} min of training: ground truth "
            f"{e.get('gt_success', float('nan')):.2f} on {e.get('episodes', 0)} fixed seeds; {rl['plot']}"
        )
    complete = len(rep["episodes"]) == 2 * cfg.replay_episodes and all(
        r["frames_scored"] for r in rep["episodes"]
    )
    return 0 if complete else 1
