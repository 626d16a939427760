"""camera_node: a video file the test writes, published to this process over DDS; sources
that cannot be opened; bad parameters; a lost live source reopened (in-process, fake capture).

The video has one solid colour per frame (BGR = 10*i + 5, 230 - 10*i, 60), so each received
frame tells its index and whether the channels arrived in the published order.
"""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from helpers import spin_until, wait_for_topic
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from reward_model_ros.nodes import camera
from reward_model_ros.nodes.camera import (
    PARAMETERS,
    RateLimiter,
    Source,
    diagnose,
    parse_source,
    to_encoding,
)
from reward_model_ros.ros.conversions import stamp_to_nanoseconds
from reward_model_ros.ros.interface_check import spin_until as spin_for

ROOT = Path(__file__).resolve().parents[1]
W, H, N = 64, 48, 20
K = [50.0, 0.0, 32.0, 0.0, 51.0, 24.0, 0.0, 0.0, 1.0]
D = [0.1, -0.2, 0.001, 0.002, 0.0]
P = [50.0, 0.0, 32.0, 0.0, 0.0, 51.0, 24.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def bgr(i: int) -> tuple[int, int, int]:
    return (10 * i + 5, 230 - 10 * i, 60)


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "counter.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20, (W, H))
    assert writer.isOpened()
    for i in range(N):
        writer.write(np.full((H, W, 3), bgr(i), np.uint8))
    writer.release()
    return path


@pytest.fixture
def calibration(tmp_path) -> Path:
    path = tmp_path / "calibration.yaml"
    data = {
        "image_width": W,
        "image_height": H,
        "camera_name": "test_cam",
        "camera_matrix": {"rows": 3, "cols": 3, "data": K},
        "distortion_model": "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": D},
        "rectification_matrix": {"rows": 3, "cols": 3, "data": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]},
        "projection_matrix": {"rows": 3, "cols": 4, "data": P},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def subscribe(node, reliability=ReliabilityPolicy.RELIABLE) -> tuple[list[Image], list[CameraInfo]]:
    qos = QoSProfile(depth=100, reliability=reliability, history=HistoryPolicy.KEEP_LAST)
    images: list[Image] = []
    infos: list[CameraInfo] = []
    node.create_subscription(Image, "/image_raw", images.append, qos)
    node.create_subscription(CameraInfo, "/camera_info", infos.append, qos)
    return images, infos


