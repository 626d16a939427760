"""Does the learned reward call a cube that slides through the goal a success? The exploit a
pushing policy finds first, measured on scripted episodes nobody trained on.

    python bench/transits.py --checkpoint runs/demo/train/best_model [--episodes 30]
        [--modes success push_past] [--first-seed 300000] [--params config/sim_pushcube.yaml]
        [--out runs/transits.json] [--grid 0.05 0.1 0.3 0.5 0.7 0.9]
        [--episode-success end|once] [--oracle]

Runs scripted episodes of each mode in ManiSkill, without ROS, with the sensor camera of the
bridge's parameter file (--params: task, camera pose, size and field of view, episode length),
and classifies each by the simulator's own per-step success flag (what the bridge publishes as
SuccessLabel):
- success: the episode ends with the cube in the goal;
- transit: the flag was on for some steps but the episode ends a failure: the cube crossed
  the goal (or the rim) and left it. The dataset labels every frame of a failed episode a
  failure, so these are failures the classifier must not call successes, yet single frames of
  them look like success;
- miss: a failure whose flag was never on.
Every frame (the reset frame included, as the bridge publishes it) is scored by reward_node's
pipeline (`core.pipeline.build_pipeline`: the checkpoint's precision, crops, frame checks and
camera fusion) and judged with reward_node's debounce. Prints, at the settings the node would
serve (`decision_settings`: a stored recommendation, else train's validation decision) and at
train's validation decision, how many transits are judged successful, how many successes are
detected and their largest delay; then, at the served threshold, the same for every debounce
of 1-8 frames (and at every --grid threshold), and how long the transits were. The same
arguments give the same episodes (a fresh simulator runs them in the same order; the same seed
run after other episodes can end elsewhere: push_past seed 300003 left its cube 3 cm outside
the rim when run first or after the success episodes, 30 cm after push_past 300000-300002).
`--episode-success once` judges as ManiSkill's success_once does (data.episode_success=once):
a transit is then a success to detect, from its first flagged frame, and only misses can be
judged successful wrongly. `--oracle` (PushCube) adds what a causal detector that knows the
cube's true position could do: the first frame where the flag has been on for d frames and the
cube moved less than v cm since the previous frame, per (v, d), and the cube's speed over the
first flagged frames of successes and transits.
The seeds (from --first-seed) lie outside the demo's training (0+), held-out (100000+) and
replay (200000+) seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from reward_model_ros.training.evaluate import DEBOUNCES


def bridge_params(path: Path) -> dict:
    """The maniskill_bridge section of a ROS parameter file."""
    doc = yaml.safe_load(path.read_text())
    for key, section in doc.items():
        if key.endswith("maniskill_bridge"):
            return section["ros__parameters"]
    raise SystemExit(f"{path}: no maniskill_bridge section")


def rim_cm(state: np.ndarray) -> float:
    """PushCube: how far the cube's centre lies outside the goal's rim, cm (negative: inside)."""
    from reward_model_sim.push import GOAL_RADIUS, positions

    _tcp, goal, cube = positions(state)
    return round(100 * (float(np.linalg.norm(cube[:2] - goal[:2])) - GOAL_RADIUS), 2)


def cube_xy(state: np.ndarray) -> list[float]:
    """PushCube: the cube's position on the table, m."""
    from reward_model_sim.push import positions

    return [float(v) for v in positions(state)[2][:2]]


