"""From a camera frame (any size, RGB) to the model's input (3 x H x W uint8)."""

from __future__ import annotations

import cv2
import numpy as np

from reward_model_ros.core.config import ConfigError, ModelConfig


class Preprocessor:
    """Crop (per camera, optional) -> resize (center_crop or stretch) -> CHW uint8.

    The output stays uint8: the model converts to float and normalises, so the bytes that
    cross to the GPU (or are saved as debug images) are the small ones.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        _, self.height, self.width = (int(v) for v in cfg.image_size)
        self.mode = cfg.resize_mode
        self.crop_boxes = {k: tuple(int(v) for v in box) for k, box in cfg.crop_boxes.items()}
        self.cameras = set(cfg.camera_names) | set(self.crop_boxes)

    def crop(self, rgb: np.ndarray, camera: str | None = None) -> np.ndarray:
        """The camera's crop box cut from the frame (the frame itself for a camera without one).

        :raises ConfigError: a camera the model does not know while crop boxes are set (a
            silently uncropped frame would be scored unlike the training data), or a box
            reaching outside the frame.
        """
        if not self.crop_boxes:
            return rgb
        if camera not in self.cameras:
            raise ConfigError(
                f"camera {camera!r} is not one of the model's cameras {sorted(self.cameras)}, and the "
                f"model crops frames per camera (model.crop_boxes for {sorted(self.crop_boxes)}): "
                "name the camera (reward_node: camera_names; predict: --camera)"
            )
        box = self.crop_boxes.get(camera)
        if box is None:
            return rgb
        x0, y0, x1, y1 = box
        h, w = rgb.shape[:2]
        if x1 > w or y1 > h:
            raise ConfigError(
                f"crop box {list(box)} of camera {camera!r} reaches outside its {w}x{h} frame: "
                "fix model.crop_boxes (pixels [x0, y0, x1, y1])"
            )
        return rgb[y0:y1, x0:x1]

    def resize(self, rgb: np.ndarray) -> np.ndarray:
        """(h, w, 3) -> (height, width, 3)."""
        h, w = rgb.shape[:2]
        if (h, w) == (self.height, self.width):
            return rgb
        if self.mode == "center_crop":
            # cut the centred region with the target's aspect ratio first, then resize only
            # that: the same picture as resize-then-crop, for less work on wide frames
            scale = max(self.width / w, self.height / h)
            crop_w, crop_h = min(w, round(self.width / scale)), min(h, round(self.height / scale))
            top, left = (h - crop_h) // 2, (w - crop_w) // 2
            rgb = rgb[top : top + crop_h, left : left + crop_w]
        return _resize(rgb, self.width, self.height)

    def __call__(self, rgb: np.ndarray, camera: str | None = None) -> np.ndarray:
        """The model input for one RGB frame: (3, height, width) uint8, C-contiguous."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        return np.ascontiguousarray(self.resize(self.crop(rgb, camera)).transpose(2, 0, 1))

    def batch(self, frames: list[np.ndarray], cameras: list[str | None] | None = None) -> np.ndarray:
        cameras = cameras or [None] * len(frames)
        return np.stack([self(f, c) for f, c in zip(frames, cameras, strict=True)])


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    # A frame 4x or more the target in both directions is first subsampled by a stride, down
    # to at least twice the target, then area-averaged: 4K to 128x128 in 0.7 ms instead of
    # 13.6 ms (one thread), and the same code in training, evaluation and serving.
    k = min(rgb.shape[0] // height, rgb.shape[1] // width) // 2
    if k >= 2:
        rgb = rgb[::k, ::k]
    shrinking = width * height < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
