"""camera_node: frames from a camera, a video file or a stream (OpenCV) as sensor_msgs/Image.

Publishes `image_raw` and `camera_info` (same header: capture time, `frame_id`) with the
QoS chosen by `qos_reliability`/`qos_depth` (reliable by default, as rviz2's Image display
subscribes). `camera_info` comes from `calibration_file`, or is an uncalibrated one (only
width and height set, K all zero).

How frames are read:
- A video file is read in a timer callback at `rate`: reading and decoding one frame takes
  milliseconds, so it does not hold up the executor, and the timer paces playback. At the
  end of the file the node rewinds (`loop`) or logs it, waits up to 2 s until reliable
  subscribers have the last frame, and exits with code 0, so that scripts and launch files
  can tell the video is done. Discovery between processes takes from 0.1 s to a few
  seconds, and frames published before it are lost: `wait_for_subscriber` holds the first
  frame until image_raw has a subscriber.
- A live source (device index, V4L2 path, stream URL) is read by a capture thread, since
  read() blocks until the next frame. The thread publishes each frame as soon as it has
  it, at most `rate` per second (frames that come sooner are dropped), so no frame waits
  for a timer tick and none is published twice. When read() fails (camera unplugged,
  stream gone) the thread reopens the source every `reconnect_interval` s, with a
  throttled warning; the node keeps running.
A source that cannot be opened at start-up stops the node with one line (exit code 2)
saying which source, why and what to do.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo
from sensor_msgs.msg import Image as ImageMsg
from std_msgs.msg import Header

from reward_model_ros.core.calibration import CalibrationError, load_calibration
from reward_model_ros.core.stats import RateWindow
from reward_model_ros.nodes._run import spin_node
from reward_model_ros.nodes.params import (
    Param,
    ParameterError,
    all_of,
    declare_parameters,
    in_range,
    non_empty,
    one_of,
    positive,
)
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.conversions import array_to_image, calibration_to_camera_info
from reward_model_ros.ros.diagnostics import OK, WARN, Diagnostics

NODE_NAME = "camera"


def _fourcc(v: str) -> str | None:
    return None if len(v) in (0, 4) else "must be empty or 4 characters, e.g. MJPG or YUYV"


PARAMETERS = (
    Param(
        "source",
        "0",
        "device index (0), V4L2 path (/dev/video0), video file, or stream URL (rtsp://, http://)",
        non_empty,
        read_only=True,
    ),
    Param(
        "frame_id", "camera_optical_frame", "frame_id of image_raw and camera_info", non_empty, read_only=True
    ),
    Param(
        "rate",
        30.0,
        "frames per second: playback rate of a file, upper bound for a live source",
        all_of(positive, in_range(0.0, 1000.0)),
        read_only=True,
    ),
    Param(
        "encoding",
        "rgb8",
        "published encoding; bgr8 skips the colour conversion",
        one_of("rgb8", "bgr8"),
        read_only=True,
    ),
    Param(
        "width",
        0,
        "frame width to request (and resize to); 0 = the source's",
        in_range(0, 16384),
        read_only=True,
    ),
    Param(
        "height",
        0,
        "frame height to request (and resize to); 0 = the source's",
        in_range(0, 16384),
        read_only=True,
    ),
    Param("loop", False, "video file: start again at the end (false: exit with code 0)", read_only=True),
    Param(
        "wait_for_subscriber",
        False,
        "video file: start playing once image_raw has a subscriber, so no frame is lost to discovery",
        read_only=True,
    ),
    Param(
        "calibration_file",
        "",
        "camera_calibration YAML for camera_info; empty = uncalibrated (K all zero)",
        read_only=True,
    ),
    Param(
        "qos_reliability",
        "reliable",
        "QoS of image_raw and camera_info (rviz2's Image display subscribes reliable)",
        one_of("reliable", "best_effort"),
        read_only=True,
    ),
    Param(
        "qos_depth", 5, "QoS history depth of image_raw and camera_info", in_range(1, 1000), read_only=True
    ),
    Param(
        "reconnect_interval",
        2.0,
        "seconds between attempts to reopen a lost live source",
        all_of(positive, in_range(0.0, 3600.0)),
        read_only=True,
    ),
    Param(
        "stream_timeout",
        5.0,
        "stream URL: seconds to wait for the connection and for each frame",
        all_of(positive, in_range(0.0, 600.0)),
        read_only=True,
    ),
    Param(
        "fourcc",
        "",
        "device: pixel format to request, e.g. MJPG; empty = the driver's",
        _fourcc,
        read_only=True,
    ),
)

STREAM_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935}


class SourceError(ParameterError):
    """A capture source that cannot be opened or yields no frames; says which, why, what to do."""


# --- sources (pure) -------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    kind: str
    """device (an index), v4l2 (a /dev path), file, or stream (a URL)"""
    target: int | str
    """what OpenCV opens"""

    @property
    def live(self) -> bool:
        return self.kind != "file"

    def describe(self) -> str:
        if self.kind == "device":
            return f"camera index {self.target} (/dev/video{self.target})"
        if self.kind == "v4l2":
            return f"V4L2 device {self.target}"
        if self.kind == "file":
            return f"video file {self.target}"
        return f"stream {redact(str(self.target))}"


def parse_source(text: str) -> Source:
    """What kind of source the `source` parameter names."""
    text = text.strip()
    if text.isdigit():
        return Source("device", int(text))
    if text.startswith("/dev/"):
        return Source("v4l2", text)
    if "://" in text:
        return Source("stream", text)
    return Source("file", os.path.expanduser(text))


def redact(url: str) -> str:
    """`url` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def diagnose(source: Source, timeout: float) -> tuple[str, str]:
    """(why, what to do) for a source OpenCV could not open, as far as this machine can tell."""
    if source.kind in ("device", "v4l2"):
        path = f"/dev/video{source.target}" if source.kind == "device" else str(source.target)
        if not os.path.exists(path):
            return (
                f"{path} does not exist",
                "Plug the camera in, list cameras with `ls /dev/video*` or `v4l2-ctl --list-devices`, "
                "and set the `source` parameter",
            )
        if not os.access(path, os.R_OK | os.W_OK):
            return f"no permission to open {path}", "Add the user to the `video` group (then log in again)"
        return (
            f"{path} exists but OpenCV could not open it for capture",
            "Close other programs using the camera, or try the camera's other /dev/video* nodes "
            "(some are metadata nodes)",
        )
    if source.kind == "file":
        path = Path(str(source.target))
        if not path.exists():
            return (
                "the file does not exist",
                "Fix the `source` parameter (relative paths start at the working directory)",
            )
        if not path.is_file():
            return "it is not a file", "Set `source` to a video file"
        return (
            "OpenCV cannot decode it",
            "Check that it plays (e.g. `ffprobe`), or convert it to MJPG .avi or H.264 .mp4",
        )
    return _diagnose_stream(str(source.target), timeout)