def pixel(msg: Image) -> np.ndarray:
    """The centre pixel as (B, G, R), whatever the encoding."""
    px = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[msg.height // 2]
    px = px[: msg.width * 3].reshape(msg.width, 3)[msg.width // 2].astype(int)
    return px[::-1] if msg.encoding == "rgb8" else px


def frame_index(msg: Image) -> int:
    b, g, r = pixel(msg)
    i = round((b - 5) / 10)
    assert abs(g - (230 - 10 * i)) <= 6 and abs(r - 60) <= 6, f"not a test colour: BGR {b, g, r}"
    return i


def wait_exit(proc, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not proc.alive(), f"{proc.executable} still running after {timeout} s:\n{proc.output()}"
    return proc.popen.returncode


@pytest.mark.realtime
# --- across processes -----------------------------------------------------------------------
def test_publishes_a_video_file_with_calibration_at_the_rate_and_loops(
    ros_node, start_node, video, calibration
):
    images, infos = subscribe(ros_node)
    node = start_node(
        "camera_node",
        params={
            "source": str(video),
            "rate": 20.0,
            "frame_id": "test_camera",
            "calibration_file": str(calibration),
            "loop": True,
        },
    )
    spin_until(ros_node, lambda: len(images) >= N + 15, 20.0, f"{N + 15} frames on /image_raw")
    assert node.alive(), node.output()
    received_at = ros_node.get_clock().now().nanoseconds

    for msg in images:
        assert (msg.width, msg.height, msg.encoding, msg.step) == (W, H, "rgb8", W * 3)
        assert msg.header.frame_id == "test_camera"
    # every frame, in order, and past the end of the file back to its start
    indices = [frame_index(m) for m in images]
    assert all(b == (a + 1) % N for a, b in pairwise(indices)), indices
    assert any(a == N - 1 and b == 0 for a, b in pairwise(indices)), indices

    stamps = np.array([stamp_to_nanoseconds(m.header.stamp) for m in images]) * 1e-9
    assert np.all(np.diff(stamps) > 0)
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert 14.0 < rate < 26.0, f"published at {rate:.1f} Hz, asked for 20"
    assert abs(received_at * 1e-9 - stamps[-1]) < 2.0, "stamp is not the capture time"

    assert infos, "no camera_info"
    image_stamps = {stamp_to_nanoseconds(m.header.stamp) for m in images}
    for info in infos:
        assert (info.width, info.height, info.header.frame_id) == (W, H, "test_camera")
        assert list(info.k) == K and list(info.d) == D and list(info.p) == P
        assert info.distortion_model == "plumb_bob"
    assert stamp_to_nanoseconds(infos[-1].header.stamp) in image_stamps


def test_video_file_without_loop_plays_once_to_its_subscriber_and_exits_cleanly(ros_node, start_node, video):
    node = start_node(
        "camera_node", params={"source": str(video), "rate": 30.0, "loop": False, "wait_for_subscriber": True}
    )
    wait_for_topic(ros_node, "/image_raw")
    time.sleep(1.0)  # the whole file at 30 Hz, had it not waited
    assert node.alive(), node.output()
    images, _ = subscribe(ros_node)
    assert wait_exit(node, 20.0) == 0, node.output()
    spin_until(ros_node, lambda: len(images) >= N, 3.0, f"{N} frames")
    assert not spin_for(ros_node, lambda: len(images) > N, 0.3), "more frames than the file has"
    # no frame lost to discovery; no loop: each frame once, in order
    assert [frame_index(m) for m in images] == list(range(N))
    out = node.output()
    assert "waiting for a subscriber of /image_raw" in out and "end of video file" in out


def test_best_effort_bgr8_resized_uncalibrated(ros_node, start_node, video):
    images, infos = subscribe(ros_node, ReliabilityPolicy.BEST_EFFORT)
    reliable_images: list[Image] = []
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    ros_node.create_subscription(Image, "/image_raw", reliable_images.append, reliable)
    start_node(
        "camera_node",
        params={
            "source": str(video),
            "loop": True,
            "qos_reliability": "best_effort",
            "encoding": "bgr8",
            "width": 32,
            "height": 24,
        },
    )
    spin_until(ros_node, lambda: len(images) >= 10 and infos, 20.0, "10 best-effort frames")
    # a reliable subscriber cannot match a best-effort publisher: the QoS really is best-effort
    assert reliable_images == []
    for msg in images:
        assert (msg.width, msg.height, msg.encoding, msg.step) == (32, 24, "bgr8", 32 * 3)
        assert msg.header.frame_id == "camera_optical_frame"
    first = frame_index(images[0])
    assert [frame_index(m) for m in images[:5]] == [(first + k) % N for k in range(5)]
    info = infos[-1]
    assert (info.width, info.height) == (32, 24)
    assert not any(info.k) and not any(info.p) and len(info.d) == 0


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{tmp}/missing.avi", "the file does not exist"),
        ("{tmp}/garbage.avi", "OpenCV cannot decode it"),
        ("rtsp://127.0.0.1:9/none", "127.0.0.1:9"),
        ("57", "/dev/video57 does not exist"),
    ],
)
def test_a_source_that_cannot_be_opened_stops_the_node_with_one_line(start_node, tmp_path, source, expected):
    (tmp_path / "garbage.avi").write_text("not a video")
    source = source.format(tmp=tmp_path)
    node = start_node("camera_node", params={"source": source})
    assert wait_exit(node, 20.0) == 2, node.output()
    out = node.output()
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert source in errors[0] and expected in errors[0], errors[0]
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"rate": 0.0}, "parameter rate=0.0 must be > 0"),
        ({"width": 32}, "width=32 and height=0 must both be 0"),
    ],
)
def test_a_bad_parameter_is_refused_at_start(start_node, video, params, expected):
    node = start_node("camera_node", params={"source": str(video), **params})
    assert wait_exit(node, 20.0) == 2, node.output()
    assert expected in node.output()


