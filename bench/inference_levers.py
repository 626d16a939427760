"""Inference levers for the success classifier, measured in one run: prints one JSON line per
setting and a summary object with ratios against eager fp32.

    python bench/inference_levers.py [--arch resnet18] [--batches 1 2 32 256] [--threads 2]
        [--levers eager_fp32 eager_bf16 ...] [--seconds 2] [--checkpoint DIR]

Each lever turns the same model (random weights, or --checkpoint) into a function from a
uint8 (N, 3, H, W) batch to logits, as BatchScorer feeds it:
- eager_fp32, eager_bf16: today's ResNetRewardModel (bf16 = autocast), channels_last;
- bf16_weights: the weights cast to bf16 once (autocast re-casts them on every call);
- jit_fp32, jit_bf16: traced, frozen and optimised TorchScript (oneDNN conv+BN+ReLU fusion);
- compile_fp32, compile_bf16: torch.compile (inductor), compile time reported;
- onnxruntime_fp32: the model exported to ONNX, run by ONNX Runtime (if installed: it is
  not a dependency; its current wheels need numpy>=2, which ManiSkill's planner cannot take);
- int8_pt2e: post-training int8 (PT2E, X86InductorQuantizer, calibrated on random frames:
  speed only, its accuracy needs a checkpoint and real frames) compiled by inductor;
- int8_fx: post-training static int8 in FX graph mode (torch.ao.quantization, the "x86"
  engine: fbgemm/oneDNN kernels with VNNI where the CPU has it), calibrated the same way,
  then traced and frozen to TorchScript.
Agreement with eager fp32 (max |probability difference|) on random frames is reported per
lever; accuracy on held-out episodes is `reward-model evaluate`'s job.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from reward_model_ros.core.checkpoint import load_checkpoint, untrained
from reward_model_ros.core.config import ModelConfig

LEVERS = (
    "eager_fp32",
    "eager_bf16",
    "bf16_weights",
    "jit_fp32",
    "jit_bf16",
    "compile_fp32",
    "compile_bf16",
    "onnxruntime_fp32",
    "int8_pt2e",
    "int8_fx",
)


class Normalised(torch.nn.Module):
    """uint8 -> normalised float in the given dtype -> backbone + head (no autocast)."""

    def __init__(self, model, dtype: torch.dtype) -> None:
        super().__init__()
        self.backbone, self.head = model.backbone, model.head
        self.register_buffer("mean", model.mean.to(dtype) * 255.0)
        self.register_buffer("std", model.std.to(dtype) * 255.0)
        self.normalize, self.dtype = model.cfg.normalize, dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.dtype)
        x = (x - self.mean) / self.std if self.normalize else x / 255.0
        x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(x)).float().squeeze(1)


def build(lever: str, cfg: ModelConfig, state: dict, example: torch.Tensor):
    """(callable uint8 batch -> logits, seconds it took to build)."""
    start = time.perf_counter()
    precision = "bf16" if lever == "eager_bf16" else "fp32"
    model = untrained(ModelConfig(**{**cfg.__dict__, "precision": precision}), 0.5).model.eval()
    model.load_state_dict(state)
    if lever.startswith("eager"):
        fn = model
    elif lever == "bf16_weights":
        fn = Normalised(model, torch.bfloat16).to(torch.bfloat16).eval()
    elif lever.startswith("jit"):
        dtype = torch.bfloat16 if lever.endswith("bf16") else torch.float32
        net = Normalised(model, dtype).to(dtype).eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, example)))
            for _ in range(3):  # the profiling executor specialises on the first calls
                fn(example)
    elif lever.startswith("compile"):
        dtype = torch.bfloat16 if lever.endswith("bf16") else torch.float32
        net = Normalised(model, dtype).to(dtype).eval()
        fn = torch.compile(net, dynamic=False)
        with torch.no_grad():
            fn(example)
    elif lever == "onnxruntime_fp32":
        import onnxruntime as ort

        path = Path(tempfile.mkdtemp()) / "model.onnx"
        net = Normalised(model, torch.float32).eval()
        torch.onnx.export(net, (example,), str(path), input_names=["images"], dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def fn(images: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    elif lever == "int8_pt2e":
        from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torch.ao.quantization.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )

        net = Normalised(model, torch.float32).eval()
        exported = torch.export.export(net, (example,)).module()
        quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        rng = np.random.default_rng(1)
        with torch.no_grad():
            for _ in range(8):
                prepared(torch.from_numpy(rng.integers(0, 256, tuple(example.shape), np.uint8)))
        fn = torch.compile(convert_pt2e(prepared), dynamic=False)
        with torch.no_grad():
            fn(example)
    elif lever == "int8_fx":
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = "x86"
        net = Normalised(model, torch.float32).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = prepare_fx(net, get_default_qconfig_mapping("x86"), (example,))
            rng = np.random.default_rng(1)
            with torch.no_grad():
                for _ in range(8):
                    prepared(torch.from_numpy(rng.integers(0, 256, tuple(example.shape), np.uint8)))
                quantised = convert_fx(prepared).eval()
                fn = torch.jit.freeze(torch.jit.trace(quantised, example))
                for _ in range(3):
                    fn(example)
    else:
        raise ValueError(f"lever {lever!r}: choose from {', '.join(LEVERS)}")
    return fn, time.perf_counter() - start


def measure(fn, batch: torch.Tensor, seconds: float) -> tuple[float, float]:
    """(images/s, median ms per call)."""
    with torch.no_grad():
        fn(batch)
        times, start = [], time.perf_counter()
        while time.perf_counter() - start < seconds or len(times) < 5:
            t = time.perf_counter()
            fn(batch)
            times.append(time.perf_counter() - t)
    return len(times) * len(batch) / sum(times), 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint, not random weights")
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=LEVERS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 32, 256])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint, device="cpu")
        cfg, state = ckpt.model.cfg, ckpt.model.state_dict()
    else:
        cfg = ModelConfig(arch=args.arch, image_size=[3, args.image_size, args.image_size])
        state = untrained(cfg, 0.5).model.state_dict()
    size = tuple(int(v) for v in cfg.image_size)
    rng = np.random.default_rng(0)
    check = torch.from_numpy(rng.integers(0, 256, (16, *size), np.uint8))
    reference = None
    results = []
    for lever in args.levers:
        per_batch = []
        for batch in args.batches:
            example = torch.from_numpy(rng.integers(0, 256, (batch, *size), np.uint8))
            try:
                fn, build_s = build(lever, cfg, state, example)
            except Exception as exc:  # a lever this torch or this machine lacks: say so, go on
                row = {"lever": lever, "batch": batch, "error": f"{type(exc).__name__}: {exc}"[:300]}
                print(json.dumps(row), flush=True)
                results.append(row)
                break
            ips, ms = measure(fn, example, args.seconds)
            row = {"lever": lever, "batch": batch, "images_per_s": round(ips, 1), "ms_per_call": round(ms, 2)}
            row["build_s"] = round(build_s, 1)
            if batch == args.batches[0]:  # agreement with eager fp32 on the same 16 frames
                with torch.no_grad():
                    probs = torch.sigmoid(torch.cat([fn(check[i : i + batch]) for i in range(0, 16, batch)]))
                if reference is None and lever == "eager_fp32":
                    reference = probs
                if reference is not None:
                    row["max_prob_diff_vs_fp32"] = round(float((probs - reference).abs().max()), 5)
            print(json.dumps(row), flush=True)
            per_batch.append(row)
        results += per_batch
    eager = [r for r in results if r["lever"] == "eager_fp32" and "images_per_s" in r]
    base = {r["batch"]: r["images_per_s"] for r in eager}
    for r in results:
        if r.get("batch") in base and "images_per_s" in r:
            r["ratio_vs_eager_fp32"] = round(r["images_per_s"] / base[r["batch"]], 2)
    print(
        json.dumps(
            {
                "benchmark": "inference_levers",
                "cpu": platform.processor() or platform.machine(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "threads": args.threads,
                "torch": torch.__version__,
                "arch": cfg.arch,
                "image_size": list(size),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