def _diagnose_stream(url: str, timeout: float) -> tuple[str, str]:
    parts = urlsplit(url)
    port = parts.port or STREAM_PORTS.get(parts.scheme)
    if not parts.hostname or port is None:
        return "OpenCV (FFmpeg) could not open it", "Check the URL"
    where = f"{parts.hostname}:{port}"
    try:
        with socket.create_connection((parts.hostname, port), timeout=min(timeout, 3.0)):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return f"cannot connect to {where} ({reason})", "Check the URL and that the stream server is running"
    return (
        f"{where} accepts connections but no video stream opened within {timeout:g} s",
        "Check the stream path and credentials in the URL, or raise `stream_timeout`",
    )


# --- frames (pure) ----------------------------------------------------------------------------
def to_encoding(frame: np.ndarray, encoding: str) -> np.ndarray:
    """An OpenCV frame (BGR, BGRA or grey) as `encoding` (rgb8 or bgr8) pixels."""
    rgb = encoding == "rgb8"
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB if rgb else cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if rgb else cv2.COLOR_BGRA2BGR)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if rgb else frame


class RateLimiter:
    """Accepts at most `rate` events per second on a fixed schedule.

    An event up to a third of a period early is accepted, so a camera running at `rate`
    with some jitter loses no frames; after a gap the schedule restarts.
    """

    def __init__(self, rate: float) -> None:
        self.period = 1.0 / rate
        self._due: float | None = None

    def accept(self, t: float) -> bool:
        if self._due is not None and t < self._due - self.period / 3:
            return False
        if self._due is None or t > self._due + self.period:
            self._due = t + self.period
        else:
            self._due += self.period
        return True


@dataclass(frozen=True)
class CaptureRequest:
    width: int
    height: int
    fps: float
    fourcc: str
    timeout: float


