"""Training throughput of the classifier, and time to a validation accuracy on a dataset.

    python bench/train_throughput.py [--archs resnet10 resnet18] [--device cpu|cuda] [--steps 20]
        [--memory-formats contiguous channels_last] [--variants full frozen_stem compile] [--batch 32]
        [--optimizers fused foreach]
    python bench/train_throughput.py --data runs/demo/dataset --target 0.97

Part 1: optimizer steps on random 3x128x128 uint8 batches (forward, backward, AdamW) with
micro-batches of --batch (32), for each arch and precision (fp32, and bf16 autocast where the
hardware has it), in each memory format (channels_last: model and batches in NHWC, what
oneDNN's convolutions prefer), and each variant (--variants: frozen_stem leaves conv1, bn1
and layer1 without gradients, a measure of what partial fine-tuning would buy; compile runs the
forward pass through torch.compile), and each AdamW implementation (--optimizers: fused, what
`train` builds, or torch's default foreach); images/s after 3 warm-up steps (compile's build included
in the warm-up). Part 2 (with --data): a real training run
with the demo's settings, reporting the wall time until the validation accuracy first
reaches --target (from the run's history). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def throughput(
    arch: str,
    precision: str,
    device: str,
    steps: int,
    batch: int,
    fmt: str = "contiguous",
    variant: str = "full",
    optimizer: str = "fused",
) -> tuple[float, float]:
    """(images/s, seconds of the 3 warm-up steps: torch.compile's build falls in them)"""
    from reward_model_ros.core.config import ModelConfig
    from reward_model_ros.core.model import ResNetRewardModel
    from reward_model_ros.training.train import adamw

    torch.manual_seed(0)
    memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    frozen = 1 if variant == "frozen_stem" else -1  # model.frozen_stages: conv1, bn1, layer1
    model = ResNetRewardModel(ModelConfig(arch=arch, frozen_stages=frozen))
    model = model.to(device, memory_format=memory_format).train()
    forward = torch.compile(model) if variant == "compile" else model
    if optimizer == "fused":  # what `train` builds
        opt = adamw(model.trainable_parameters(), 1e-4, 1e-4, device)
    else:  # torch's default implementation: per-tensor operations over lists
        opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4, weight_decay=1e-4, foreach=True)
    x = torch.randint(0, 255, (batch, 3, 128, 128), dtype=torch.uint8, device=device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.randint(0, 2, (batch,), device=device).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    amp = torch.autocast(
        device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"
    )

    def step() -> None:
        with amp:
            logits = forward(x)
        loss = loss_fn(logits.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    start = time.perf_counter()
    for _ in range(3):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start), warmup


def time_to_accuracy(data: Path, target: float, overrides: list[str]) -> dict:
    from reward_model_ros.core.overrides import apply_overrides
    from reward_model_ros.paths import share_dir
    from reward_model_ros.training.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = apply_overrides(
            TrainConfig(),
            [
                f"runner.output_dir={tmp}",
                f"runner.logger.log_path={tmp}/logs",
                "runner.save_interval=0",
                "runner.progress=false",
                *overrides,
            ],
            [share_dir() / "config" / "train_reward.yaml"],
        )
        start = time.monotonic()
        result = train(cfg, data, log=lambda m: None)
        total = time.monotonic() - start
    hist = result["history"]
    reached = next((h for h in hist if h["val/accuracy"] >= target), None)
    return {
        "target_val_accuracy": target,
        "reached_at_step": reached["step"] if reached else None,
        "reached_after_s": reached["elapsed_s"] if reached else None,
        "best_val_accuracy": max(h["val/accuracy"] for h in hist),
        "steps": result["state"]["step"],
        "total_s": round(total, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", nargs="+", default=["resnet10", "resnet18"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--memory-formats", nargs="+", default=["contiguous"], choices=["contiguous", "channels_last"]
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["full"],
        choices=["full", "frozen_stem", "compile"],
        help="full: every layer trained, eager; frozen_stem: conv1, bn1 and layer1 get no "
        "gradients (speed only: not a training option); compile: torch.compile (inductor)",
    )
    parser.add_argument(
        "--optimizers",
        nargs="+",
        default=["fused"],
        choices=["fused", "foreach"],
        help="fused: AdamW's fused kernel (what `train` uses); foreach: torch's default AdamW",
    )
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("overrides", nargs="*", help="train overrides for --data, key=value")
    args = parser.parse_args()
    from reward_model_ros.training.train import cpu_has_bf16

    bf16 = torch.cuda.is_bf16_supported() if args.device.startswith("cuda") else cpu_has_bf16()
    precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
    rows = []
    for arch, precision, fmt, variant, optimizer in itertools.product(
        args.archs, precisions, args.memory_formats, args.variants, args.optimizers
    ):
        ips, warmup = throughput(
            arch, precision, args.device, args.steps, args.batch, fmt, variant, optimizer
        )
        rows.append(
            {
                "arch": arch,
                "precision": precision,
                "memory_format": fmt,
                "variant": variant,
                "optimizer": optimizer,
                "images_per_s": round(ips, 1),
                "warmup_s": round(warmup, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "benchmark": "train_throughput",
        "device": args.device if not args.device.startswith("cuda") else torch.cuda.get_device_name(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "micro_batch": args.batch,
        "throughput": rows,
    }
    if args.data:
        result["time_to_accuracy"] = time_to_accuracy(args.data, args.target, args.overrides)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
