"""reward_node across processes: every frame scored, cameras fused, bad input survived."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import call, spin_until, wait_for_service
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from reward_msgs.msg import EpisodeEvent, RewardStamped
from reward_msgs.srv import ComputeRewards
from sensor_msgs.msg import CompressedImage, Image

from reward_model_ros.core.checkpoint import save_checkpoint, untrained
from reward_model_ros.core.config import ModelConfig
from reward_model_ros.ros.conversions import array_to_image, rgb_to_compressed

ROOT = Path(__file__).resolve().parents[1]
# a small, fast model: scoring must keep up with 30 Hz on 2 shared cores
FAST = {"model.arch": "resnet10", "model.image_size": [3, 64, 64]}
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)


def collect_rewards(node, topic="/reward"):
    got: list[RewardStamped] = []
    node.create_subscription(RewardStamped, topic, got.append, RELIABLE)
    return got


def publish_frames(node, got, *args, expect=None, timeout=60):
    """Run the independent frame publisher; spin `node` meanwhile; return its summary."""
    cmd = [sys.executable, "-m", "reward_model_ros.ros.frame_publisher", *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        spin_until(node, lambda: proc.poll() is not None, timeout, "the frame publisher to finish")
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    summary = json.loads(out.strip().splitlines()[-1])
    want = summary["sent"] if expect is None else expect
    spin_until(node, lambda: len(got) >= want, 10, f"{want} rewards (have {len(got)})")
    return summary


def wait_ready(node, proc, topic="/image_raw"):
    spin_until(
        node,
        lambda: node.count_subscribers(topic) > 0 or not proc.alive(),
        60,
        f"reward_node to subscribe {topic}",
    )
    assert proc.alive(), proc.output()


@pytest.mark.realtime
def test_every_frame_at_30hz_gets_a_reward_with_its_stamp(ros_node, start_node):
    got = collect_rewards(ros_node)
    node = start_node("reward_node", params={**FAST, "image_qos": "reliable"})
    wait_ready(ros_node, node)
    summary = publish_frames(
        ros_node, got, "--rate", "30", "--count", "60", "--width", "320", "--height", "240"
    )
    stamps = [r.header.stamp.sec * 1_000_000_000 + r.header.stamp.nanosec for r in got]
    assert stamps == summary["stamps_ns"]  # every frame, in order, stamp copied
    assert [r.sequence for r in got] == list(range(1, 61))
    first = got[0]
    assert first.header.frame_id == "camera" and first.model_id == "untrained@0"
    assert first.camera_names == ["/image_raw"] and len(first.camera_probabilities) == 1
    assert all(0.0 <= r.probability <= 1.0 and not math.isnan(r.probability) for r in got)
    assert all(r.success == (r.probability >= r.threshold) for r in got)
    assert all(r.reward == (1.0 if r.success else 0.0) for r in got)
    assert all(0 < r.inference_latency < r.total_latency < 1.0 for r in got)
    assert node.alive()


@pytest.mark.realtime
def test_two_cameras_are_matched_by_stamp_and_fused(ros_node, start_node):
    got = collect_rewards(ros_node)
    topics = ["front/image_raw", "wrist/image_raw"]
    node = start_node(
        "reward_node",
        params={
            **FAST,
            "image_topics": topics,
            "camera_names": ["front", "wrist"],
            "camera_fusion": "min",
            "image_qos": "reliable",
        },
    )
    wait_ready(ros_node, node, "/wrist/image_raw")
    publish_frames(
        ros_node,
        got,
        "--topics",
        *topics,
        "--rate",
        "15",
        "--count",
        "30",
        "--width",
        "160",
        "--height",
        "120",
    )
    assert len(got) == 30
    for r in got:
        assert list(r.camera_names) == ["front", "wrist"] and len(r.camera_probabilities) == 2
        assert r.probability == pytest.approx(min(r.camera_probabilities))


@pytest.mark.parametrize("publisher_qos", ["reliable", "best_effort"])
def test_auto_qos_subscribes_like_the_publisher(ros_node, start_node, publisher_qos):
    """image_qos=auto waits for the camera's publisher and matches its reliability. Frames sent
    while the two sides are still discovering each other may be lost: a third of
    them must arrive (in practice the first second or so is lost at most)."""
    got = collect_rewards(ros_node)
    node = start_node("reward_node", params={**FAST, "image_qos": "auto"})
    extra = ["--best-effort"] if publisher_qos == "best_effort" else []
    publish_frames(
        ros_node,
        got,
        "--rate",
        "15",
        "--count",
        "60",
        "--settle",
        "1.0",
        "--width",
        "160",
        "--height",
        "120",
        *extra,
        expect=20,
    )
    assert f"/image_raw: 1 publisher(s) found, subscribing {publisher_qos}" in node.output()


def test_bad_frames_get_an_invalid_reward_with_the_reason_and_the_node_keeps_scoring(ros_node, start_node):
    """Every frame received gets a RewardStamped: a bad one is flagged invalid (no success, the
    failure reward, a reason), never silently dropped, and the sequence has no gap."""
    got = collect_rewards(ros_node)
    node = start_node("reward_node", params={**FAST, "image_qos": "reliable", "log_throttle": 0.01})
    pub = ros_node.create_publisher(Image, "/image_raw", RELIABLE)
    wait_ready(ros_node, node)
    spin_until(ros_node, lambda: pub.get_subscription_count() > 0, 20, "the node to match")
    good = array_to_image(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8), "rgb8")
    bad = [
        (
            Image(height=48, width=64, encoding="rgb8", step=192, data=b"\0" * 100),
            "data length 100 does not match",
        ),
        (Image(height=48, width=64, encoding="16UC1", step=128, data=b"\0" * (128 * 48)), "more than 8 bits"),
        (
            Image(height=48, width=64, encoding="yuv422", step=128, data=b"\0" * (128 * 48)),
            "unknown encoding",
        ),
        (Image(height=0, width=0, encoding="rgb8", step=0, data=b""), "empty frame"),
    ]

    def send(msg, sec):
        msg.header.stamp.sec = sec
        pub.publish(msg)

    send(good, 1)  # a scored frame first: the connection is up before the bad ones go out
    spin_until(ros_node, lambda: len(got) >= 1, 30, "the first reward")
    for sec, (msg, _) in enumerate(bad, start=2):
        send(msg, sec)
        time.sleep(0.1)
    send(good, 9)
    spin_until(ros_node, lambda: len(got) >= 6, 20, "a reward for every frame")
    assert [r.header.stamp.sec for r in got] == [1, 2, 3, 4, 5, 9]
    assert [r.sequence for r in got] == [1, 2, 3, 4, 5, 6]
    assert [r.valid for r in got] == [True, False, False, False, False, True]
    for r, (_, why) in zip(got[1:5], bad, strict=True):
        assert why in r.invalid_reason and r.invalid_reason.startswith("/image_raw: ")
        assert not r.success and r.reward == 0.0 and r.probability == 0.0
    assert node.alive()
    assert "invalid frame, no success: /image_raw: bad frame: data length 100 does not match" in node.output()


def test_compressed_frames_are_scored_as_their_raw_pixels_and_bad_ones_flagged(ros_node, start_node):
    """image_transport:=compressed subscribes <topic>/compressed. A PNG frame scores exactly what
    the same pixels score as a raw Image (the node's batch service), a JPEG one nearly; an
    undecodable, depth, greyscale or oversized frame gets an invalid reward with the reason, and
    the node keeps scoring."""
    import cv2

    got = collect_rewards(ros_node)
    params = {**FAST, "image_qos": "reliable", "image_transport": "compressed", "log_throttle": 0.01}
    node = start_node("reward_node", params={**params, "image_topics": ["/cam/image_raw"]})
    pub = ros_node.create_publisher(CompressedImage, "/cam/image_raw/compressed", RELIABLE)
    wait_ready(ros_node, node, "/cam/image_raw/compressed")
    spin_until(ros_node, lambda: pub.get_subscription_count() > 0, 20, "the node to match")
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], 2).astype(np.uint8)
    _, mono = cv2.imencode(".png", rgb[:, :, 0])
    big = rgb_to_compressed(cv2.resize(rgb, (4200, 4000)), "jpeg")  # over validity.max_pixels
    bad = [
        (CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 cut short"), "cannot decode"),
        (CompressedImage(format="16UC1; compressedDepth png", data=b"\x89PNG"), "compressed depth"),
        (CompressedImage(format="mono8; png compressed mono8", data=mono.tobytes()), "greyscale"),
        (big, "too large: 4200x4000"),
    ]

    def send(msg, sec):
        msg.header.stamp.sec = sec
        pub.publish(msg)

    send(rgb_to_compressed(rgb, "png"), 1)
    spin_until(ros_node, lambda: len(got) >= 1, 30, "the first reward")
    for sec, (msg, _) in enumerate(bad, start=2):
        send(msg, sec)
        time.sleep(0.1)
    send(rgb_to_compressed(rgb, "jpeg", quality=95), 9)
    spin_until(ros_node, lambda: len(got) >= 6, 20, "a reward for every frame")
    assert [r.header.stamp.sec for r in got] == [1, 2, 3, 4, 5, 9]
    assert [r.valid for r in got] == [True, False, False, False, False, True]
    for r, (_, why) in zip(got[1:5], bad, strict=True):
        assert why in r.invalid_reason and r.invalid_reason.startswith("/cam/image_raw/compressed: ")
    client = wait_for_service(ros_node, ComputeRewards, "/reward_classifier/compute_rewards", 30)
    raw = call(ros_node, client, ComputeRewards.Request(images=[array_to_image(rgb, "rgb8")]))
    swapped = call(ros_node, client, ComputeRewards.Request(images=[array_to_image(rgb, "bgr8")]))
    # an untrained model's probabilities vary little between pictures, but they do vary: the
    # same frame with red and blue swapped scores otherwise, so a channel mix-up would show
    p_raw, p_swapped = raw.probabilities[0], swapped.probabilities[0]
    assert abs(p_swapped - p_raw) > 1e-4
    assert got[0].probability == pytest.approx(p_raw, abs=1e-6)  # PNG: lossless
    assert abs(got[5].probability - p_raw) < abs(p_swapped - p_raw) / 2  # JPEG: close
    assert node.alive()


@pytest.mark.realtime
def test_slow_inference_drops_stale_frames_instead_of_queueing(ros_node, start_node):
    got = collect_rewards(ros_node)
    node = start_node(
        "reward_node",
        params={"model.arch": "resnet50", "model.image_size": [3, 224, 224], "image_qos": "reliable"},
    )
    wait_ready(ros_node, node)
    summary = publish_frames(
        ros_node, got, "--rate", "60", "--count", "120", "--width", "320", "--height", "240", expect=1
    )
    # the last frame sent is the last one scored (stale ones are dropped, never the newest)
    spin_until(ros_node, lambda: got and got[-1].sequence == summary["sent"], 30, "the last frame's reward")
    assert len(got) < summary["sent"]  # resnet50 at 224 px cannot do 60 Hz on this CPU ...
    assert max(r.total_latency for r in got) < 0.5  # ... and frames did not pile up behind it
    # every frame received is counted: the gaps in sequence are exactly the frames dropped
    assert got[-1].sequence == summary["sent"]
    gaps = sum(b.sequence - a.sequence - 1 for a, b in itertools.pairwise(got))
    assert gaps + got[0].sequence - 1 == summary["sent"] - len(got)


def test_compute_rewards_service_scores_a_batch_and_reports_bad_images(ros_node, start_node):
    start_node("reward_node", params={**FAST, "reward_threshold": 0.0})
    client = wait_for_service(ros_node, ComputeRewards, "/reward_classifier/compute_rewards", 60)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    request = ComputeRewards.Request(
        images=[
            array_to_image(rgb, "rgb8"),
            array_to_image(rgb[..., ::-1].copy(), "bgr8"),
            Image(height=48, width=64, encoding="rgb8", step=192, data=b"\0" * 10),
        ]
    )
    answer = call(ros_node, client, request, timeout=30)
    assert list(answer.valid) == [True, True, False]
    assert answer.probabilities[0] == pytest.approx(answer.probabilities[1], abs=1e-6)  # same picture
    # an invalid image: flagged, with a finite probability 0 (never NaN) and no success
    assert answer.probabilities[2] == 0.0 and "data length 10" in answer.errors[2]
    assert list(answer.successes) == [True, True, False] and list(answer.rewards) == [1.0, 1.0, 0.0]
    assert answer.threshold == 0.0 and answer.model_id == "untrained@0"
    mismatch = call(ros_node, client, ComputeRewards.Request(images=request.images[:2], camera_names=["a"]))
    assert (
        list(mismatch.valid) == [False, False]
        and "camera_names has 1 entries for 2 images" in mismatch.errors[0]
    )


def test_checkpoint_threshold_terminal_mode_and_debug_output(ros_node, start_node, tmp_path):
    ckpt = save_checkpoint(
        tmp_path / "tiny",
        untrained(ModelConfig(arch="resnet10", image_size=[3, 64, 64]), threshold=0.5, seed=1).model,
        threshold=0.0,
    )
    got = collect_rewards(ros_node)
    debug: list[Image] = []
    ros_node.create_subscription(Image, "/reward_classifier/debug_image", debug.append, RELIABLE)
    events = ros_node.create_publisher(EpisodeEvent, "/episode/event", RELIABLE)
    node = start_node(
        "reward_node",
        params={
            "model.checkpoint_path": str(ckpt),
            "reward_mode": "terminal",
            "success_reward": 5.0,
            "image_qos": "reliable",
            "model.debug_save_dir": str(tmp_path / "dbg"),
            "model.debug_save_max_files": 3,
            "debug_image_width": 100,
        },
    )
    wait_ready(ros_node, node)
    spin_until(ros_node, lambda: events.get_subscription_count() > 0, 20, "the node to hear episode events")
    publish_frames(ros_node, got, "--rate", "10", "--count", "5", "--width", "160", "--height", "120")
    events.publish(EpisodeEvent(event=EpisodeEvent.SUCCESS, label=EpisodeEvent.LABEL_SUCCESS))
    spin_until(ros_node, lambda: len(got) >= 6, 10, "the terminal reward")
    assert [r.terminal for r in got] == [False] * 5 + [True]
    assert [r.reward for r in got] == [0.0] * 5 + [5.0]  # threshold 0.0 from the checkpoint: success
    assert got[-1].header == got[4].header and got[0].threshold == 0.0
    assert got[0].model_id.startswith("tiny@")
    spin_until(ros_node, lambda: len(debug) > 0, 10, "a debug image")
    assert debug[0].width == 100 and debug[0].encoding == "rgb8"
    saved = sorted(p.relative_to(tmp_path / "dbg").as_posix() for p in (tmp_path / "dbg").rglob("*.png"))
    assert len(saved) == 3 and saved[0].startswith("resnet_success/000000_prob")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"reward_mode": "episodic"}, "reward_mode='episodic' must be one of 'per_step', 'terminal'"),
        (
            {"model.checkpoint_path": "/nonexistent/ckpt"},
            "checkpoint directory /nonexistent/ckpt does not exist",
        ),
        (
            {"image_topics": ["a", "b"], "camera_names": ["x"]},
            "camera_names has 1 entries for 2 image topics",
        ),
        ({"model.crop_boxes": [0, 0, 10]}, "model.crop_boxes has 3 numbers; it needs 4 per camera"),
    ],
)
def test_bad_configuration_stops_the_node_with_one_clear_line(start_node, params, message):
    node = start_node("reward_node", params=params)
    assert node.popen.wait(timeout=60) == 2
    assert message in node.output()


def test_contradicting_checkpoint_parameter_is_refused(start_node, tmp_path):
    ckpt = save_checkpoint(
        tmp_path / "c",
        untrained(ModelConfig(arch="resnet10", hidden_dim=16, image_size=[3, 64, 64]), threshold=0.5).model,
        0.5,
    )
    node = start_node("reward_node", params={"model.checkpoint_path": str(ckpt), "model.hidden_dim": 64})
    assert node.popen.wait(timeout=60) == 2
    assert "model.hidden_dim is 64 but the checkpoint" in node.output()
    assert "trained with hidden_dim=16" in node.output()
