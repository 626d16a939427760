"""End-to-end latency of reward_node: prints one JSON object per scenario.

    python bench/reward_node_latency.py [--duration 60] [--cameras 1 2] [--width 640 --height 480]
        [--rate 30] [--compressed jpeg|png] [--untrained resnet18]
        [-p model.checkpoint_path:=DIR -p model.precision:=bf16 -p model.threads:=2 ...]

For each camera count: a leased, loopback-only ROS domain; reward_node in its own process;
an independent process (reward_model_ros.ros.frame_publisher) publishing rgb8 frames at
--rate for --duration seconds (with --compressed: JPEG or PNG CompressedImages on
`<topic>/compressed`, and reward_node's image_transport:=compressed); this process
subscribes to `reward` and measures, per message, the time from the image stamp to its
receipt here. Reports p50/p90/p99/max latency, frames sent / scored / dropped, the node's
inference time, and the node's resident memory every 5 s while publishing (from /proc).

`--untrained ARCH` serves an untrained ARCH checkpoint written to --log-dir, with random int8
calibration frames, so that every precision (auto: int8 on a VNNI CPU) can be timed without a
trained model: speed does not depend on the weights. Without it and without
model.checkpoint_path, reward_node serves its own untrained model (no int8).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from reward_model_ros.ros.conversions import stamp_to_nanoseconds
from reward_model_ros.ros.processes import NodeProcess, ros_args
from reward_model_ros.ros.reward_listener import RewardListener


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def parse_params(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        name, _, value = item.partition(":=")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


def untrained_checkpoint(arch: str, directory: Path) -> Path:
    """An untrained `arch` checkpoint with 64 random int8 calibration frames (speed only)."""
    from reward_model_ros.core.checkpoint import save_checkpoint, store_int8_frames, untrained
    from reward_model_ros.core.config import ModelConfig

    ckpt = untrained(ModelConfig(arch=arch), threshold=0.5)
    save_checkpoint(directory, ckpt.model, ckpt.threshold)
    shape = (64, *ckpt.config.image_size)
    frames = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    store_int8_frames(directory, frames, "random frames (speed only): bench/reward_node_latency.py")
    return directory


def run(cameras: int, args, node_params: dict[str, object]) -> dict:
    topics = [f"cam{i}/image_raw" for i in range(cameras)]
    params = {"image_topics": topics, "image_qos": "reliable", **node_params}
    wire = topics
    if args.compressed:
        params["image_transport"] = "compressed"
        wire = [f"{t}/compressed" for t in topics]
    with RewardListener("latency_probe") as listener:
        reward = NodeProcess(
            "reward_node", ros_args(params), env=listener.env, log_path=args.log_dir / f"reward_{cameras}.log"
        )
        spinning = threading.Event()
        spinner = threading.Thread(target=lambda: listener.spin_until(spinning.is_set, 1e9), daemon=True)
        spinner.start()
        try:
            deadline = time.monotonic() + 120
            while listener.node.count_subscribers(wire[0]) == 0:
                if not reward.alive() or time.monotonic() > deadline:
                    raise RuntimeError("reward_node did not start:\n" + reward.output())
                time.sleep(0.1)
            cmd = [
                sys.executable,
                "-m",
                "reward_model_ros.ros.frame_publisher",
                "--topics",
                *topics,
                "--rate",
                str(args.rate),
                "--count",
                "0",
                "--duration",
                str(args.duration),
                "--width",
                str(args.width),
                "--height",
                str(args.height),
                *(["--compressed", args.compressed] if args.compressed else []),
            ]
            publisher = subprocess.Popen(cmd, env=listener.env, stdout=subprocess.PIPE, text=True)
            time.sleep(0.6)
            rss_series = [round(rss_mb(reward.pid), 1)]  # every 5 s while publishing
            next_sample = time.monotonic() + 5
            while publisher.poll() is None:
                time.sleep(0.1)
                if time.monotonic() >= next_sample:
                    rss_series.append(round(rss_mb(reward.pid), 1))
                    next_sample += 5
            out, _ = publisher.communicate(timeout=30)
            time.sleep(1.0)
            rss_series.append(round(rss_mb(reward.pid), 1))
        finally:
            spinning.set()
            spinner.join(timeout=2)
            reward.stop()
    summary = json.loads(out.strip().splitlines()[-1])
    sent = set(summary["stamps_ns"])
    got = [r for r in listener.received if stamp_to_nanoseconds(r.msg.header.stamp) in sent]
    latency_ms = np.array([r.latency_ms for r in got])
    inference_ms = np.array([r.msg.inference_latency * 1e3 for r in got])
    pct = lambda a, q: round(float(np.percentile(a, q)), 2) if len(a) else None  # noqa: E731
    return {
        "cameras": cameras,
        "width": args.width,
        "height": args.height,
        "rate_hz": args.rate,
        "transport": args.compressed or "raw",
        "duration_s": args.duration,
        "frames_sent": len(sent),
        "rewards_received": len(got),
        "frames_dropped": len(sent) - len(got),
        "publisher_late_ticks": summary["late_ticks"],
        "latency_ms": {
            "p50": pct(latency_ms, 50),
            "p90": pct(latency_ms, 90),
            "p99": pct(latency_ms, 99),
            "max": round(float(latency_ms.max()), 2) if len(latency_ms) else None,
        },
        "inference_ms": {"p50": pct(inference_ms, 50), "p99": pct(inference_ms, 99)},
        "node_rss_mb": {
            "start": rss_series[0],
            "after_10s": rss_series[min(2, len(rss_series) - 1)],
            "end": rss_series[-1],
            "every_5s": rss_series,
        },
        "node_params": params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--cameras", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument(
        "--compressed", choices=["jpeg", "png"], help="CompressedImage input (q90 JPEG / PNG)"
    )
    parser.add_argument(
        "-p", dest="params", action="append", default=[], help="reward_node parameter name:=value"
    )
    parser.add_argument("--untrained", metavar="ARCH", help="serve an untrained ARCH checkpoint (see above)")
    parser.add_argument("--log-dir", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    node_params = parse_params(args.params)
    if args.untrained:
        path = untrained_checkpoint(args.untrained, args.log_dir / f"untrained_{args.untrained}")
        node_params.setdefault("model.checkpoint_path", str(path))
    results = [run(n, args, node_params) for n in args.cameras]
    for r in results:
        print(json.dumps(r), flush=True)
    print(json.dumps({"benchmark": "reward_node_latency", "cpus": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
