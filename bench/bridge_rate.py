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

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState

from reward_model_ros.dds import DomainLease, local_dds_env
from reward_model_ros.ros.processes import NodeProcess, ros_args


def measure(width: int, height: int, args) -> dict:
    with DomainLease() as lease:
        env = local_dds_env(lease.domain_id)
        os.environ.update(env)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=lease.domain_id)
        node = rclpy.create_node("bridge_rate_probe", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        images: list[float] = []
        joints: list[float] = []
        node.create_subscription(Image, "image_raw", lambda m: images.append(time.monotonic()), qos)
        node.create_subscription(JointState, "joint_states", lambda m: joints.append(time.monotonic()), qos)
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
            env=env,
            log_path=args.log_dir / f"bridge_{width}x{height}.log",
        )
        try:
            deadline = time.monotonic() + 180
            while not images and time.monotonic() < deadline and bridge.alive():
                executor.spin_once(timeout_sec=0.05)
            if not images:
                raise RuntimeError("the bridge published nothing:\n" + bridge.output())
            start = time.monotonic()
            n_img, n_joint = len(images), len(joints)
            while time.monotonic() - start < args.seconds:
                executor.spin_once(timeout_sec=0.05)
            elapsed = time.monotonic() - start
        finally:
            bridge.stop()
            node.destroy_node()
            context.try_shutdown()
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
