"""A stand-alone process that publishes synthetic camera frames at a fixed rate.

The independent image source of the tests and benchmarks:

    python -m reward_model_ros.ros.frame_publisher --topics image_raw --rate 30 --count 90 \
        --width 640 --height 480 [--encoding rgb8] [--best-effort] [--wait-subscribers 1]
        [--compressed jpeg|png [--jpeg-quality 90]]

Every frame of one tick carries the same stamp on every topic (as hardware-synchronised
cameras do). Frames differ from each other (a moving bar), so a model sees new input.
With --compressed, each topic is `<topic>/compressed` (sensor_msgs/CompressedImage, as
image_transport's compressed plugin writes it); frames are encoded once, before publishing.
At the end it prints one JSON line: {"stamps_ns": [...], "sent": N, "late_ticks": K}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import rclpy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from reward_model_ros.core.images import channels_of
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.conversions import rgb_to_compressed


def frames(width: int, height: int, channels: int, n: int = 16) -> list[bytes]:
    """n distinct colour frames: a gradient that differs per channel, with a bright bar at a
    different place in each (colour, like a camera's: greyscale frames are refused by
    reward_node's frame checks)."""
    ramp = np.linspace(0, 200, width, dtype=np.uint8)
    base = np.stack([np.tile(np.roll(ramp, c * width // 3), (height, 1)) for c in range(max(channels, 1))], 2)
    out = []
    for i in range(n):
        img = base.copy()
        x = (i * width) // n
        img[:, x : x + max(1, width // n)] = 255
        out.append(np.ascontiguousarray(img[:, :, :channels]).tobytes())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--topics", nargs="+", default=["image_raw"])
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--count", type=int, default=90, help="frames per topic (0 = until --duration)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to publish when --count 0")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--encoding", default="rgb8")
    parser.add_argument("--frame-id", default="camera")
    parser.add_argument("--best-effort", action="store_true")
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument(
        "--compressed", choices=["jpeg", "png"], help="publish CompressedImage on <topic>/compressed"
    )
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument(
        "--wait-subscribers",
        type=int,
        default=1,
        help="wait until each topic has this many subscribers before publishing",
    )
    parser.add_argument("--wait-timeout", type=float, default=60.0)
    parser.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="seconds between the subscribers appearing and the first frame: the "
        "subscriber's side of discovery can lag behind ours",
    )
    args = parser.parse_args(argv)

    rclpy.init()
    node = rclpy.create_node("frame_publisher")
    qos = qos_profiles.images("best_effort" if args.best_effort else "reliable", args.depth)
    if args.compressed:
        topics = [t.rstrip("/") + "/compressed" for t in args.topics]
        pubs = [node.create_publisher(CompressedImage, t, qos) for t in topics]
    else:
        pubs = [node.create_publisher(Image, t, qos) for t in args.topics]
    deadline = time.monotonic() + args.wait_timeout
    while any(p.get_subscription_count() < args.wait_subscribers for p in pubs):
        if time.monotonic() > deadline:
            print(json.dumps({"error": "no subscriber matched", "sent": 0}), flush=True)
            return 1
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(args.settle)

    channels = channels_of(args.encoding)
    payloads = frames(args.width, args.height, channels)
    if args.compressed:
        if args.encoding != "rgb8":
            print(json.dumps({"error": "--compressed takes rgb8 frames", "sent": 0}), flush=True)
            return 2
        shape = (args.height, args.width, 3)
        encoded = [
            rgb_to_compressed(np.frombuffer(f, np.uint8).reshape(shape), args.compressed, args.jpeg_quality)
            for f in payloads
        ]
    template = Image(height=args.height, width=args.width, encoding=args.encoding, step=args.width * channels)
    period = 1.0 / args.rate
    total = args.count if args.count > 0 else int(args.duration * args.rate)
    stamps: list[int] = []
    late = 0
    start = time.monotonic()
    for i in range(total):
        target = start + i * period
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -period:
            late += 1
        now = node.get_clock().now()
        header = Header(stamp=now.to_msg(), frame_id=args.frame_id)
        for pub in pubs:
            if args.compressed:
                msg = CompressedImage(header=header, format=encoded[i % len(encoded)].format)
                msg.data = encoded[i % len(encoded)].data
                pub.publish(msg)
                continue
            msg = Image(
                header=header,
                height=template.height,
                width=template.width,
                encoding=template.encoding,
                step=template.step,
            )
            msg.data = payloads[i % len(payloads)]
            pub.publish(msg)
        stamps.append(now.nanoseconds)
    time.sleep(0.5)  # give reliable deliveries time before tearing the publishers down
    print(json.dumps({"stamps_ns": stamps, "sent": len(stamps), "late_ticks": late}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
