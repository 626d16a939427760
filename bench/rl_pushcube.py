"""RL on PushCube-v1 on the CPU: the learned reward against the oracle and behaviour cloning.

Three conditions, the same seeds, demonstrations and budget (config/rl_pushcube.yaml):
  (a) SAC (RLPD form) on the learned classifier reward;
  (b) SAC on the oracle: the simulator's ground-truth sparse success as the reward;
  (c) no RL: behaviour cloning on the same 20 demonstrations.
Each is evaluated on 50 fixed seeds by ground truth (success within the time limit) during
training (against env steps and training wall-clock). Also the cost of the learned reward:
env steps per second (random actions) with the classifier, with the camera rendered but no
classifier (the oracle), and without a camera at all (state only).

    python bench/rl_pushcube.py --checkpoint runs/demo/train/best_model [--budget 2700] [--out runs/bench_rl]
    python bench/rl_pushcube.py --checkpoint ... --only learned --only oracle --parallel

`--parallel` runs (a) and (b) at the same time, one thread each: the two share the machine
the same way for the whole budget, so their ratio is fair on a noisy machine, and each has
half of a 2-core machine (a stricter test of the 45-minute bar than the whole of it).

Prints one JSON object (also written to <out>/rl_pushcube.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch


def _random_steps_per_second(env, steps: int) -> float:
    """Env steps per second with uniform random actions (seeded), then close the env."""
    try:
        env.reset(seed=0)
        gen = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for _ in range(steps):
            env.step(torch.rand((1, env.act_dim), generator=gen) * 2 - 1)
        return steps / (time.perf_counter() - start)
    finally:
        env.close()


def steps_per_second(checkpoint: str, oracle: bool, steps: int = 300) -> float:
    from reward_model_ros.core.overrides import apply_overrides
    from reward_model_ros.paths import share_dir
    from reward_model_sim.rl_train import RLConfig, make_env

    cfg = apply_overrides(
        RLConfig(),
        [f"reward.checkpoint_path={checkpoint}", f"reward.oracle={str(oracle).lower()}"],
        [share_dir() / "config" / "rl_pushcube.yaml"],
    )
    from omegaconf import OmegaConf

    env, _ = make_env(OmegaConf.to_object(cfg), None)
    return _random_steps_per_second(env, steps)


def state_only_steps_per_second(checkpoint: str, steps: int = 300) -> float:
    """The same task without a camera (the evaluation env): what rendering costs."""
    from omegaconf import OmegaConf

    from reward_model_ros.core.overrides import apply_overrides
    from reward_model_ros.paths import share_dir
    from reward_model_sim.rl_sim import GroundTruthEvalEnv
    from reward_model_sim.rl_train import RLConfig, _sim_config

    config = share_dir() / "config" / "rl_pushcube.yaml"
    cfg = OmegaConf.to_object(apply_overrides(RLConfig(), [f"reward.checkpoint_path={checkpoint}"], [config]))
    env = GroundTruthEvalEnv(_sim_config(cfg.env), cfg.env.max_episode_steps)
    return _random_steps_per_second(env, steps)


def run_rl(checkpoint: str, oracle: bool, budget: float, out: Path, extra: list[str]) -> dict:
    from reward_model_ros.core.overrides import apply_overrides
    from reward_model_ros.paths import share_dir
    from reward_model_sim.rl_train import RLConfig, train_rl

    name = "oracle" if oracle else "learned"
    cfg = apply_overrides(
        RLConfig(),
        [
            f"reward.checkpoint_path={checkpoint}",
            f"reward.oracle={str(oracle).lower()}",
            f"sac.time_budget_s={budget}",
            "sac.progress=false",
            f"output_dir={out / name}",
            *extra,
        ],
        [share_dir() / "config" / "rl_pushcube.yaml"],
    )
    return train_rl(cfg, log_fn=lambda m: print(f"[{name}] {m}", flush=True))


def run_bc(checkpoint: str, out: Path) -> dict:
    """Behaviour cloning on the same scripted demonstrations (their rewards are unused)."""
    from omegaconf import OmegaConf

    from reward_model_ros.core.overrides import apply_overrides
    from reward_model_ros.paths import share_dir
    from reward_model_ros.rl.bc import BCConfig, train_bc
    from reward_model_ros.rl.evaluate import evaluate_policy
    from reward_model_sim.rl_sim import GroundTruthEvalEnv
    from reward_model_sim.rl_train import RLConfig, _sim_config, demo_buffer, make_env

    cfg = OmegaConf.to_object(
        apply_overrides(
            RLConfig(),
            [f"reward.checkpoint_path={checkpoint}"],
            [share_dir() / "config" / "rl_pushcube.yaml"],
        )
    )
    env, _ = make_env(cfg, None)
    start = time.perf_counter()
    demos, what = demo_buffer(cfg, env)
    env.close()
    policy, losses = train_bc(demos, BCConfig(seed=cfg.seed))
    train_s = time.perf_counter() - start
    eval_env = GroundTruthEvalEnv(_sim_config(cfg.env), cfg.env.max_episode_steps)
    try:
        result = evaluate_policy(policy, eval_env, cfg.eval.episodes, cfg.eval.seed)
    finally:
        eval_env.close()
    return {
        "demos": what,
        "transitions": len(demos),
        "train_s": train_s,
        "final_loss": losses[-1],
        "final_eval": {k: v for k, v in result.items() if k != "per_episode"},
    }


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _run_parallel(args) -> dict:
    """The learned and the oracle run as two processes at once, each with one torch thread."""
    procs = {}
    for name in ("learned", "oracle"):
        cmd = [
            sys.executable,
            __file__,
            "--checkpoint",
            args.checkpoint,
            "--budget",
            str(args.budget),
            "--out",
            str(args.out / f"part_{name}"),
            "--only",
            name,
            "--threads",
            "1",
            *args.overrides,
        ]
        procs[name] = subprocess.Popen(cmd)
    failed = [n for n, p in procs.items() if p.wait() != 0]
    if failed:
        raise SystemExit(f"RL run(s) failed: {failed}; see their output above")
    return {n: json.loads((args.out / f"part_{n}" / "rl_pushcube.json").read_text()) for n in procs}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="the PushCube classifier")
    parser.add_argument("--budget", type=float, default=2700.0, help="training seconds per RL run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_rl"))
    parser.add_argument("--only", choices=("learned", "oracle", "bc", "cost"), action="append")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of this process")
    parser.add_argument(
        "--parallel", action="store_true", help="run the learned and oracle RL runs at once, 1 thread each"
    )
    parser.add_argument("overrides", nargs="*", help="extra rl key=value for both RL runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    todo = args.only or ["cost", "bc", "learned", "oracle"]
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {_cores()} cores, "
        f"{torch.get_num_threads()} torch threads",
        "budget_s": args.budget,
    }
    if args.parallel:
        todo = [w for w in todo if w not in ("learned", "oracle")]
        report["rl_runs"] = "learned and oracle in parallel, 1 torch thread each"
    path = args.out / "rl_pushcube.json"
    if path.is_file():
        report |= json.loads(path.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    if args.parallel:
        parts = _run_parallel(args)
        for name, part in parts.items():
            report[name] = part[name]
        path.write_text(json.dumps(report, indent=2, default=float) + "\n")
    for what in todo:
        if what == "cost":
            report["steps_per_s"] = {
                "learned_reward": steps_per_second(args.checkpoint, False),
                "oracle_no_classifier": steps_per_second(args.checkpoint, True),
                "state_only_no_camera": state_only_steps_per_second(args.checkpoint),
            }
        elif what == "bc":
            report["bc"] = run_bc(args.checkpoint, args.out)
        else:
            report[what] = run_rl(args.checkpoint, what == "oracle", args.budget, args.out, args.overrides)
        path.write_text(json.dumps(report, indent=2, default=float) + "\n")
    if "learned" in report and "oracle" in report:
        a, b = report["learned"]["final_eval"]["gt_success"], report["oracle"]["final_eval"]["gt_success"]
        report["ratio_learned_to_oracle"] = a / b if b else float("nan")
        report["bar_met"] = bool(a >= 0.8 and a >= 0.9 * b)
    path.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(
        json.dumps(
            {k: v for k, v in report.items() if k not in ("learned", "oracle")}, default=float, indent=2
        )
    )


if __name__ == "__main__":
    main()
