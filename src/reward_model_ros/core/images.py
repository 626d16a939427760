"""Camera frames as numpy arrays: decoding raw sensor_msgs/Image payloads and
sensor_msgs/CompressedImage payloads (JPEG, PNG), and encodings.

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
GREY_ENCODINGS = ("mono8", "8UC1")
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


def decode_compressed(
    data: bytes | bytearray | memoryview | np.ndarray, fmt: str = ""
) -> tuple[np.ndarray, bool]:
    """A sensor_msgs/CompressedImage payload as (RGB uint8 (H, W, 3), whether it is greyscale).

    `fmt` is the message's `format`: image_transport's "<encoding>; <jpeg|png> compressed
    <encoding>" (the second encoding is the channel order that was compressed: "rgb8" keeps
    RGB, anything else is OpenCV's BGR), or a bare "jpeg" / "png" as some cameras publish.
    Depth streams ("compressedDepth") and 16-bit images are refused.

    :raises ImageEncodingError: naming what arrived and what is accepted.
    """
    import cv2

    fmt = fmt or ""
    if "compresseddepth" in fmt.lower():
        raise ImageEncodingError(
            f"format {fmt!r} is a compressed depth stream and is not accepted; subscribe to the "
            "colour stream's /compressed topic (8-bit JPEG or PNG)"
        )
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buf.size == 0:
        raise ImageEncodingError(f"empty CompressedImage (format {fmt!r})")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageEncodingError(
            f"cannot decode a {buf.size}-byte CompressedImage (format {fmt!r}): not a complete JPEG "
            "or PNG; check the publisher (image_transport's compressed plugin writes both)"
        )
    if img.dtype != np.uint8:
        raise ImageEncodingError(
            f"CompressedImage (format {fmt!r}) holds a {img.dtype} image; only 8 bits per channel are "
            "accepted, e.g. the colour stream of a depth camera, not its depth stream"
        )
    original, _, rest = fmt.partition(";")
    compressed_as = rest.split()[-1] if "compressed" in rest else ""
    if img.ndim == 2 or img.shape[2] == 1:
        return to_rgb(img.reshape(img.shape[0], img.shape[1], 1), "mono"), True
    grey = original.strip() in GREY_ENCODINGS
    if img.shape[2] == 4:
        return to_rgb(img, "rgba" if compressed_as == "rgba8" else "bgra"), grey
    return to_rgb(img, "rgb" if compressed_as == "rgb8" else "bgr"), grey


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_size(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(height, width) read from a PNG or JPEG header without decoding; None if not found.

    Lets the pixel cap refuse a huge compressed frame before any decoding work.
    """
    head = bytes(data[:65536])
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        length = int.from_bytes(head[i + 2 : i + 4], "big")
        if marker in _JPEG_SOF:
            return int.from_bytes(head[i + 5 : i + 7], "big"), int.from_bytes(head[i + 7 : i + 9], "big")
        i += 2 + length
    return None