def open_capture(source: Source, request: CaptureRequest) -> cv2.VideoCapture | None:
    """An opened capture for `source`, or None. OpenCV's own warnings are silenced here:
    the caller says what failed."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)
    try:
        if source.kind == "stream":
            ms = int(request.timeout * 1000)
            cap = cv2.VideoCapture(
                source.target,
                cv2.CAP_FFMPEG,
                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms],
            )
        elif source.kind == "v4l2":
            cap = cv2.VideoCapture(source.target, cv2.CAP_V4L2)
        else:
            cap = cv2.VideoCapture(source.target)
    finally:
        cv2.setLogLevel(level)
    if not cap.isOpened():
        cap.release()
        return None
    if source.kind in ("device", "v4l2"):
        if request.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*request.fourcc))
        if request.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, request.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, request.height)
        cap.set(cv2.CAP_PROP_FPS, request.fps)
    return cap


# --- the node -------------------------------------------------------------------------------
class CameraNode(Node):
    def __init__(self, **node_kwargs) -> None:
        # set before anything can fail: rclpy destroys a half-built node at shutdown
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cap = None
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare_parameters(self, PARAMETERS)
        if (p["width"] == 0) != (p["height"] == 0):
            raise ParameterError(
                f"{self.get_name()}: parameters width={p['width']} and height={p['height']} must both "
                "be 0 (the source's size) or both be set"
            )
        self._source = parse_source(p["source"])
        self._encoding = p["encoding"]
        self._frame_id = p["frame_id"]
        self._size = (p["width"], p["height"]) if p["width"] else None
        self._loop = p["loop"]
        self._wait_for_subscriber = p["wait_for_subscriber"] and not self._source.live
        self._reconnect_interval = p["reconnect_interval"]
        self._calibration = None
        if p["calibration_file"]:
            try:
                self._calibration = load_calibration(p["calibration_file"])
            except CalibrationError as exc:
                raise ParameterError(f"{self.get_name()}: parameter calibration_file: {exc}") from exc
        self._request = CaptureRequest(p["width"], p["height"], p["rate"], p["fourcc"], p["stream_timeout"])

        # FFmpeg's own lines (e.g. "Connection refused") would come before ours; set
        # OPENCV_FFMPEG_LOGLEVEL=16 in the environment to see them.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "0")
        cap = open_capture(self._source, self._request)
        if cap is None:
            why, todo = diagnose(self._source, p["stream_timeout"])
            raise SourceError(f"{self.get_name()}: cannot open {self._source.describe()}: {why}. {todo}.")
        self._cap = cap
        qos = qos_profiles.images(p["qos_reliability"], p["qos_depth"])
        self._image_pub = self.create_publisher(ImageMsg, "image_raw", qos)
        self._info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        self._info: CameraInfo | None = None
        self._published = 0
        self._timer = None

        if self._source.live:
            self._limiter = RateLimiter(p["rate"])
            self._thread = threading.Thread(target=self._capture_thread, name="camera-capture", daemon=True)
            self._thread.start()
        else:
            ok, frame = cap.read()
            if not ok:
                cap.release()
                raise SourceError(
                    f"{self.get_name()}: {self._source.describe()} opened but has no readable frame. "
                    "Check that it plays (e.g. `ffprobe`), or convert it to MJPG .avi or H.264 .mp4."
                )
            self._pending: np.ndarray | None = frame
            self._timer = self.create_timer(1.0 / p["rate"], self._on_file_timer)
        self.frame_rate = RateWindow()
        self.diagnostics = Diagnostics(self, "camera", self._health)
        self.get_logger().info(
            f"publishing {self._source.describe()} on {self._image_pub.topic_name} and "
            f"{self._info_pub.topic_name}: {self._encoding}, up to {p['rate']:g} Hz, "
            f"{p['qos_reliability']} QoS depth {p['qos_depth']}, frame_id {self._frame_id}, "
            + (f"calibration {p['calibration_file']}" if self._calibration else "uncalibrated")
        )

    # --- video file: a timer reads and publishes ---
    def _on_file_timer(self) -> None:
        if self._wait_for_subscriber:
            if self._image_pub.get_subscription_count() == 0:
                self.get_logger().info(f"waiting for a subscriber of {self._image_pub.topic_name}", once=True)
                return
            self._wait_for_subscriber = False
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            ok, frame = self._cap.read()
            if not ok and self._loop:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._cap.read()
                if not ok:
                    self.get_logger().error(f"cannot rewind {self._source.describe()}")
            if not ok:
                self._finish()
                return
        self._publish(frame, self.get_clock().now())

    def _finish(self) -> None:
        self._timer.cancel()
        self.get_logger().info(
            f"end of {self._source.describe()} after {self._published} frames (loop is false): exiting"
        )
        for pub in (self._image_pub, self._info_pub):
            pub.wait_for_all_acked(Duration(seconds=2.0))
        self.context.try_shutdown()

    # --- live source: a thread reads, publishes, reconnects ---
    def _capture_thread(self) -> None:
        try:
            self._capture_loop()
        except Exception as exc:
            if self.context.ok() and not self._stop.is_set():
                self.get_logger().fatal(f"capture thread failed: {exc!r}; exiting")
                self.context.try_shutdown()

    def _capture_loop(self) -> None:
        cap, desc, interval = self._cap, self._source.describe(), self._reconnect_interval
        lost_at, attempts = 0.0, 0
        while not self._stop.is_set():
            if cap is None:
                attempts += 1
                cap = open_capture(self._source, self._request)
                if cap is None:
                    self.get_logger().warning(
                        f"still cannot open {desc} ({attempts} attempts in "
                        f"{time.monotonic() - lost_at:.0f} s); retrying every {interval:g} s",
                        throttle_duration_sec=10.0,
                    )
                    self._stop.wait(interval)
                    continue
                self.get_logger().info(f"reopened {desc} after {time.monotonic() - lost_at:.1f} s")
            ok, frame = cap.read()
            stamp = self.get_clock().now()
            if not ok:
                cap.release()
                cap, lost_at, attempts = None, time.monotonic(), 0
                self._cap = None
                self.get_logger().warning(
                    f"lost {desc} (read failed after {self._published} frames published); "
                    f"reopening every {interval:g} s",
                    throttle_duration_sec=10.0,
                )
                self._stop.wait(interval)
                continue
            self._cap = cap
            if self._limiter.accept(time.monotonic()):
                self._publish(frame, stamp)
        if cap is not None:
            cap.release()

    # --- both ---
    def _publish(self, frame: np.ndarray, stamp) -> None:
        height, width = frame.shape[:2]
        if self._size is not None and (width, height) != self._size:
            self.get_logger().info(
                f"{self._source.describe()} delivers {width}x{height} frames; resizing them to "
                f"{self._size[0]}x{self._size[1]} as width/height ask",
                once=True,
            )
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
            height, width = frame.shape[:2]
        header = Header(stamp=stamp.to_msg(), frame_id=self._frame_id)
        image = array_to_image(to_encoding(frame, self._encoding), self._encoding, header)
        info = self._camera_info(width, height)
        info.header = header
        self._image_pub.publish(image)
        self._info_pub.publish(info)
        self._published += 1
        self.frame_rate.tick()

    def _health(self):
        """/diagnostics: the frame rate against the one asked for."""
        rate, want = self.frame_rate.rate(), self.p["rate"]
        values = {"source": self._source.describe(), "rate_hz": rate, "rate_wanted_hz": want}
        values["frames_published"] = self._published
        if self._published == 0:
            return WARN, "no frame published yet", values
        if self._source.live and rate < 0.8 * want:
            return WARN, f"{rate:.1f} frames/s, below the {want:g} asked for", values
        return OK, f"{rate:.1f} frames/s", values

    def _camera_info(self, width: int, height: int) -> CameraInfo:
        if self._info is not None and (self._info.width, self._info.height) == (width, height):
            return self._info
        if self._calibration is None:
            self._info = CameraInfo(width=width, height=height)
        else:
            self._info = calibration_to_camera_info(self._calibration)
            cal = self._calibration
            if (cal.width, cal.height) != (width, height):
                self.get_logger().warning(
                    f"calibration is for {cal.width}x{cal.height} but frames are {width}x{height}: "
                    "camera_info does not fit them; recalibrate or set width/height to match"
                )
        self.get_logger().info(f"publishing {width}x{height} {self._encoding} frames")
        return self._info

    def destroy_node(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            if self._thread.is_alive():
                self.get_logger().warning("capture thread still blocked in read(); leaving it to the exit")
        elif self._cap is not None:
            self._cap.release()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
