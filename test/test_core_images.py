"""Decoding camera frames: every accepted encoding, and clear refusals."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from reward_model_ros.core.images import ENCODINGS, ImageEncodingError, channels_of, decode

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), np.uint8)


def encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    conv = {
        "rgb8": lambda x: x,
        "bgr8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2BGR),
        "8UC3": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2BGR),
        "rgba8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2RGBA),
        "bgra8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2BGRA),
        "mono8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY),
        "8UC1": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY),
    }
    return conv[encoding](rgb)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_every_encoding_decodes_to_rgb(encoding):
    raw = encode(RGB, encoding)
    out = decode(raw.tobytes(), 6, 5, encoding)
    assert out.shape == (6, 5, 3) and out.dtype == np.uint8
    if channels_of(encoding) == 1:
        gray = raw if raw.ndim == 2 else raw[..., 0]
        assert (out == gray[..., None]).all()  # mono replicated to 3 channels
    else:
        assert (out == RGB).all()


def test_row_padding_is_skipped():
    padded = np.zeros((6, 5 * 3 + 7), np.uint8)
    padded[:, :15] = RGB.reshape(6, 15)
    out = decode(padded.tobytes(), 6, 5, "rgb8", step=22)
    assert (out == RGB).all()


def test_rgb8_without_padding_is_not_copied():
    data = bytearray(RGB.tobytes())
    out = decode(data, 6, 5, "rgb8")
    data[0] = (data[0] + 1) % 256
    assert out[0, 0, 0] == data[0]


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "rgb16", "32FC1"])
def test_sixteen_bit_is_refused_with_advice(encoding):
    with pytest.raises(ImageEncodingError, match=r"more than 8 bits.*colour stream"):
        decode(b"\0" * 120, 6, 5, encoding)


def test_unknown_encoding_lists_the_accepted_ones():
    with pytest.raises(ImageEncodingError, match=r"unknown encoding 'yuv422'; accepted: 8UC1, 8UC3, bgr8"):
        decode(b"\0" * 60, 6, 5, "yuv422")


@pytest.mark.parametrize(
    ("data_len", "h", "w", "step", "match"),
    [
        (89, 6, 5, 0, r"data length 89 does not match height\*step = 6\*15 = 90"),
        (0, 6, 5, 0, r"data length 0"),
        (0, 0, 0, 0, r"empty frame"),
        (90, 6, 5, 10, r"step 10 is smaller than width\*channels = 15"),
    ],
)
def test_bad_sizes_are_refused(data_len, h, w, step, match):
    with pytest.raises(ImageEncodingError, match=match):
        decode(b"\0" * data_len, h, w, "rgb8", step)