def run_episodes(params: dict, modes: list[str], episodes: int, first_seed: int) -> list[dict]:
    """Per episode: mode, seed, the frames of every camera (reset frame first), the
    simulator's success flag per frame and, on PushCube, the cube's position per frame."""
    from reward_model_sim.env import ManiSkillEnv, SimConfig
    from reward_model_sim.scripted import control_mode, run_episode

    task = params["task"]
    cfg = SimConfig(
        task=task,
        camera_width=int(params.get("camera_width", 128)),
        camera_height=int(params.get("camera_height", 128)),
        camera_pose=list(params.get("camera_pose", [])),
        camera_fov=float(params.get("camera_fov", 0.0)),
        side_camera_pose=list(params.get("side_camera_pose", [])),
        side_camera_fov=float(params.get("side_camera_fov", 0.0)),
        max_episode_steps=int(params.get("max_episode_steps", 100)),
        show_goal=bool(params.get("show_goal", True)),
        control_mode=control_mode(task),
    )
    env = ManiSkillEnv(cfg)
    hold = int(params.get("success_hold_steps", 20))
    out = []
    try:
        for mode in modes:
            for seed in range(first_seed, first_seed + episodes):
                frames: list[dict[str, np.ndarray]] = []
                flags: list[bool] = []
                cube: list[list[float]] = []
                last: dict = {}

                def keep(o, frames=frames, flags=flags, cube=cube, last=last):
                    frames.append(o.frames)
                    flags.append(o.success)
                    last["state"] = o.state
                    if task == "PushCube-v1" and o.state is not None:
                        cube.append(cube_xy(o.state))

                def on_reset(obs, info, keep=keep):
                    o = env.after_reset(obs, info)
                    env.step_count = 0
                    keep(o)

                def on_step(obs, info, _action, keep=keep):
                    env.step_count += 1
                    keep(env.observe(obs, info))

                final = run_episode(env.env, task, mode, seed, on_step, hold, on_reset)
                kind = "success" if final else ("transit" if any(flags) else "miss")
                run = {"mode": mode, "seed": seed, "kind": kind, "frames": frames, "flags": flags}
                if len(cube) == len(flags):
                    run["cube_xy"] = cube
                if task == "PushCube-v1" and last.get("state") is not None:
                    run["rest_cm_outside_rim"] = rim_cm(last["state"])
                out.append(run)
    finally:
        env.close()
    return out


def score(ckpt, runs: list[dict]) -> list[np.ndarray]:
    """Fused probability per frame of every episode, through reward_node's pipeline."""
    from reward_model_ros.core.pipeline import FrameSet, build_pipeline

    sim_cameras = list(runs[0]["frames"][0])
    names = list(ckpt.config.camera_names) if len(ckpt.config.camera_names) == len(sim_cameras) else []
    pipeline, _settings, served = build_pipeline(ckpt, sim_cameras, names)
    pipeline.scorer.warm_up()
    out = []
    for run in runs:
        history = pipeline.history()  # model.frame_stack: each run is one episode
        sets = [
            FrameSet(frames, served, past=history.push(frames, served))
            for frames in ([f[c] for c in sim_cameras] for f in run["frames"])
        ]
        out.append(np.array([s.probability if s.valid else 0.0 for s in pipeline.score(sets)]))
    return out


def judge(
    runs: list[dict], probs: list[np.ndarray], threshold: float, debounce: int, once: bool = False
) -> dict:
    """Transits judged successful, successes detected and their delay (from the first flagged
    frame). `once`: judge by ManiSkill's success_once (data.episode_success=once): a transit is
    then a success to be detected, and only misses can be fooled."""
    from reward_model_ros.core.reward import first_success

    fooled, detected, delays, misses_fooled, missed = [], 0, [], [], []
    count = {"success": 0, "transit": 0, "miss": 0}
    for run, p in zip(runs, probs, strict=True):
        hit = first_success(p, threshold, debounce)
        kind = "success" if once and run["kind"] == "transit" else run["kind"]
        count[kind] += 1
        rest = run.get("rest_cm_outside_rim")
        name = f"{run['mode']}:{run['seed']}" + ("" if rest is None else f" (rests {rest} cm outside)")
        if kind == "transit" and hit is not None:
            fooled.append(name)
        if kind == "miss" and hit is not None:
            misses_fooled.append(name)
        if kind == "success" and hit is not None:
            detected += 1
            delays.append(hit - run["flags"].index(True))
        if kind == "success" and hit is None:
            missed.append(f"{name}, {sum(run['flags'])} frames flagged")
    return {
        "threshold": threshold,
        "debounce": debounce,
        "transits": count["transit"],
        "transits_judged_successful": len(fooled),
        "fooled_by": fooled,
        "misses": count["miss"],
        "misses_judged_successful": len(misses_fooled),
        "misses_fooled_by": misses_fooled,
        "successes": count["success"],
        "successes_detected": detected,
        "max_delay_frames": max(delays) if delays else None,
        "within_5_frames": sum(d <= 5 for d in delays),
        "successes_missed": missed,
    }