# --- in-process: reopening a lost live source ---------------------------------------------------
class FakeCapture:
    """A live camera at 100 fps: `frames` frames of one colour, then read() fails (None = never)."""

    def __init__(self, colour: tuple[int, int, int], frames: int | None) -> None:
        self.frame = np.full((H, W, 3), colour, np.uint8)
        self.left = frames
        self.released = False

    def read(self):
        time.sleep(0.01)
        if self.left is not None:
            if self.left == 0:
                return False, None
            self.left -= 1
        return True, self.frame.copy()

    def release(self) -> None:
        self.released = True


def test_a_lost_live_source_is_reopened_and_the_node_keeps_publishing(ros_node, monkeypatch):
    from rclpy.parameter import Parameter

    first, second = FakeCapture(bgr(1), frames=5), FakeCapture(bgr(7), frames=None)
    answers = [first, None, None, second]
    attempts: list[float] = []
    lock = threading.Lock()

    def fake_open(source, request):
        assert source == Source("v4l2", "/dev/video42")
        with lock:
            attempts.append(time.monotonic())
            return answers.pop(0) if answers else None

    monkeypatch.setattr(camera, "open_capture", fake_open)
    images, _ = subscribe(ros_node)
    node = camera.CameraNode(
        context=ros_node.context,
        parameter_overrides=[
            Parameter("source", value="/dev/video42"),
            Parameter("reconnect_interval", value=0.2),
            Parameter("rate", value=100.0),
        ],
    )
    try:
        spin_until(
            ros_node, lambda: sum(frame_index(m) == 7 for m in images) >= 5, 10.0, "frames after reopening"
        )
    finally:
        node.destroy_node()
    indices = [frame_index(m) for m in images]
    assert indices.count(1) >= 3 and indices.index(7) > max(i for i, v in enumerate(indices) if v == 1)
    assert first.released and second.released
    assert len(attempts) == 4, attempts
    gaps = np.diff(attempts)
    assert np.all(gaps >= 0.18), gaps  # each reopen waited reconnect_interval


# --- pure -----------------------------------------------------------------------------------
def test_parse_source_kinds():
    assert parse_source("0") == Source("device", 0)
    assert parse_source("/dev/video2") == Source("v4l2", "/dev/video2")
    assert parse_source("rtsp://cam.local:554/live") == Source("stream", "rtsp://cam.local:554/live")
    assert parse_source("clip.mp4") == Source("file", "clip.mp4")
    assert not parse_source("clip.mp4").live and parse_source("0").live
    described = parse_source("rtsp://admin:secret@10.1.2.3/h264").describe()
    assert "secret" not in described and "admin:***@10.1.2.3" in described


def test_diagnose_files(tmp_path):
    assert diagnose(Source("file", str(tmp_path / "no.avi")), 1.0)[0] == "the file does not exist"
    assert diagnose(Source("file", str(tmp_path)), 1.0)[0] == "it is not a file"


def test_rate_limiter():
    def accepted(rate, times):
        limiter = RateLimiter(rate)
        return sum(limiter.accept(t) for t in times)

    rng = np.random.default_rng(0)
    assert accepted(30.0, np.arange(0, 2, 1 / 60)) == 60  # 60 fps camera, 30 Hz asked: half
    jittery = np.arange(0, 2, 1 / 30) + rng.uniform(-0.005, 0.005, 60)
    assert accepted(30.0, jittery) == 60  # a camera at the rate loses nothing to jitter
    assert accepted(30.0, np.arange(0, 2, 1 / 25)) == 50  # slower camera: every frame
    assert accepted(30.0, [0.0, 5.0, 5.01, 5.04]) == 3  # after a gap the schedule restarts


def test_to_encoding():
    frame = np.zeros((2, 3, 3), np.uint8)
    frame[:] = (1, 2, 3)
    assert to_encoding(frame, "bgr8") is frame  # no conversion, no copy
    assert tuple(to_encoding(frame, "rgb8")[0, 0]) == (3, 2, 1)
    assert to_encoding(np.full((2, 3), 9, np.uint8), "rgb8").shape == (2, 3, 3)
    assert tuple(to_encoding(np.full((2, 3, 4), (1, 2, 3, 4), np.uint8), "rgb8")[0, 0]) == (3, 2, 1)


def test_config_file_lists_every_parameter_with_its_default():
    values = yaml.safe_load((ROOT / "config" / "camera.yaml").read_text())["/**/camera"]["ros__parameters"]
    assert values == {p.name: p.default for p in PARAMETERS}
