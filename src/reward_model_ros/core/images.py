"""Camera frames as numpy arrays: decoding raw sensor_msgs/Image payloads, and encodings.

No ROS import: `reward_model_ros.ros.conversions` passes the message's fields here.
"""

from __future__ import annotations

import numpy as np

# encoding -> (channels, order of the channels); all 8 bits per channel
ENCODINGS: dict[str, tuple[int, str]] = {
    "rgb8": (3, "rgb"),
    "bgr8": (3, "bgr"),
    "rgba8": (4, "rgba"),
    "bgra8": (4, "bgra"),
    "mono8": (1, "mono"),
    "8UC1": (1, "mono"),
    "8UC3": (3, "bgr"),  # OpenCV's default channel order
}
SIXTEEN_BIT = {"mono16", "rgb16", "bgr16", "rgba16", "bgra16", "16UC1", "16UC3", "16SC1", "32FC1"}


class ImageEncodingError(ValueError):
    """A camera frame this package cannot use: unknown or 16-bit encoding, or a data
    length that does not match its width, height and step."""


def decode(
    data: bytes | bytearray | memoryview | np.ndarray, height: int, width: int, encoding: str, step: int = 0
) -> np.ndarray:
    """The frame as an RGB uint8 array of shape (height, width, 3).

    `step` is the row length in bytes (0 = width * channels, no padding). No copy is made
    for rgb8 frames without row padding; other encodings are converted with OpenCV.

    :raises ImageEncodingError: naming what arrived and what is accepted.
    """
    if encoding in SIXTEEN_BIT:
        raise ImageEncodingError(
            f"encoding {encoding!r} has more than 8 bits per channel and is not accepted; "
            f"publish 8-bit colour or mono ({', '.join(sorted(ENCODINGS))}), e.g. the colour "
            "stream of a depth camera, not its depth stream"
        )
    if encoding not in ENCODINGS:
        raise ImageEncodingError(f"unknown encoding {encoding!r}; accepted: {', '.join(sorted(ENCODINGS))}")
    channels, order = ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise ImageEncodingError(f"empty frame ({width}x{height})")
    row = width * channels
    step = step or row
    if step < row:
        raise ImageEncodingError(f"step {step} is smaller than width*channels = {row} for {encoding}")
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buf.size != step * height:
        raise ImageEncodingError(
            f"data length {buf.size} does not match height*step = {height}*{step} = {step * height} "
            f"for a {width}x{height} {encoding} frame"
        )
    pixels = buf.reshape(height, step)[:, :row].reshape(height, width, channels)
    return to_rgb(pixels, order)


def to_rgb(pixels: np.ndarray, order: str) -> np.ndarray:
    """Convert an (H, W, C) uint8 array with channel order `order` to RGB."""
    import cv2

    if order == "rgb":
        return pixels
    if order == "bgr":
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if order == "rgba":
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)
    if order == "bgra":
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    if order == "mono":
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    raise ImageEncodingError(f"unknown channel order {order!r}")


def channels_of(encoding: str) -> int:
    """Number of 8-bit channels of an accepted encoding."""
    if encoding not in ENCODINGS:
        raise ImageEncodingError(f"unknown encoding {encoding!r}; accepted: {', '.join(sorted(ENCODINGS))}")
    return ENCODINGS[encoding][0]
