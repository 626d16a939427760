"""The classifier's configuration: what a checkpoint's config.json holds about the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

ARCHS = ("resnet10", "resnet18", "resnet34", "resnet50")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
RESIZE_MODES = ("center_crop", "stretch")
OPTIMIZE = ("none", "freeze")
MULTI_VIEW = ("late", "joint")


class ConfigError(ValueError):
    """A configuration value the model cannot work with; names the key, value and rule."""


@dataclass
class ModelConfig:
    """The success classifier (the `model.*` keys)."""

    arch: str = "resnet18"
    """backbone: resnet10 (light), resnet18, resnet34 or resnet50"""
    hidden_dim: int = 256
    """width of the head's hidden layer: Linear(features, hidden_dim) -> ReLU -> Dropout -> Linear(1)"""
    dropout: float = 0.1
    """dropout probability in the head"""
    image_size: list[int] = field(default_factory=lambda: [3, 128, 128])
    """model input as [channels, height, width]; channels must be 3"""
    normalize: bool = True
    """apply ImageNet mean/std normalisation inside the model"""
    precision: str = "fp32"
    """inference precision: fp32, bf16 (autocast), fp16 (autocast) or int8 (CPU, post-training
    static quantization from the checkpoint's calibration frames: core/quantize.py; needs
    optimize freeze). Training's precision is runner.precision"""
    optimize: str = "none"
    """inference graph: none (eager) or freeze (traced, frozen TorchScript: oneDNN fuses
    conv+BN+ReLU; with precision bf16 the weights are cast to bf16 once instead of autocast on
    every call). Inference only: training always runs eager"""
    pretrained: bool = False
    """start from torchvision's ImageNet weights (downloads them: needs internet once)"""
    pretrained_path: str = ""
    """start from ImageNet backbone weights in a local .safetensors file instead"""
    freeze_backbone: bool = False
    """train only the head: backbone parameters get requires_grad=False and BatchNorm stays in eval"""
    frozen_stages: int = -1
    """partial fine-tuning, as mmdetection's ResNet counts stages: -1 trains every layer; 0 freezes
    the stem (conv1, bn1); k = 1..4 the stem and layer1..layer k. Frozen stages get
    requires_grad=False and their BatchNorm stays in eval; no gradient is computed through the
    stem, which holds the costliest full-resolution layers (ResNet-18 bf16, 2-core AMD: 1.44-1.46x the
    images/s with 1). Meant for pretrained weights: from random ones it cost 5.4 points of
    held-out accuracy on the demo's data (docs/benchmarks.md)"""
    resize_mode: str = "center_crop"
    """how a (cropped) frame becomes image_size: center_crop keeps the aspect ratio, stretch does not"""
    crop_boxes: dict[str, list[int]] = field(default_factory=dict)
    """per camera name: [x0, y0, x1, y1] pixel box cut from the frame before resizing"""
    camera_names: list[str] = field(default_factory=list)
    """cameras the model was trained on, in the dataset's order (set by training from the dataset);
    crop_boxes are keyed by these names and reward_node maps its image topics to them"""
    multi_view: str = "late"
    """how several cameras are judged: late (each camera's frame is scored alone and the
    decision's camera_fusion, logit/mean/min/max, combines the probabilities) or joint (one shared
    backbone encodes every camera's frame and the head sees all their features at once: one
    probability per frame set, so a view that shows failure can outweigh one that looks like
    success). Joint models need one frame of each of camera_names per set"""
    frame_stack: int = 1
    """frames per camera in one model input: 1 judges each frame alone; k > 1 also gives the
    model the camera's k - 1 frames before it (in the dataset's episode order, at serving the
    stream's previous frames), stacked as extra input channels of the first convolution, so
    that it can see motion (PickCube's success needs the robot still). At an episode's start
    the earliest frame there is stands in for the missing ones. Costs one wider first layer"""

    def validate(self) -> ModelConfig:
        """Raise ConfigError naming the first bad key; return self."""

        def bad(key: str, rule: str) -> ConfigError:
            return ConfigError(f"model.{key}={getattr(self, key)!r}: {rule}")

        self._check_types()

        if self.arch not in ARCHS:
            raise bad("arch", f"must be one of {', '.join(ARCHS)}")
        if self.hidden_dim < 1:
            raise bad("hidden_dim", "must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "must be in [0, 1)")
        size = list(self.image_size)
        if len(size) != 3 or size[0] != 3 or min(size[1:]) < 32:
            raise bad("image_size", "must be [3, height, width] with height and width >= 32")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"must be one of {', '.join(PRECISIONS)}")
        if self.optimize not in OPTIMIZE:
            raise bad("optimize", f"must be one of {', '.join(OPTIMIZE)}")
        if self.precision == "int8" and self.optimize != "freeze":
            raise bad("optimize", "must be freeze with precision int8 (the int8 model is a frozen graph)")
        if self.multi_view not in MULTI_VIEW:
            raise bad("multi_view", f"must be one of {', '.join(MULTI_VIEW)}")
        if self.resize_mode not in RESIZE_MODES:
            raise bad("resize_mode", f"must be one of {', '.join(RESIZE_MODES)}")
        for cam, box in self.crop_boxes.items():
            if len(box) != 4 or box[0] < 0 or box[1] < 0 or box[2] <= box[0] or box[3] <= box[1]:
                raise ConfigError(
                    f"model.crop_boxes[{cam!r}]={box!r}: must be [x0, y0, x1, y1] "
                    "with x1 > x0 >= 0, y1 > y0 >= 0"
                )
        if self.camera_names:
            unknown = sorted(set(self.crop_boxes) - set(self.camera_names))
            if unknown:
                raise ConfigError(
                    f"model.crop_boxes names camera(s) {unknown}, but the cameras are "
                    f"{list(self.camera_names)}: key each crop box by one of those camera names"
                )
            if len(set(self.camera_names)) != len(self.camera_names):
                raise ConfigError(f"model.camera_names={list(self.camera_names)!r}: names must be unique")
        if not -1 <= self.frozen_stages <= 4:
            raise bad(
                "frozen_stages",
                "must be -1 (train every layer), 0 (freeze the stem) or 1..4 (the stem and layer1..layerN)",
            )
        if not 1 <= self.frame_stack <= 4:
            raise bad("frame_stack", "must be 1 (each frame alone) to 4")
        if self.frame_stack > 1 and (self.freeze_backbone or self.frozen_stages >= 0):
            raise bad(
                "frame_stack",
                "needs a trainable first convolution (its earlier frames' weights start at zero): "
                "set freeze_backbone false and frozen_stages -1, or frame_stack 1",
            )
        if self.pretrained and self.pretrained_path:
            raise ConfigError("model.pretrained and model.pretrained_path are both set: choose one")
        return self

    @property
    def views(self) -> int:
        """Frames per model input: the number of cameras for a joint model, else 1."""
        return max(1, len(self.camera_names)) if self.multi_view == "joint" else 1

    @property
    def in_channels(self) -> int:
        """Channels per view of a model input: 3 per stacked frame (newest first)."""
        return 3 * self.frame_stack

    def _check_types(self) -> None:
        """Each key has its declared type (an int where an int is due: 256.0 is refused,
        not truncated; a bool is no number)."""

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def ok(value: Any, kind: str) -> bool:
            if kind == "str":
                return isinstance(value, str)
            if kind == "int":
                return is_int(value)
            if kind == "float":
                return (is_int(value) or isinstance(value, float)) and value == value
            if kind == "bool":
                return isinstance(value, bool)
            if kind == "list[int]":
                return isinstance(value, list | tuple) and all(is_int(v) for v in value)
            if kind == "list[str]":
                return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
            if kind == "dict[str, list[int]]":
                return isinstance(value, dict) and all(
                    isinstance(k, str) and ok(v, "list[int]") for k, v in value.items()
                )
            return True

        for f in fields(self):
            value = getattr(self, f.name)
            kind = str(f.type)
            if not ok(value, kind):
                raise ConfigError(f"model.{f.name}={value!r}: must be of type {kind}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"the model section must be an object of model.* keys, got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model keys {unknown}; known: {sorted(known)}")
        return cls(**data).validate()
