"""maniskill_bridge step and image publish rates: prints one JSON object.

    python bench/bridge_rate.py [--seconds 20] [--sizes 128x128 640x480] [--task PickCube-v1]

For each camera size: the bridge runs in its own process as fast as possible
(real_time:=false) in a leased, loopback-only domain; this process counts the frames it
receives on image_raw over --seconds after the first one (each frame is one control step)
and the steps the bridge reports through joint_states.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState

from reward_model_ros.ros.processes import NodeProcess, ros_args
from reward_model_ros.ros.reward_listener import LocalSession


def measure(width: int, height: int, args) -> dict:
    with LocalSession("bridge_rate_probe") as session:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        images: list[float] = []
        joints: list[float] = []
        session.node.create_subscription(Image, "image_raw", lambda m: images.append(time.monotonic()), qos)
        session.node.create_subscription(
            JointState, "joint_states", lambda m: joints.append(time.monotonic()), qos
        )
        bridge = NodeProcess(
            "maniskill_bridge",
            ros_args(
                {
                    "task": args.task,
                    "camera_width": width,
                    "camera_height": height,
                    "real_time": False,
                    "max_episode_steps": 100,
                }
            ),
            env=session.env,
            log_path=args.log_dir / f"bridge_{width}x{height}.log",
        )
        try:
            session.spin_until(lambda: bool(images) or not bridge.alive(), 180)
            if not images:
                raise RuntimeError("the bridge published nothing:\n" + bridge.output())
            start = time.monotonic()
            n_img, n_joint = len(images), len(joints)
            session.spin_until(lambda: time.monotonic() - start >= args.seconds, args.seconds + 1)
            elapsed = time.monotonic() - start
        finally:
            bridge.stop()
    return {
        "task": args.task,
        "width": width,
        "height": height,
        "seconds": round(elapsed, 1),
        "images_per_s": round((len(images) - n_img) / elapsed, 1),
        "steps_per_s": round((len(joints) - n_joint) / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sizes", nargs="+", default=["128x128", "640x480"])
    parser.add_argument("--task", default="PickCube-v1")
    parser.add_argument("--log-dir", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        results.append(measure(w, h, args))
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"benchmark": "bridge_rate", "cpus": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
