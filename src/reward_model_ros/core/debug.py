"""Debug output: frames annotated with the decision, and capped PNG dumps of model inputs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

GREEN = (0, 200, 0)
RED = (220, 0, 0)


def annotate(
    rgb: np.ndarray, probability: float, success: bool, threshold: float, max_width: int = 640
) -> np.ndarray:
    """A copy of the RGB frame (shrunk to at most max_width) with a green (success) or red
    (failure) border and the probability, decision and threshold written on it."""
    h, w = rgb.shape[:2]
    if w > max_width:
        rgb = cv2.resize(rgb, (max_width, round(h * max_width / w)), interpolation=cv2.INTER_AREA)
    else:
        rgb = rgb.copy()
    h, w = rgb.shape[:2]
    colour = GREEN if success else RED
    border = max(2, w // 80)
    cv2.rectangle(rgb, (0, 0), (w - 1, h - 1), colour, border)
    scale = max(0.35, w / 900)
    text = f"p={probability:.3f} {'SUCCESS' if success else 'FAIL'} thr={threshold:.2f}"
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(rgb, (border, border), (border + tw + 6, border + th + base + 6), (0, 0, 0), -1)
    cv2.putText(
        rgb, text, (border + 3, border + th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA
    )
    return rgb


DEBUG_DIR_ENV = "DEBUG_IMAGE_SAVE_DIR"
"""RLinf's environment variable for where the classifier's debug images go"""


def debug_save_dir(configured: str = "") -> str:
    """model.debug_save_dir: the configured directory, else $DEBUG_IMAGE_SAVE_DIR, else ''
    (off). Every writer of model debug images (reward_node, predict, the RL reward) asks here."""
    return configured or os.environ.get(DEBUG_DIR_ENV, "")


def debug_writer(configured: str = "", max_files: int = 1000) -> DebugImageWriter | None:
    """A writer for `debug_save_dir(configured)`, or None when debug images are off."""
    directory = debug_save_dir(configured)
    return DebugImageWriter(directory, max_files) if directory else None


class DebugImageWriter:
    """Writes model inputs as `resnet_success/` or `resnet_fail/{id:06d}_prob{p:.4f}.png`.

    Stops after `max_files` files (and says so once), so a long run cannot fill the disk.
    """

    def __init__(self, directory: str | Path, max_files: int = 1000) -> None:
        self.directory = Path(directory)
        self.max_files = max_files
        self.written = 0
        self._warned = False
        for sub in ("resnet_success", "resnet_fail"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)

    def write(self, chw: np.ndarray, probability: float, success: bool) -> Path | None:
        """Save one model input (3, H, W) RGB uint8; returns the path, or None past the cap."""
        if self.written >= self.max_files:
            if not self._warned:
                log.warning(
                    "debug_save_dir: reached debug_save_max_files=%d, not writing more images to %s",
                    self.max_files,
                    self.directory,
                )
                self._warned = True
            return None
        sub = "resnet_success" if success else "resnet_fail"
        path = self.directory / sub / f"{self.written:06d}_prob{probability:.4f}.png"
        bgr = cv2.cvtColor(np.ascontiguousarray(chw.transpose(1, 2, 0)), cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(path), bgr):
            raise OSError(f"could not write {path}")
        self.written += 1
        return path
