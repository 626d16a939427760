"""Scripted episodes per minute through the ROS graph: prints one JSON object.

    python bench/scripted_episodes.py [--episodes 5] [--sizes 128x128 640x480]

For each camera size: maniskill_bridge runs its scripted driver (driver:=scripted) as fast
as possible with `--episodes` success and `--episodes` failure targets, in its own process
in a leased, loopback-only domain. This process times each episode from its START event to
its end event as received here, and reports episodes per minute for successes, failures
and overall (start-up of the simulation excluded), plus steps per second.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from reward_msgs.msg import EpisodeEvent

from reward_model_ros.ros.processes import NodeProcess, ros_args
from reward_model_ros.ros.reward_listener import LocalSession


def measure(width: int, height: int, args) -> dict:
    events: list[tuple[float, EpisodeEvent]] = []
    with LocalSession("scripted_rate_probe") as session:
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        session.node.create_subscription(
            EpisodeEvent, "episode/event", lambda m: events.append((time.monotonic(), m)), qos
        )
        bridge = NodeProcess(
            "maniskill_bridge",
            ros_args(
                {
                    "driver": "scripted",
                    "camera_width": width,
                    "camera_height": height,
                    "real_time": False,
                    "target_success": args.episodes,
                    "target_failure": args.episodes,
                    "seed": args.seed,
                }
            ),
            env=session.env,
            log_path=args.log_dir / f"scripted_{width}x{height}.log",
        )
        try:
            session.spin_until(lambda: not bridge.alive(), args.timeout)
            session.spin_until(lambda: False, 0.5)  # the last events in flight
            if bridge.alive() or bridge.popen.returncode != 0:
                raise RuntimeError("the scripted driver did not finish:\n" + bridge.output())
        finally:
            bridge.stop()
    starts = {m.episode_index: t for t, m in events if m.event == EpisodeEvent.START}
    ends = [(t, m) for t, m in events if m.event != EpisodeEvent.START]
    durations = {"success": [], "failure": []}
    steps = 0
    for t, m in ends:
        kind = "success" if m.label == EpisodeEvent.LABEL_SUCCESS else "failure"
        durations[kind].append(t - starts[m.episode_index])
        steps += m.step
    wall = ends[-1][0] - min(starts.values())

    def per_minute(values: list[float]) -> float:
        return round(60.0 / float(np.mean(values)), 1) if values else float("nan")

    return {
        "width": width,
        "height": height,
        "episodes": len(ends),
        "success_episodes": len(durations["success"]),
        "failure_episodes": len(durations["failure"]),
        "success_per_min": per_minute(durations["success"]),
        "failure_per_min": per_minute(durations["failure"]),
        "episodes_per_min": round(60.0 * len(ends) / wall, 1),
        "steps_per_s": round(steps / wall, 1),
        "mean_steps_success": round(float(np.mean([m.step for _, m in ends if m.label == 1] or [0])), 1),
        "mean_steps_failure": round(float(np.mean([m.step for _, m in ends if m.label == 0] or [0])), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=5, help="success and failure targets each")
    parser.add_argument("--sizes", nargs="+", default=["128x128", "640x480"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--log-dir", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        results.append(measure(w, h, args))
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"benchmark": "scripted_episodes", "cpus": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
