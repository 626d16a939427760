"""int8 inference (`model.precision: int8`): post-training static quantization of a trained
classifier for the CPU, with the activation ranges taken from real frames.

A checkpoint that can run in int8 holds `int8_calibration.safetensors`: a few of its own
training inputs (uint8, as the scorer feeds the model), written by `reward-model train` and by
`reward-model quantize CHECKPOINT --data D` (both through checkpoint.store_int8_frames). When a
checkpoint is loaded with precision int8 (or auto picks it), the model is quantized from those
frames: FX graph mode
(torch.ao.quantization) with the "x86" engine's default mapping (per-channel int8 weights,
histogram-calibrated uint8 activations, conv+BN+ReLU folded, fbgemm/oneDNN kernels with
VNNI), then traced and frozen into TorchScript. The frames, not observer statistics, are
stored, so the file is independent of the torch version and the graph is rebuilt the same
way on every load (deterministic for a given torch).

Measured (docs/benchmarks.md): 3.5-5x eager fp32 at batch 1-32 on AVX-512 VNNI CPUs; the
accuracy cost is measured per checkpoint with `reward-model evaluate --precision int8`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

FRAMES_FILE = "int8_calibration.safetensors"
DEFAULT_FRAMES = 64
"""calibration inputs stored per checkpoint (64 at 3x128x128: 3 MB)"""
ENGINE = "x86"


class QuantizeError(ValueError):
    """A checkpoint or frames int8 cannot be built from; says what to do."""


def int8_available() -> bool:
    return ENGINE in torch.backends.quantized.supported_engines


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """The int8 graph's input: float in [0, 1]."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def build_int8(net: nn.Module, frames: torch.Tensor, batch: int = 16) -> torch.jit.ScriptModule:
    """The frozen int8 graph of `net` (a float32 inference copy of the model that takes float
    inputs in [0, 1] and has no branch on them), calibrated on `frames` (uint8 model inputs).
    It takes float inputs in [0, 1] (`to_unit`) of any batch size.

    :raises QuantizeError: this torch has no x86 quantized engine, or no frames.
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if not int8_available():
        raise QuantizeError(
            f"this torch build has no {ENGINE!r} quantized engine (it has "
            f"{torch.backends.quantized.supported_engines}): use model.precision bf16 or fp32"
        )
    if len(frames) == 0:
        raise QuantizeError("no calibration frames: run `reward-model quantize CHECKPOINT --data D`")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX quantization's and TorchScript's deprecation notes
        torch.backends.quantized.engine = ENGINE
        example = to_unit(frames[:1])
        prepared = prepare_fx(net, get_default_qconfig_mapping(ENGINE), (example,))
        for s in range(0, len(frames), batch):
            prepared(to_unit(frames[s : s + batch]))
        quantized = convert_fx(prepared).eval()
        graph = torch.jit.freeze(torch.jit.trace(quantized, example))
        for _ in range(2):  # the profiling executor specialises on its first calls
            graph(example)
    return graph


def read_frames(directory: Path) -> torch.Tensor | None:
    """The checkpoint's calibration inputs, or None if it has none.

    :raises QuantizeError: a damaged file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory) / FRAMES_FILE
    if not path.is_file():
        return None
    try:
        frames = load_file(str(path))["frames"]
    except (SafetensorError, OSError, KeyError) as exc:
        raise QuantizeError(
            f"{path} is damaged ({exc}): delete it and rerun `reward-model quantize {directory} --data D`"
        ) from exc
    if frames.dtype != torch.uint8:
        raise QuantizeError(
            f"{path}: frames must be uint8, got {frames.dtype}; rerun `reward-model quantize`"
        )
    return frames


def pick(n_items: int, labels: np.ndarray, count: int = DEFAULT_FRAMES) -> list[int]:
    """Indices of `count` items spread evenly over the data, half of each label where both
    exist (deterministic)."""
    labels = np.asarray(labels)
    chosen: list[int] = []
    classes = [np.flatnonzero(labels == c) for c in (0, 1)]
    classes = [c for c in classes if len(c)]
    for k, idx in enumerate(classes):
        want = count // len(classes) + (1 if k < count % len(classes) else 0)
        take = np.linspace(0, len(idx) - 1, num=min(want, len(idx))).round().astype(int)
        chosen += idx[np.unique(take)].tolist()
    return sorted(chosen)[:n_items]
