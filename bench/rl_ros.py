"""RL over ROS 2 against the in-process loop: actor latency and env steps per second.

    python bench/rl_ros.py [--checkpoint DIR] [--duration 60] [--rates 10 20]

Every scenario runs in its own leased, loopback-only ROS domain, with the graph of
launch/sim_rl.launch.py: maniskill_bridge (PushCube-v1, 128x128 camera), reward_node (bf16,
per-step reward) and rl_trainer (SAC), each in its own process. This process subscribes to
`state`, `action` and `episode/event` and notes when each message arrives.

- latency at R Hz: the bridge's `policy` driver in real time at R Hz (it steps on the clock
  and, when no action for a step has come, applies none), the trainer learning after 200
  transitions. An action (episode e, step k) is paired with the k-th observation of episode
  e (counted from its START event's stamp). Printed: observation-to-action latency p50 / p99
  / max, which includes reward_node scoring the frame (the trainer acts once the reward of
  the previous transition is in), and the share of actions that came later than one
  control period.
- throughput: the `lockstep` driver as fast as possible (each step waits for its action),
  random actions (learning_starts beyond the run): env steps per second over ROS; and, in
  the same run, the in-process loop of `reward-model rl train` (LearnedRewardEnv, the same
  classifier and camera, random actions): the ratio ROS / in-process.

Without --checkpoint an untrained ResNet-10 at 128x128 (the demo's architecture) is used:
the cost of scoring does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from reward_msgs.msg import EpisodeEvent, ObservationVector, PolicyAction

from reward_model_ros.core.stamps import stamp_ns
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.processes import NodeProcess, ros_args
from reward_model_ros.ros.reward_listener import LocalSession

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rl_pushcube import steps_per_second  # the in-process loop, with the same config

STEPS = 50


def bridge_params(driver: str, rate: float) -> dict:
    return {
        "task": "PushCube-v1",
        "driver": driver,
        "control_mode": "pd_ee_delta_pos",
        "real_time": driver == "policy",
        "control_rate": int(rate),
        "auto_reset": False,
        "max_episode_steps": STEPS,
        "camera_width": 128,
        "camera_height": 128,
        "camera_pose": [0.55, 0.0, 0.55, 0.1, 0.0, 0.0],
        "camera_fov": 0.9,
        "show_goal": True,
        "lockstep_timeout": 30.0,
    }


def trainer_params(out: Path, learning_starts: int) -> dict:
    return {
        "reset_service": "/maniskill_bridge/reset",
        "max_episode_steps": STEPS,
        "terminate_on_success": True,
        "output_dir": str(out),
        "checkpoint_interval": 0.0,
        "learning_starts": learning_starts,
        "reward_timeout": 10.0,
    }


class Probe(LocalSession):
    """Arrival times of observations (by stamp), actions (by episode and step) and START events."""

    def __enter__(self) -> Probe:
        super().__enter__()
        qos = qos_profiles.reliable(1000)
        self.states: list[tuple[int, float]] = []
        self.actions: list[tuple[int, int, float]] = []
        self.starts: dict[int, int] = {}
        self.node.create_subscription(
            ObservationVector,
            "state",
            lambda m: self.states.append((stamp_ns(m.header.stamp), time.monotonic())),
            qos,
        )
        self.node.create_subscription(
            PolicyAction,
            "action",
            lambda m: self.actions.append((m.episode_index, m.step, time.monotonic())),
            qos,
        )
        self.node.create_subscription(EpisodeEvent, "episode/event", self._on_event, qos)
        return self

    def _on_event(self, msg: EpisodeEvent) -> None:
        if msg.event == EpisodeEvent.START:
            self.starts[msg.episode_index] = stamp_ns(msg.header.stamp)

    def latencies(self, since: float) -> tuple[np.ndarray, np.ndarray]:
        """Seconds from each observation's arrival to its action's, for actions after `since`;
        and each action's step."""
        bounds = sorted(self.starts.items())
        by_episode: dict[int, list[float]] = {}
        for i, (episode, t0) in enumerate(bounds):
            t1 = bounds[i + 1][1] if i + 1 < len(bounds) else 2**63
            by_episode[episode] = [t for s, t in sorted(self.states) if t0 <= s < t1]
        out, steps = [], []
        for episode, step, arrived in self.actions:
            seen = by_episode.get(episode, [])
            if arrived >= since and step < len(seen):
                out.append(arrived - seen[step])
                steps.append(step)
        return np.array(out), np.array(steps)


