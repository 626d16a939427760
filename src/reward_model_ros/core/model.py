"""ResNetRewardModel: a ResNet backbone and a small head that outputs one success logit."""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models import resnet

from reward_model_ros.core.config import ConfigError, ModelConfig
from reward_model_ros.core.quantize import build_int8, int8_available, to_unit

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_BACKBONES = {
    # name: (block, layers, feature width, torchvision weights enum or None)
    "resnet10": (resnet.BasicBlock, [1, 1, 1, 1], 512, None),
    "resnet18": (resnet.BasicBlock, [2, 2, 2, 2], 512, resnet.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (resnet.BasicBlock, [3, 4, 6, 3], 512, resnet.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (resnet.Bottleneck, [3, 4, 6, 3], 2048, resnet.ResNet50_Weights.IMAGENET1K_V2),
}
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_FREEZE_LOCK = threading.Lock()  # one graph built at a time (the node scores from several threads)


@dataclass
class RewardPrediction:
    """What the classifier says about a batch of frames."""

    probabilities: np.ndarray
    """success probability per frame, float32 in [0, 1], shape (N,): sigmoid(logit / temperature)"""
    logits: np.ndarray
    """the raw logits (before the temperature), float32, shape (N,)"""


def build_backbone(cfg: ModelConfig) -> tuple[nn.Module, int]:
    """The ResNet trunk without its classifier (fc = Identity) and its feature width."""
    block, layers, width, weights = _BACKBONES[cfg.arch]
    net = resnet.ResNet(block, layers)
    if cfg.pretrained:
        if weights is None:
            raise ConfigError(f"model.pretrained: torchvision has no ImageNet weights for {cfg.arch}")
        # Downloads on first use (needs internet); cached by torch.hub afterwards.
        net.load_state_dict(weights.get_state_dict(progress=False))
    elif cfg.pretrained_path:
        _load_backbone_file(net, Path(cfg.pretrained_path))
    net.fc = nn.Identity()
    if cfg.frame_stack > 1:
        _widen_stem(net, cfg.in_channels)
    return net, width


def _widen_stem(net: resnet.ResNet, channels: int) -> None:
    """model.frame_stack: the first convolution takes `channels` (3 per stacked frame, newest
    first). The newest frame keeps the weights it had (initialised or loaded); the earlier
    frames' weights start at zero, so the stacked model starts as the single-frame one and
    learns from the difference what motion tells."""
    old = net.conv1
    conv = nn.Conv2d(
        channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=old.bias is not None
    )
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :3] = old.weight
    net.conv1 = conv


def _load_backbone_file(net: nn.Module, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.suffix != ".safetensors":
        raise ConfigError(
            f"model.pretrained_path={str(path)!r}: only .safetensors files are loaded (pickled "
            ".pth files are never unpickled). Convert a torchvision file you trust once with: "
            'python -c "import torch, safetensors.torch as s; '
            "s.save_file(torch.load('in.pth', weights_only=True), 'out.safetensors')\""
        )
    if not path.is_file():
        raise ConfigError(f"model.pretrained_path={str(path)!r}: file does not exist")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ConfigError(
            f"model.pretrained_path={str(path)!r}: not a readable safetensors file ({exc})"
        ) from exc
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        missing, unexpected = [str(exc).splitlines()[1].strip()], []
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ConfigError(
            f"model.pretrained_path={str(path)!r} does not fit this backbone "
            f"(missing or mismatched: {missing[:3]}, unexpected: {unexpected[:3]}): "
            "is it a torchvision ResNet of the depth model.arch names?"
        )


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated
    and slower than fp32."""
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_vnni() -> bool:
    """Whether this CPU has int8 dot products (AVX-512 VNNI, AVX-VNNI or AMX int8), which the
    x86 quantized engine's kernels use; without them int8 is not worth it."""
    flags = _cpu_flags()
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def fast_inference(device: torch.device, int8_ready: bool = False) -> tuple[str, str]:
    """(precision, optimize) that score fastest on `device` within 0.5 accuracy points of fp32
    (measured: docs/benchmarks.md): int8 on a CPU with VNNI for a checkpoint that holds int8
    calibration frames (`int8_ready`), else bf16 in a frozen graph where the hardware has bf16,
    else eager fp32."""
    if device.type == "cpu" and int8_ready and cpu_has_vnni() and int8_available():
        return "int8", "freeze"
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = device.type == "cpu" and cpu_has_bf16()
    return ("bf16", "freeze") if native else ("fp32", "none")


def resolve_inference(
    precision: str, optimize: str, device: torch.device | str, int8_ready: bool = False
) -> tuple[str, str]:
    """`auto` precision / optimize as every scorer resolves it (fast_inference); an explicit
    precision keeps the eager graph unless optimize is given too (int8 is always frozen)."""
    if "auto" not in (precision, optimize):
        return precision, optimize
    if precision == "auto":
        precision = fast_inference(torch.device(device), int8_ready)[0]
    if optimize == "auto":
        if precision == "int8":
            optimize = "freeze"
        else:  # bf16 asked for where bf16 is native: its frozen graph, as auto would give
            float_precision, float_optimize = fast_inference(torch.device(device))
            optimize = float_optimize if precision == float_precision else "none"
    return precision, optimize


class ResNetRewardModel(nn.Module):
    """Success classifier: images (N, 3, H, W) -> success logits (N,); a joint multi-view
    model (model.multi_view=joint, V = len(camera_names)) takes (N, V, 3, H, W), one frame per
    camera in camera_names order, encodes every view with the shared backbone and gives the
    head their V features side by side: one logit per set.

    Accepts uint8 images (0..255) or float images in [0, 1]; ImageNet normalisation happens
    inside when `normalize` is true, so the node and training feed the same raw pixels.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        self.backbone, width = build_backbone(cfg)
        self.views = cfg.views
        self.head = nn.Sequential(
            nn.Linear(width * self.views, cfg.hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden_dim, 1),
        )
        k = cfg.frame_stack  # every stacked frame is normalised alike
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN * k).view(1, 3 * k, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD * k).view(1, 3 * k, 1, 1), persistent=False)
        for module in self.frozen_modules():
            module.requires_grad_(False)
        self.to(memory_format=torch.channels_last)
        self._graphs: dict[str, torch.jit.ScriptModule] = {}  # model.optimize=freeze: built on first use
        self.int8_frames: torch.Tensor | None = None
        """calibration inputs of model.precision=int8 (load_checkpoint reads them from the
        checkpoint's int8_calibration.safetensors); the int8 graph is built from them on first use"""
        self.temperature = 1.0
        """calibration: `predict` gives sigmoid(logit / temperature); load_checkpoint sets it from
        config.json `calibration` (1 = uncalibrated). forward() always returns raw logits."""

    def train(self, mode: bool = True) -> ResNetRewardModel:
        super().train(mode)
        if mode:
            self._graphs.clear()  # the weights may change: a frozen graph would be stale
        for module in self.frozen_modules():
            module.eval()  # frozen BatchNorm statistics stay as loaded
        return self

    def frozen_modules(self) -> list[nn.Module]:
        """The parts of the trunk that training leaves as they are: all of it with
        model.freeze_backbone, else the first model.frozen_stages + 1 stages (stem, layer1, ...)."""
        if self.cfg.freeze_backbone:
            return [self.backbone]
        b = self.backbone
        stages = [b.conv1, b.bn1, b.layer1, b.layer2, b.layer3, b.layer4]
        return stages[: self.cfg.frozen_stages + 2] if self.cfg.frozen_stages >= 0 else []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = check_input_shape(images, self.views, self.cfg.in_channels)
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        x = x.reshape(-1, *x.shape[-3:])  # the views of a joint model share the backbone
        if self.cfg.normalize:
            x = (x - self.mean) / self.std
        x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            features = self.backbone(x).reshape(n, -1)  # (N, V x width): views side by side
            logits = self.head(features)
        return logits.float().squeeze(1)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for bf16/fp16 precision on the model's device; a no-op for fp32."""
        dtype = _DTYPES.get(self.cfg.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.inference_mode()
    def predict(self, images: torch.Tensor | np.ndarray) -> RewardPrediction:
        """Success probabilities sigmoid(logit / temperature) for a batch, in eval mode, without
        gradients; every scorer (FrameScorer, BatchScorer) gets its probabilities here."""
        was_training = self.training
        if was_training:  # a mode switch walks every module: ~1 ms a call on ResNet-18
            self.eval()
        try:
            batch = torch.as_tensor(images).to(self.device, non_blocking=True)
            check_input_shape(batch, self.views, self.cfg.in_channels)
            if self.cfg.precision == "int8":
                logits = self._int8()(to_unit(batch)).float()
            elif self.cfg.optimize == "freeze":
                x = to_unit(batch)
                logits = self._frozen(x)(x).float()
            else:
                logits = self(batch)
        finally:
            if was_training:
                self.train(True)
        probs = torch.sigmoid(logits / self.temperature)
        return RewardPrediction(
            probs.cpu().numpy().astype(np.float32), logits.cpu().numpy().astype(np.float32)
        )

    def load_state_dict(self, *args, **kwargs):
        self._graphs.clear()
        return super().load_state_dict(*args, **kwargs)

    def _frozen(self, example: torch.Tensor) -> torch.jit.ScriptModule:
        """The inference graph of model.optimize=freeze: a copy of the network (in bf16/fp16
        weights for those precisions) traced on `example`, frozen and, on the CPU, optimised
        for inference (oneDNN conv+BN+ReLU fusion). It takes any batch size."""
        key = str(self.device)
        graph = self._graphs.get(key)
        if graph is not None:
            return graph
        with _FREEZE_LOCK:
            if key not in self._graphs:
                net = _Inference(self, _DTYPES.get(self.cfg.precision, torch.float32)).eval()
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # TorchScript's deprecation notes
                    graph = torch.jit.freeze(torch.jit.trace(net, example))
                    if self.device.type == "cpu":
                        graph = torch.jit.optimize_for_inference(graph)
                    for _ in range(2):  # the profiling executor specialises on its first calls
                        graph(example)
                self._graphs[key] = graph
        return self._graphs[key]

    def _int8(self) -> torch.jit.ScriptModule:
        """The int8 graph of model.precision=int8 (core/quantize.py), built on first use."""
        graph = self._graphs.get("int8")
        if graph is None:
            if self.device.type != "cpu":
                raise ConfigError(f"model.precision=int8 runs on the CPU only, not {self.device}: use bf16")
            if self.int8_frames is None:
                raise ConfigError(
                    "model.precision=int8 needs calibration frames and this model has none: run "
                    "`reward-model quantize CHECKPOINT --data DATASET` (train stores them in new checkpoints)"
                )
            with _FREEZE_LOCK:
                if "int8" not in self._graphs:
                    self._graphs["int8"] = build_int8(
                        _Inference(self, torch.float32).eval(), self.int8_frames
                    )
            graph = self._graphs["int8"]
        return graph

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def check_input_shape(images: torch.Tensor, views: int, channels: int = 3) -> int:
    """The batch size N of a model input: (N, C, H, W) for a single-view model, (N, V, C, H, W)
    for a joint one over V cameras; C = 3 per stacked frame (model.frame_stack).

    :raises ValueError: any other shape, saying what the model takes.
    """
    shape = tuple(images.shape)
    if views == 1 and len(shape) == 4 and shape[1] == channels:
        return shape[0]
    if len(shape) == 5 and shape[1] == views and shape[2] == channels:
        return shape[0]
    c = str(channels) if channels == 3 else f"{channels} (3 per stacked frame)"
    want = (
        f"(N, {c}, H, W)"
        if views == 1
        else f"(N, {views}, {c}, H, W): one input of each of its {views} cameras"
    )
    raise ValueError(f"model input of shape {list(shape)}: this model takes {want}")


class _Inference(nn.Module):
    """Images as float in [0, 1] (`to_unit`) -> logits, in one dtype throughout (no autocast, no
    branch on the input, so TorchScript and FX trace it alike): a copy of a ResNetRewardModel's
    backbone and head for model.optimize=freeze and, in float32, for the int8 graph."""

    def __init__(self, model: ResNetRewardModel, dtype: torch.dtype) -> None:
        super().__init__()
        self.backbone = copy.deepcopy(model.backbone).to(dtype)
        self.head = copy.deepcopy(model.head).to(dtype)
        self.register_buffer("mean", model.mean.clone())
        self.register_buffer("std", model.std.clone())
        self.normalize, self.dtype = model.cfg.normalize, dtype
        self.chw = (model.cfg.in_channels, *(int(v) for v in model.cfg.image_size[1:]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        x = images.reshape(-1, *self.chw)
        if self.normalize:
            x = (x - self.mean) / self.std
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(x).reshape(n, -1)).float().squeeze(1)
