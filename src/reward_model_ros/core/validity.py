"""Is a frame one the classifier can judge? Checked before scoring, everywhere frames are
scored (reward_node, the batch service, `evaluate`, `predict`, the RL reward).

A classifier trained on a camera's frames says nothing meaningful about a covered lens, an
overexposed or black frame, a frame of another shape or size, or a greyscale copy: in the
demo's checkpoint an all-white frame scored p=0.87, a uniform grey one 0.995 and a
greyscale copy of a failure frame 0.994. A policy would find those. An invalid frame gets
no success: its probability is not used, and the reason is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from reward_model_ros.core.config import ConfigError

THUMB = 64  # checks run on a THUMB x THUMB copy: microseconds, whatever the frame size


@dataclass
class ValidityConfig:
    """The `validity.*` settings: thresholds of the frame checks."""

    enabled: bool = True
    """run the checks (false: score every frame, as before)"""
    min_std: float = 3.0
    """near-uniform: the luminance's standard deviation (0-255) below this is a covered or blank camera"""
    max_clipped_fraction: float = 0.7
    """more than this share of pixels at white (>= 250) or black (<= 5) is an over/under-exposed frame"""
    max_aspect_change: float = 1.3
    """the frame's aspect ratio may differ from the training frames' by this factor at most"""
    max_scale_change: float = 4.0
    """the frame's pixel count may differ from the training frames' by this factor at most"""
    max_aspect: float = 4.0
    """without training sizes (older checkpoints): width/height or height/width above this is refused"""
    allow_greyscale: bool = False
    """accept greyscale frames (mono8, or R = G = B) although the model was trained on colour"""
    max_pixels: int = 4096 * 4096
    """frames with more pixels are refused before any work (memory and latency stay bounded)"""

    def validate(self) -> ValidityConfig:
        def need(ok: bool, key: str, rule: str) -> None:
            if not ok:
                raise ConfigError(f"validity.{key}={getattr(self, key)!r}: {rule}")

        need(np.isfinite(self.min_std) and self.min_std >= 0, "min_std", "must be >= 0")
        need(0 < self.max_clipped_fraction <= 1, "max_clipped_fraction", "must be in (0, 1]")
        need(self.max_aspect_change >= 1, "max_aspect_change", "must be >= 1")
        need(self.max_scale_change >= 1, "max_scale_change", "must be >= 1")
        need(self.max_aspect >= 1, "max_aspect", "must be >= 1")
        need(self.max_pixels >= 1, "max_pixels", "must be >= 1")
        return self


def too_large(height: int, width: int, cfg: ValidityConfig) -> str | None:
    """The size check, on the message's height and width alone (before decoding)."""
    if cfg.enabled and height * width > cfg.max_pixels:
        return (
            f"too large: {width}x{height} = {height * width} pixels > validity.max_pixels={cfg.max_pixels}; "
            "publish a smaller stream (or raise validity.max_pixels)"
        )
    return None


def check_frame(
    rgb: np.ndarray,
    cfg: ValidityConfig,
    trained_size: Sequence[int] | None = None,
    greyscale_source: bool = False,
    trained_colour: bool = True,
) -> str | None:
    """None when the (H, W, 3) uint8 frame can be judged, else the reason (one line).

    `trained_size`: (height, width) of the training frames of this camera, when known.
    `greyscale_source`: the frame was converted from a mono encoding.
    """
    if not cfg.enabled:
        return None
    h, w = rgb.shape[:2]
    if h < 1 or w < 1:
        return "empty frame"
    reason = too_large(h, w, cfg)
    if reason:
        return reason
    if trained_size:
        th, tw = (int(v) for v in trained_size)
        aspect = (w / h) / (tw / th)
        if max(aspect, 1 / aspect) > cfg.max_aspect_change:
            return (
                f"aspect ratio {w}x{h} differs from the training frames' {tw}x{th} by more than "
                f"validity.max_aspect_change={cfg.max_aspect_change:g}: is this the camera the model knows?"
            )
        scale = (h * w) / (th * tw)
        if max(scale, 1 / scale) > cfg.max_scale_change:
            return (
                f"size {w}x{h} is more than validity.max_scale_change={cfg.max_scale_change:g} times "
                f"{'larger' if scale > 1 else 'smaller'} in area than the training frames' {tw}x{th}"
            )
    elif max(w / h, h / w) > cfg.max_aspect:
        return f"aspect ratio {w}x{h} beyond validity.max_aspect={cfg.max_aspect:g}"
    # nearest-neighbour samples: clipped pixels stay clipped (an area average would blur them)
    thumb = (
        rgb if (h, w) == (THUMB, THUMB) else cv2.resize(rgb, (THUMB, THUMB), interpolation=cv2.INTER_NEAREST)
    )
    luma = cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY)
    std = float(luma.std())
    if std < cfg.min_std:
        return (
            f"near-uniform frame (luminance std {std:.1f} < validity.min_std={cfg.min_std:g}, mean "
            f"{float(luma.mean()):.0f}): covered, blank or failed camera?"
        )
    clipped = float(np.mean((luma >= 250) | (luma <= 5)))
    if clipped > cfg.max_clipped_fraction:
        return (
            f"{clipped:.0%} of the frame is clipped to white or black (> validity.max_clipped_fraction="
            f"{cfg.max_clipped_fraction:g}): over- or under-exposed"
        )
    grey = (greyscale_source or _channels_equal(thumb)) and trained_colour
    if grey and not cfg.allow_greyscale:
        return "greyscale frame, but the model was trained on colour frames (validity.allow_greyscale)"
    return None


def _channels_equal(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def frame_sizes(frames: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """{camera: [height, width]} of example frames (what training records in the checkpoint)."""
    return {cam: [int(f.shape[0]), int(f.shape[1])] for cam, f in frames.items()}
