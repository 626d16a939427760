"""recorder_node under load, then the dataset builder on what it wrote: prints one JSON object.

    python bench/recorder_throughput.py [--seconds 60] [--cameras 2] [--width 640 --height 480]

A publisher process sends `--cameras` rgb8 image streams at 30 Hz and joint states at 100 Hz
(reliable, as camera drivers and franka_ros2 do), framed by an EpisodeEvent START and
SUCCESS; recorder_node (defaults: MCAP, 1 s flushes) records them in its own process, all
in a leased loopback-only ROS domain. Reported: messages published and found in the bag
(dropped must be 0), the recorder's CPU use (share of one core, from /proc), MB/s written,
its resident memory every 5 s (flat = no unbounded buffering), and then `reward-model
process` throughput on the bag (samples/s; one sample = one frame of every camera).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def publisher(args) -> None:
    """The load: runs in its own process (`--publisher`)."""
    import numpy as np
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from reward_msgs.msg import EpisodeEvent
    from sensor_msgs.msg import Image, JointState

    from reward_model_ros.ros.conversions import array_to_image, seconds_to_stamp

    rclpy.init()
    node = rclpy.create_node("bench_publisher")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    cams = [node.create_publisher(Image, f"cam{i}/image_raw", qos) for i in range(args.cameras)]
    joints = node.create_publisher(JointState, "joint_states", qos)
    events = node.create_publisher(EpisodeEvent, "episode/event", qos)
    rng = np.random.default_rng(0)
    frames = [
        array_to_image(rng.integers(0, 255, (args.height, args.width, 3), np.uint8), "rgb8") for _ in cams
    ]
    js = JointState(name=[f"fr3_joint{i}" for i in range(1, 8)], position=[0.0] * 7)
    everyone = [*cams, joints, events]
    while any(p.get_subscription_count() == 0 for p in everyone):
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(1.0)
    counts = {"images": 0, "joint_states": 0}
    start_t = time.time()
    events.publish(
        EpisodeEvent(header=js.header.__class__(stamp=seconds_to_stamp(start_t)), event=0, task="bench")
    )
    t0 = time.monotonic()
    next_img, next_js = t0, t0
    while time.monotonic() - t0 < args.seconds:
        now = time.monotonic()
        if now >= next_img:
            stamp = seconds_to_stamp(time.time())
            for pub, msg in zip(cams, frames, strict=True):
                msg.header.stamp = stamp
                pub.publish(msg)
                counts["images"] += 1
            next_img += 1 / 30
        if now >= next_js:
            js.header.stamp = seconds_to_stamp(time.time())
            joints.publish(js)
            counts["joint_states"] += 1
            next_js += 1 / 100
        time.sleep(max(0.0, min(next_img, next_js) - time.monotonic()))
    end = EpisodeEvent(event=1, label=1, task="bench")
    end.header.stamp = seconds_to_stamp(time.time())
    events.publish(end)
    for p in everyone:
        p.wait_for_all_acked(rclpy.duration.Duration(seconds=10))
    print(json.dumps(counts), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/recorder"))
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher:
        publisher(args)
        return

    import subprocess

    from rosbags.highlevel import AnyReader

    from reward_model_ros.data.dataset import DataConfig, build_dataset
    from reward_model_ros.ros.processes import NodeProcess, ros_args
    from reward_model_ros.ros.reward_listener import LocalSession

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    topics = [f"cam{i}/image_raw" for i in range(args.cameras)] + ["joint_states"]
    with LocalSession("bench_recorder_probe") as session:
        rec = NodeProcess(
            "recorder_node",
            ros_args({"save_dir": str(args.out / "bags"), "topics": topics, "min_free_disk_mb": 100}),
            env=session.env,
            log_path=args.out / "recorder.log",
        )
        pub = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--publisher",
                "--seconds",
                str(args.seconds),
                "--cameras",
                str(args.cameras),
                "--width",
                str(args.width),
                "--height",
                str(args.height),
            ],
            env=session.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        rss, cpu0, t0, started = [], None, None, False
        while pub.poll() is None:
            time.sleep(0.5)
            if not started and (args.out / "bags" / "incomplete").exists():
                started, cpu0, t0 = True, cpu_seconds(rec.pid), time.monotonic()
            if started and (not rss or time.monotonic() - rss[-1][0] - t0 >= 5):
                rss.append((time.monotonic() - t0, rss_mb(rec.pid)))
        cpu1, t1 = cpu_seconds(rec.pid), time.monotonic()
        sent = json.loads(pub.stdout.read().strip().splitlines()[-1])
        deadline = time.monotonic() + 60
        bag = args.out / "bags" / "success" / "episode_000000"
        while not (bag / "episode.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        rec.stop()
    with AnyReader([bag]) as reader:
        got = {c.topic: c.msgcount for c in reader.connections}
    size_mb = sum(f.stat().st_size for f in bag.iterdir()) / 2**20
    info = json.loads((bag / "episode.json").read_text())
    recorded_images = sum(n for t, n in got.items() if "image_raw" in t)
    start = time.monotonic()
    summary = build_dataset([bag], args.out / "dataset", DataConfig(val_fraction=0.0), log=lambda m: None)
    build_s = time.monotonic() - start
    result = {
        "benchmark": "recorder_throughput",
        "cpus": os.cpu_count(),
        "cameras": args.cameras,
        "size": f"{args.width}x{args.height}",
        "seconds": args.seconds,
        "images_sent": sent["images"],
        "images_recorded": recorded_images,
        "joint_states_sent": sent["joint_states"],
        "joint_states_recorded": got.get("/joint_states", 0),
        "dropped": sent["images"] - recorded_images + sent["joint_states"] - got.get("/joint_states", 0),
        "recorder_dropped_queue_full": info["dropped_queue_full"],
        "recorder_cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "mb_per_s_written": round(size_mb / info["duration_s"], 1),
        "bag_mb": round(size_mb, 1),
        "recorder_rss_mb": [[round(t), round(m)] for t, m in rss],
        "builder_samples": summary["samples"],
        "builder_seconds": round(build_s, 1),
        "builder_samples_per_s": round(summary["samples"] / build_s, 1),
        "builder_images_per_s": round(summary["samples"] * args.cameras / build_s, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
