"""Classifier throughput (images/s) at several batch sizes: prints one JSON object.

    python bench/model_throughput.py [--archs resnet10 resnet18] [--precisions fp32 bf16]
        [--batches 1 32 256] [--device cpu|cuda] [--threads N] [--seconds 3]

Times BatchScorer (uint8 input -> probabilities, as the node and the service use it) on
random 3x128x128 images, after a warm-up, for at least --seconds per setting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from reward_model_ros.core.checkpoint import untrained
from reward_model_ros.core.config import ModelConfig
from reward_model_ros.core.inference import BatchScorer


def measure(scorer: BatchScorer, batch: np.ndarray, seconds: float) -> float:
    scorer(batch)  # warm-up
    if scorer.model.device.type == "cuda":
        torch.cuda.synchronize()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 3:
        scorer(batch)
        n += 1
    return n * len(batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", nargs="+", default=["resnet10", "resnet18"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32, 256])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    results = []
    for arch in args.archs:
        for precision in args.precisions:
            cfg = ModelConfig(
                arch=arch, precision=precision, image_size=[3, args.image_size, args.image_size]
            )
            scorer = BatchScorer(
                untrained(cfg, threshold=0.5, device=args.device).model, micro_batch_size=256
            )
            for batch in args.batches:
                images = rng.integers(0, 256, (batch, 3, args.image_size, args.image_size), np.uint8)
                ips = measure(scorer, images, args.seconds)
                results.append(
                    {"arch": arch, "precision": precision, "batch": batch, "images_per_s": round(ips, 1)}
                )
                print(json.dumps(results[-1]), flush=True)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(
        json.dumps(
            {
                "benchmark": "model_throughput",
                "device": device,
                "threads": args.threads,
                "torch": torch.__version__,
                "image_size": args.image_size,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