def cube_speeds(run: dict) -> np.ndarray:
    """PushCube: how far the cube moved since the previous frame, cm per frame (0 at the reset)."""
    xy = np.asarray(run["cube_xy"])
    return np.concatenate([[0.0], 100 * np.linalg.norm(np.diff(xy, axis=0), axis=1)])


def oracle(runs: list[dict], speeds: list[float], frames: list[int]) -> dict:
    """What a detector that knows the simulator's state could do, causally: it calls success at
    the first frame where the success flag has been on for `d` frames in a row and the cube
    moved less than `v` cm since the previous frame. Per (v, d): transits called successful and
    successes detected within 5 frames of their first flagged frame (a camera-based reward sees
    less than this state). Also the cube's speed over the first 6 flagged frames, by kind."""
    kept = [r for r in runs if "cube_xy" in r and r["kind"] in ("success", "transit")]
    moved = [cube_speeds(r) for r in kept]
    table = []
    for v in speeds:
        for d in frames:
            fooled = within = 0
            for r, sp in zip(kept, moved, strict=True):
                flags = np.asarray(r["flags"])
                run, hit = 0, None
                for t, (f, s) in enumerate(zip(flags, sp, strict=True)):
                    run = run + 1 if f else 0
                    if run >= d and s < v:
                        hit = t
                        break
                if r["kind"] == "transit":
                    fooled += hit is not None
                else:
                    within += hit is not None and hit - int(np.argmax(flags)) <= 5
            table.append(
                {"max_speed_cm": v, "frames_on": d, "transits_called": fooled, "successes_within_5": within}
            )
    entry = {}
    for kind in ("success", "transit"):
        rows = []
        for r, sp in zip(kept, moved, strict=True):
            if r["kind"] == kind:
                e = int(np.argmax(r["flags"]))
                rows.append(sp[e : e + 6].tolist() + [np.nan] * max(0, e + 6 - len(r["flags"])))
        if rows:
            entry[kind] = {
                "episodes": len(rows),
                "median_speed_cm_per_frame_from_entry": np.round(np.nanmedian(rows, axis=0), 2).tolist(),
                "min_speed_cm_per_frame_from_entry": np.round(np.nanmin(rows, axis=0), 2).tolist(),
                "max_speed_cm_per_frame_from_entry": np.round(np.nanmax(rows, axis=0), 2).tolist(),
            }
    return {
        "successes": sum(r["kind"] == "success" for r in kept),
        "transits": sum(r["kind"] == "transit" for r in kept),
        "speed_from_entry": entry,
        "rules": table,
    }


def longest_run(p: np.ndarray, threshold: float) -> int:
    best = run = 0
    for above in p >= threshold:
        run = run + 1 if above else 0
        best = max(best, run)
    return best