def run_graph(checkpoint: str, driver: str, rate: float, duration: float, learning_starts: int, logs: Path):
    """Start the graph, measure for `duration` s from the first episode's START; the probe."""
    name = f"{driver}_{int(rate)}hz"
    with Probe(f"rl_ros_probe_{name}") as probe, tempfile.TemporaryDirectory() as tmp:
        procs = [
            NodeProcess(
                "maniskill_bridge",
                ros_args(bridge_params(driver, rate)),
                env=probe.env,
                log_path=logs / f"{name}_bridge.log",
            ),
            NodeProcess(
                "reward_node",
                ros_args(
                    {
                        "model.checkpoint_path": checkpoint,
                        "model.precision": "bf16",
                        "reward_mode": "per_step",
                        "image_qos": "reliable",
                    }
                ),
                env=probe.env,
                log_path=logs / f"{name}_reward.log",
            ),
            NodeProcess(
                "rl_trainer",
                ros_args(trainer_params(Path(tmp) / "run", learning_starts)),
                env=probe.env,
                log_path=logs / f"{name}_trainer.log",
            ),
        ]
        try:
            if not probe.spin_until(lambda: bool(probe.starts), 180):
                raise RuntimeError(f"{name}: no episode started in 180 s; logs in {logs}")
            start = time.monotonic()
            probe.spin_until(lambda: False, duration)
            end = time.monotonic()
        finally:
            procs[2].popen.send_signal(signal.SIGINT)  # the trainer first: its final checkpoint
            for proc in reversed(procs):
                proc.stop(timeout=20)
        return probe, start, end


def latency_scenario(checkpoint: str, rate: float, duration: float, logs: Path, learning_starts: int) -> dict:
    probe, start, end = run_graph(checkpoint, "policy", rate, duration, learning_starts, logs)
    lat, steps = probe.latencies(start)
    lat = lat * 1e3
    period_ms = 1e3 / rate

    def pct(a: np.ndarray) -> dict:
        q = lambda v: round(float(np.percentile(a, v)), 2) if len(a) else None  # noqa: E731
        return {"p50": q(50), "p99": q(99), "max": q(100), "n": len(a)}

    return {
        "scenario": f"latency at {rate:g} Hz (policy driver, real time, SAC after {learning_starts} steps)",
        "actions": len(lat),
        "observation_to_action_ms": pct(lat),
        # the first steps of an episode: the trainer starts after the reset service's answer,
        # while the free-running bridge already steps (the lockstep driver waits instead)
        "steps_0_to_4_ms": pct(lat[steps < 5]),
        "steps_from_5_ms": pct(lat[steps >= 5]),
        "later_than_one_period": round(float(np.mean(lat > period_ms)), 4) if len(lat) else None,
        "period_ms": period_ms,
        "seconds": round(end - start, 1),
    }


def throughput_scenario(checkpoint: str, duration: float, logs: Path) -> dict:
    probe, start, end = run_graph(checkpoint, "lockstep", 20, duration, 10**9, logs)
    steps = sum(1 for _, _, t in probe.actions if start <= t < end)
    ros = steps / (end - start)
    in_process = steps_per_second(checkpoint, oracle=False, steps=300)
    return {
        "scenario": "throughput (lockstep as fast as possible, random actions) vs the in-process loop",
        "ros_env_steps_per_s": round(ros, 1),
        "in_process_env_steps_per_s": round(in_process, 1),
        "ratio_ros_to_in_process": round(ros / in_process, 3),
        "ros_steps_measured": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default="", help="classifier (default: an untrained ResNet-10)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured per scenario")
    parser.add_argument("--rates", type=float, nargs="+", default=[10.0, 20.0])
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--learning-starts", type=int, default=200, help="latency runs: SAC from here")
    parser.add_argument("--log-dir", type=Path, default=Path(tempfile.gettempdir()) / "rl_ros_bench")
    args = parser.parse_args()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint
    if not checkpoint:
        from reward_model_ros.core.checkpoint import save_checkpoint, untrained
        from reward_model_ros.core.config import ModelConfig

        model = untrained(ModelConfig(arch="resnet10", image_size=[3, 128, 128]), 0.5).model
        checkpoint = str(save_checkpoint(args.log_dir / "untrained_resnet10", model, 0.5))
    print(json.dumps({"machine": f"{os.cpu_count()} CPUs", "checkpoint": checkpoint}), flush=True)
    for rate in args.rates:
        print(
            json.dumps(latency_scenario(checkpoint, rate, args.duration, args.log_dir, args.learning_starts)),
            flush=True,
        )
    if not args.skip_throughput:
        print(json.dumps(throughput_scenario(checkpoint, args.duration, args.log_dir)), flush=True)


if __name__ == "__main__":
    main()
