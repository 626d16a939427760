"""ROS message <-> core conversions: round trips and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from reward_model_ros.core.calibration import CalibrationError, CameraCalibration, load_calibration
from reward_model_ros.core.images import ImageEncodingError, compressed_size
from reward_model_ros.ros.conversions import (
    array_to_image,
    calibration_to_camera_info,
    camera_info_to_calibration,
    compressed_to_rgb,
    frame_to_rgb,
    image_to_rgb,
    is_compressed_topic,
    rgb_to_compressed,
    seconds_to_stamp,
    stamp_to_nanoseconds,
    stamp_to_seconds,
)

RGB = np.random.default_rng(1).integers(0, 256, (4, 7, 3), np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_image_round_trip(encoding):
    import cv2

    code = {
        "rgb8": None,
        "bgr8": cv2.COLOR_RGB2BGR,
        "rgba8": cv2.COLOR_RGB2RGBA,
        "bgra8": cv2.COLOR_RGB2BGRA,
    }[encoding]
    pixels = RGB if code is None else cv2.cvtColor(RGB, code)
    header = Header(stamp=Time(sec=5, nanosec=6), frame_id="cam")
    msg = array_to_image(pixels, encoding, header)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (4, 7, 7 * pixels.shape[2], encoding)
    assert msg.header == header
    assert (image_to_rgb(msg) == RGB).all()


def test_mono_round_trip():
    gray = RGB[..., 0].copy()
    out = image_to_rgb(array_to_image(gray, "mono8"))
    assert (out == gray[..., None]).all()


def test_array_to_image_refusals():
    with pytest.raises(ImageEncodingError, match="needs 3 channels, array has 4"):
        array_to_image(np.zeros((2, 2, 4), np.uint8), "rgb8")
    with pytest.raises(ImageEncodingError, match="uint8"):
        array_to_image(np.zeros((2, 2, 3), np.float32), "rgb8")
    with pytest.raises(ImageEncodingError, match="unknown encoding 'jpeg'"):
        array_to_image(np.zeros((2, 2, 3), np.uint8), "jpeg")


def test_bad_messages_are_refused():
    msg = Image(height=4, width=7, encoding="rgb8", step=21, data=b"\0" * 20)
    with pytest.raises(ImageEncodingError, match="data length 20"):
        image_to_rgb(msg)
    msg = Image(height=4, width=7, encoding="16UC1", step=14, data=b"\0" * 56)
    with pytest.raises(ImageEncodingError, match="more than 8 bits"):
        image_to_rgb(msg)


@pytest.mark.parametrize("seconds", [0.0, 1.5, 1_700_000_000.123456789, 2.9999999999])
def test_stamp_round_trip(seconds):
    stamp = seconds_to_stamp(seconds)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert stamp_to_seconds(stamp) == pytest.approx(seconds, abs=1e-9 * max(1.0, seconds) * 4)
    assert stamp_to_nanoseconds(Time(sec=2, nanosec=5)) == 2_000_000_005


CALIBRATION = """\
image_width: 640
image_height: 480
camera_name: front
camera_matrix: {rows: 3, cols: 3, data: [600.0, 0.0, 320.0, 0.0, 600.0, 240.0, 0.0, 0.0, 1.0]}
distortion_model: plumb_bob
distortion_coefficients: {rows: 1, cols: 5, data: [0.1, -0.2, 0.0, 0.0, 0.05]}
rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}
projection_matrix: {rows: 3, cols: 4, data: [600, 0, 320, 0, 0, 600, 240, 0, 0, 0, 1, 0]}
"""


def test_calibration_file_to_camera_info_and_back(tmp_path):
    path = tmp_path / "front.yaml"
    path.write_text(CALIBRATION)
    cal = load_calibration(path)
    assert cal.width == 640 and cal.k[0] == 600.0 and cal.d == [0.1, -0.2, 0.0, 0.0, 0.05]
    info = calibration_to_camera_info(cal, Header(frame_id="front_optical"))
    assert info.header.frame_id == "front_optical" and list(info.p)[2] == 320.0
    assert camera_info_to_calibration(info, "front") == cal


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("image_width: 640\n", r"missing or non-integer field 'image_height'"),
        ("[1, 2]\n", r"expected a mapping"),
        (
            "image_width: 1\nimage_height: 1\ncamera_matrix: {data: [1, 2]}\n",
            r"camera_matrix.data must be a list of 9",
        ),
        ("a: [\n", r"not valid YAML"),
    ],
)
def test_bad_calibration_files(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=match):
        load_calibration(path)
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibration(tmp_path / "none.yaml")


def test_default_calibration_is_identity_rectification():
    assert CameraCalibration(1, 1).r == [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]


# a smooth colour frame (JPEG keeps it close) with a distinct colour per corner
SMOOTH = np.stack(
    [*np.meshgrid(np.linspace(20, 230, 64), np.linspace(40, 200, 48)), np.full((48, 64), 90.0)], 2
).astype(np.uint8)


def test_compressed_round_trip_keeps_the_channel_order():
    import cv2

    png = rgb_to_compressed(SMOOTH, "png", header=Header(frame_id="cam"))
    assert png.format == "rgb8; png compressed bgr8" and png.header.frame_id == "cam"
    rgb, grey = compressed_to_rgb(png)
    assert np.array_equal(rgb, SMOOTH) and not grey  # lossless, and R is still R
    jpeg = rgb_to_compressed(SMOOTH, "jpeg", quality=95)
    rgb, _ = frame_to_rgb(jpeg)
    assert rgb.shape == SMOOTH.shape and np.abs(rgb.astype(int) - SMOOTH).mean() < 2
    # a publisher that compressed an RGB matrix as is says so ("compressed rgb8")
    _, data = cv2.imencode(".png", SMOOTH)
    as_is = CompressedImage(format="rgb8; png compressed rgb8", data=data.tobytes())
    assert np.array_equal(compressed_to_rgb(as_is)[0], SMOOTH)
    bare = CompressedImage(format="png", data=png.data)  # some cameras write only the codec
    assert np.array_equal(compressed_to_rgb(bare)[0], SMOOTH)
    # greyscale sources are flagged (the frame checks refuse them unless allowed)
    _, mono = cv2.imencode(".png", SMOOTH[:, :, 0])
    rgb, grey = compressed_to_rgb(CompressedImage(format="mono8; png compressed mono8", data=mono.tobytes()))
    assert grey and rgb.shape == SMOOTH.shape and np.array_equal(rgb[:, :, 0], rgb[:, :, 2])
    # frame_to_rgb on a raw Image flags mono encodings the same way
    assert frame_to_rgb(array_to_image(SMOOTH[:, :, 0], "mono8"))[1]


def test_bad_compressed_frames_are_refused_with_the_reason():
    import cv2

    png = rgb_to_compressed(SMOOTH, "png")
    with pytest.raises(ImageEncodingError, match="cannot decode a 10-byte CompressedImage"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 trunc"))
    with pytest.raises(ImageEncodingError, match="cannot decode"):
        compressed_to_rgb(CompressedImage(format="png", data=bytes(png.data)[: len(png.data) // 2]))
    with pytest.raises(ImageEncodingError, match="empty CompressedImage"):
        compressed_to_rgb(CompressedImage(format="jpeg"))
    with pytest.raises(ImageEncodingError, match="compressed depth stream"):
        compressed_to_rgb(CompressedImage(format="16UC1; compressedDepth png", data=png.data))
    _, deep = cv2.imencode(".png", (SMOOTH[:, :, 0].astype(np.uint16) * 256))
    with pytest.raises(ImageEncodingError, match="uint16 image; only 8 bits"):
        compressed_to_rgb(CompressedImage(format="png", data=deep.tobytes()))


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_size_is_read_from_the_header(fmt):
    import cv2

    big = cv2.resize(SMOOTH, (640, 480))
    msg = rgb_to_compressed(big, fmt)
    assert compressed_size(msg.data) == (480, 640)
    if fmt == "jpeg":  # a progressive JPEG has its size in another marker (SOF2)
        _, prog = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
        assert compressed_size(prog.tobytes()) == (480, 640)
    assert compressed_size(b"not an image") is None and compressed_size(b"") is None


def test_compressed_topic_names():
    assert is_compressed_topic("/cam/image_raw/compressed") and is_compressed_topic("compressed")
    assert not is_compressed_topic("/cam/image_raw") and not is_compressed_topic("/cam/compressed_raw")
