"""Conversions between ROS messages and the core's types: pure functions, one place.

Each has a round-trip test (test/test_conversions.py). Bad images raise the core's
`ImageEncodingError`, which names what arrived and what is accepted.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose as PoseMsg
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from reward_model_ros.core.arm_safety import Pose
from reward_model_ros.core.calibration import CameraCalibration
from reward_model_ros.core.images import (
    ENCODINGS,
    GREY_ENCODINGS,
    ImageEncodingError,
    decode,
    decode_compressed,
)
from reward_model_ros.core.stamps import NS_PER_S
from reward_model_ros.core.stamps import stamp_ns as stamp_to_nanoseconds  # noqa: F401  (re-exported)


def image_to_rgb(msg: Image) -> np.ndarray:
    """An (H, W, 3) RGB uint8 array from a sensor_msgs/Image (no copy for plain rgb8).

    :raises ImageEncodingError: unknown/16-bit encoding, big-endian data, bad data length.
    """
    if msg.is_bigendian and msg.encoding not in ENCODINGS:
        raise ImageEncodingError(f"big-endian {msg.encoding!r} frames are not accepted")
    return decode(msg.data, msg.height, msg.width, msg.encoding, msg.step)


def compressed_to_rgb(msg: CompressedImage) -> tuple[np.ndarray, bool]:
    """(RGB uint8 (H, W, 3), greyscale source?) from a sensor_msgs/CompressedImage (JPEG/PNG).

    :raises ImageEncodingError: undecodable data, depth streams, 16-bit images.
    """
    return decode_compressed(msg.data, msg.format)


def frame_to_rgb(msg: Image | CompressedImage) -> tuple[np.ndarray, bool]:
    """(RGB uint8 (H, W, 3), greyscale source?) from either image message.

    :raises ImageEncodingError: see image_to_rgb and compressed_to_rgb.
    """
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg)
    return image_to_rgb(msg), msg.encoding in GREY_ENCODINGS


def is_compressed_topic(topic: str) -> bool:
    """image_transport's naming: `<base>/compressed` carries sensor_msgs/CompressedImage."""
    return topic.rstrip("/").rsplit("/", 1)[-1] == "compressed"


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90, header: Header | None = None):
    """A sensor_msgs/CompressedImage of an RGB uint8 frame, as image_transport's compressed
    plugin writes it (format "rgb8; jpeg compressed bgr8")."""
    import cv2

    if fmt not in ("jpeg", "png"):
        raise ImageEncodingError(f"format {fmt!r}: jpeg or png")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageEncodingError(f"OpenCV could not encode a {rgb.shape} frame as {fmt}")
    msg = CompressedImage(format=f"rgb8; {fmt} compressed bgr8")
    msg.data = data.tobytes()
    if header is not None:
        msg.header = header
    return msg


def array_to_image(pixels: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """A sensor_msgs/Image holding `pixels` (H, W[, C]) uint8 in `encoding`.

    Uses `tobytes()`: assigning the ndarray itself to `msg.data` is ~1000x slower.
    """
    if pixels.dtype != np.uint8:
        raise ImageEncodingError(f"pixels must be uint8, got {pixels.dtype}")
    channels = ENCODINGS.get(encoding, (None,))[0]
    if channels is None:
        raise ImageEncodingError(f"unknown encoding {encoding!r}; accepted: {', '.join(sorted(ENCODINGS))}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] != channels:
        raise ImageEncodingError(f"{encoding} needs {channels} channels, array has {pixels.shape[2]}")
    height, width = pixels.shape[:2]
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=width * channels)
    msg.data = np.ascontiguousarray(pixels).tobytes()
    if header is not None:
        msg.header = header
    return msg


def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_stamp(seconds: float) -> Time:
    sec = int(seconds // 1)
    nanosec = round((seconds - sec) * 1e9)
    if nanosec >= NS_PER_S:
        sec, nanosec = sec + 1, nanosec - NS_PER_S
    return Time(sec=sec, nanosec=nanosec)


def calibration_to_camera_info(cal: CameraCalibration, header: Header | None = None) -> CameraInfo:
    info = CameraInfo(
        width=cal.width,
        height=cal.height,
        distortion_model=cal.distortion_model,
        d=list(cal.d),
        k=list(cal.k),
        r=list(cal.r),
        p=list(cal.p),
    )
    if header is not None:
        info.header = header
    return info


def camera_info_to_calibration(info: CameraInfo, camera_name: str = "") -> CameraCalibration:
    return CameraCalibration(
        width=info.width,
        height=info.height,
        camera_name=camera_name,
        distortion_model=info.distortion_model,
        k=[float(v) for v in info.k],
        d=[float(v) for v in info.d],
        r=[float(v) for v in info.r],
        p=[float(v) for v in info.p],
    )


def pose_from_ros(msg: PoseMsg) -> Pose:
    """geometry_msgs/Pose -> the arm safety core's Pose (values as they are: NaN stays NaN)."""
    p, q = msg.position, msg.orientation
    return Pose((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))


def pose_to_ros(pose: Pose) -> PoseMsg:
    msg = PoseMsg()
    msg.position.x, msg.position.y, msg.position.z = (float(v) for v in pose.position)
    q = msg.orientation
    q.x, q.y, q.z, q.w = (float(v) for v in pose.orientation)
    return msg
