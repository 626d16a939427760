"""One frame from its ROS message to a probability, stage by stage: prints one JSON object.

    python bench/frame_path.py [--width 640 --height 480] [--archs resnet18]
        [--settings fp32:none bf16:freeze int8:freeze] [--threads N] [--repeats 300] [--jpeg-quality 90]
        [--frame-stack 2]

What reward_node does per frame, timed in this process (no DDS): decode the message (raw
rgb8 and bgr8 Images, JPEG and PNG CompressedImages as image_transport's compressed plugin
writes them), the frame checks, and FrameScorer.score on that one frame (preprocess: crop,
uint8 resize, then the model). Reports the median and p99 of each stage in milliseconds,
the compressed sizes, and `total_ms` (decode + checks + score) per transport and model
setting (`precision:optimize`; int8 is calibrated on random frames of the model's input: its
speed does not depend on what they show). The issue-15 bar is total <= 6 ms for a 640x480 frame.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from sensor_msgs.msg import Image

from reward_model_ros.core.checkpoint import untrained
from reward_model_ros.core.config import ModelConfig
from reward_model_ros.core.pipeline import FrameHistory
from reward_model_ros.core.scoring import FrameScorer
from reward_model_ros.ros.conversions import array_to_image, frame_to_rgb, rgb_to_compressed


def camera_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A frame with a camera's structure (smooth regions, edges, sensor noise): JPEG and PNG
    sizes and decode times depend on content, and random noise would be the worst case."""
    import cv2

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width * 180 + 30, y / height * 150 + 50, (x + y) / (width + height) * 120 + 60], 2)
    for _ in range(12):  # objects: filled rectangles and circles of random colours
        c = rng.integers(0, 256, 3).tolist()
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            cv2.rectangle(
                img, (x0, y0), (x0 + int(rng.integers(20, 160)), y0 + int(rng.integers(20, 120))), c, -1
            )
        else:
            cv2.circle(img, (x0, y0), int(rng.integers(10, 60)), c, -1)
    img += rng.normal(0, 3, img.shape)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def timed(fn, repeats: int) -> tuple[list[float], object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1e3)
    return times, out


def stats(ms: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.median(ms)), 3), "p99": round(float(np.percentile(ms, 99)), 3)}


def measure(scorer: FrameScorer, rgb: np.ndarray, messages: dict, repeats: int) -> dict:
    """A frame-stacked checkpoint scores each frame with the frames before it, as reward_node
    does: every decoded frame enters a FrameHistory, which gives the score its `past`."""
    history = FrameHistory(scorer.frame_stack)
    check_ms, _ = timed(lambda: scorer.check(rgb), repeats)
    score_ms, _ = timed(lambda: scorer.score([rgb], reasons=[None], past=history.push([rgb], ["c"])), repeats)
    total = {}
    for name, msg in messages.items():

        def whole(m=msg):
            frame, grey = frame_to_rgb(m)
            reason = scorer.check(frame, None, grey)
            return scorer.score([frame], reasons=[reason], past=history.push([frame], ["c"]))

        ms, scored = timed(whole, repeats)
        assert scored.valid[0], scored.reasons
        total[name] = stats(ms)
    return {"checks_ms": stats(check_ms), "score_ms": stats(score_ms), "total_ms": total}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--archs", nargs="+", default=["resnet18"])
    parser.add_argument(
        "--settings", nargs="+", default=["fp32:none", "bf16:freeze", "int8:freeze"],
        help="model.precision:model.optimize pairs",
    )  # fmt: skip
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--frame-stack", type=int, default=1, help="model.frame_stack of the model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: reward_node's default)")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--jpeg-quality", type=int, default=90)
    args = parser.parse_args()
    # reward_node's default: half the cores, at most 4
    torch.set_num_threads(args.threads or max(1, min(4, (os.cpu_count() or 2) // 2)))

    rgb = camera_like(args.width, args.height)
    messages: dict[str, object] = {
        "raw rgb8": array_to_image(rgb, "rgb8"),
        "raw bgr8": array_to_image(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8"),
        f"jpeg q{args.jpeg_quality}": rgb_to_compressed(rgb, "jpeg", args.jpeg_quality),
        "png": rgb_to_compressed(rgb, "png"),
    }
    decode: dict[str, dict] = {}
    for name, msg in messages.items():
        ms, (frame, _grey) = timed(lambda m=msg: frame_to_rgb(m), args.repeats)
        size = len(msg.data)
        decode[name] = {**stats(ms), "bytes": size, "ratio": round(rgb.nbytes / size, 1)}
        if not isinstance(msg, Image) and name.startswith("jpeg"):
            decode[name]["mean_abs_error"] = round(float(np.abs(frame.astype(int) - rgb).mean()), 2)

    results = []
    for arch in args.archs:
        for setting in args.settings:
            precision, _, optimize = setting.partition(":")
            size = [3, args.image_size, args.image_size]
            cfg = ModelConfig(
                arch=arch,
                precision=precision,
                optimize=optimize or "none",
                image_size=size,
                frame_stack=args.frame_stack,
            )
            ckpt = untrained(cfg, threshold=0.5)
            if precision == "int8":
                gen = torch.Generator().manual_seed(0)
                shape = (64, 3 * args.frame_stack, *size[1:])
                ckpt.model.int8_frames = torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
            scorer = FrameScorer(ckpt)
            scorer.warm_up()
            results.append(
                {
                    "arch": arch,
                    "setting": f"{precision}:{cfg.optimize}",
                    **measure(scorer, rgb, messages, args.repeats),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    print(
        json.dumps(
            {
                "benchmark": "frame_path",
                "frame": f"{args.width}x{args.height}",
                "model_input": args.image_size,
                "frame_stack": args.frame_stack,
                "torch_threads": torch.get_num_threads(),
                "cpus": os.cpu_count(),
                "machine": platform.processor() or platform.machine(),
                "decode_ms": decode,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