def report_for(path: Path, ckpt, runs: list[dict], args, sim_s: float) -> dict:
    """One checkpoint's figures on the episodes, printed and returned."""
    from reward_model_ros.core.checkpoint import decision_settings

    probs = score(ckpt, runs)
    served = decision_settings(ckpt)
    settings = {
        "served": (served.reward_threshold, served.debounce_frames, served.source),
        "validation": (ckpt.threshold, max(1, ckpt.debounce), "train's validation decision"),
    }
    once = args.episode_success == "once"
    report: dict = {
        "checkpoint": str(path),
        "modes": args.modes,
        "episode_success": args.episode_success,
        "simulation_s": round(sim_s, 1),
    }
    for name, (t, d, why) in settings.items():
        report[name] = {**judge(runs, probs, float(t), int(d), once), "source": why}
    t = float(settings["served"][0])
    report["per_debounce_at_served_threshold"] = [judge(runs, probs, t, d, once) for d in DEBOUNCES]
    transits = [(r, p) for r, p in zip(runs, probs, strict=True) if r["kind"] == "transit"]
    report["transit_frames_in_goal"] = sorted(sum(r["flags"]) for r, _ in transits)
    report["transit_longest_run_above_threshold"] = sorted(longest_run(p, t) for _, p in transits)
    print(json.dumps({k: v for k, v in report.items() if k != "per_debounce_at_served_threshold"}, indent=1))
    print(
        "\n| debounce | transits judged successful | misses judged successful | successes detected "
        "| within 5 frames | max delay |"
    )
    print("|---|---|---|---|---|---|")
    for r in report["per_debounce_at_served_threshold"]:
        print(
            f"| {r['debounce']} | {r['transits_judged_successful']} / {r['transits']} | "
            f"{r['misses_judged_successful']} / {r['misses']} | "
            f"{r['successes_detected']} / {r['successes']} | {r['within_5_frames']} | "
            f"{r['max_delay_frames']} |"
        )
    if args.grid:
        report["grid"] = [judge(runs, probs, float(g), d, once) for g in args.grid for d in DEBOUNCES]
        print(
            "\n| threshold | debounce | passes judged successful | misses judged successful "
            "| successes detected | max delay |"
        )
        print("|---|---|---|---|---|---|")
        for r in report["grid"]:
            print(
                f"| {r['threshold']:.2f} | {r['debounce']} | {r['transits_judged_successful']} | "
                f"{r['misses_judged_successful']} | {r['successes_detected']} / {r['successes']} | "
                f"{r['max_delay_frames']} |"
            )
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--checkpoint",
        type=Path,
        nargs="+",
        required=True,
        help="one or more: all judged on the same episodes",
    )
    ap.add_argument("--params", type=Path, default=Path("config/sim_pushcube.yaml"))
    ap.add_argument("--modes", nargs="+", default=["success", "push_past"])
    ap.add_argument("--episodes", type=int, default=30, help="per mode")
    ap.add_argument("--first-seed", type=int, default=300000)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--grid",
        type=float,
        nargs="*",
        default=None,
        help="also judge every debounce at these thresholds (e.g. 0.05 0.1 0.3 0.5 0.7 0.9)",
    )
    ap.add_argument(
        "--episode-success",
        choices=("end", "once"),
        default="end",
        help="end: a transit is a failure to reject (the dataset's default); once: a success to "
        "detect, as ManiSkill's success_once and data.episode_success=once count it",
    )
    ap.add_argument(
        "--oracle",
        action="store_true",
        help="PushCube: also what a causal detector that knows the cube's true position could do",
    )
    args = ap.parse_args()

    from reward_model_ros.core.checkpoint import load_checkpoint

    ckpts = [load_checkpoint(c) for c in args.checkpoint]  # fail now, not after the episodes
    t0 = time.perf_counter()
    runs = run_episodes(bridge_params(args.params), args.modes, args.episodes, args.first_seed)
    sim_s = time.perf_counter() - t0
    reports = [
        report_for(path, ckpt, runs, args, sim_s) for path, ckpt in zip(args.checkpoint, ckpts, strict=True)
    ]
    report = reports[0] if len(reports) == 1 else {"checkpoints": reports}
    if args.oracle:
        report["oracle"] = oracle(runs, [0.25, 0.5, 1.0, 2.0, 3.0, 4.0, np.inf], DEBOUNCES)
        o = report["oracle"]
        print(f"\noracle on the true cube position ({o['successes']} successes, {o['transits']} transits):")
        print(json.dumps(o["speed_from_entry"], indent=1))
        print("| cube moved less than (cm/frame) | flag on for | transits called | successes within 5 |")
        print("|---|---|---|---|")
        for r in o["rules"]:
            print(
                f"| {r['max_speed_cm']} | {r['frames_on']} | {r['transits_called']} | "
                f"{r['successes_within_5']} |"
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
