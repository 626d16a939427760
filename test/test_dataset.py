"""The dataset builder on bags made here: labels, cameras, sampling, ratio, split, bad bags."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.serialization import serialize_message
from reward_msgs.msg import EpisodeEvent, PolicyAction, SuccessLabel
from sensor_msgs.msg import CompressedImage, Image

from reward_model_ros.core.overrides import OverrideError, apply_overrides
from reward_model_ros.data.bags import BagError, EpisodeBagWriter, TypeRegistry
from reward_model_ros.data.dataset import DataConfig, ProcessConfig, build_dataset, read_manifest
from reward_model_ros.ros.conversions import rgb_to_compressed, seconds_to_stamp, stamp_to_nanoseconds

T0 = 1_700_000_000.0
PERIOD = 0.05


def img(t: float, value: int, topic_shift: int = 0) -> bytes:
    px = np.full((16, 20, 3), value % 256, np.uint8)
    px[0, 0] = (topic_shift, 0, 0)
    msg = Image(height=16, width=20, encoding="rgb8", step=60, data=px.tobytes())
    msg.header.stamp = seconds_to_stamp(t)
    return serialize_message(msg)


def stamped(msg, t: float) -> bytes:
    msg.header.stamp = seconds_to_stamp(t)
    return serialize_message(msg)


def ns(t: float) -> int:
    """The stamp a header carries for time t (the same conversion as the messages)."""
    return stamp_to_nanoseconds(seconds_to_stamp(t))


def episode_bag(
    path: Path,
    label: str,
    frames: int,
    success_from: int | None = None,
    t0: float = T0,
    cameras=("/image_raw",),
    storage="mcap",
    labels=True,
    info=True,
    actions=None,
    mode="m",
) -> Path:
    """A bag as the recorder writes it: frames, per-frame SuccessLabels, episode.json."""
    w = EpisodeBagWriter(path, TypeRegistry(), storage)
    for c in cameras:
        w.add_topic(c, "sensor_msgs/msg/Image")
    w.add_topic("/success_label", "reward_msgs/msg/SuccessLabel")
    w.add_topic("/action", "reward_msgs/msg/PolicyAction")
    for i in range(frames):
        t = t0 + i * PERIOD
        for k, c in enumerate(cameras):
            w.write(c, ns(t) + k, img(t + k * 0.003, i, k))  # cameras 3 ms apart
        ok = success_from is not None and i >= success_from
        if labels:
            w.write("/success_label", ns(t), stamped(SuccessLabel(success=ok, source=0), t))
        if actions is not None:
            a = PolicyAction(gripper=1.0)
            a.delta_position.x = actions[i]
            w.write("/action", ns(t), stamped(a, t))
    end = t0 + (frames - 1) * PERIOD
    w.close(
        {"label": label, "start_stamp_ns": ns(t0), "end_stamp_ns": ns(end), "seed": 3, "mode": mode}
        if info
        else None
    )
    return path


def build(tmp_path, inputs, **data) -> tuple[dict, list[dict]]:
    cfg = DataConfig(**data)
    out = tmp_path / "ds"
    if out.exists():
        shutil.rmtree(out)
    summary = build_dataset(inputs, out, cfg, log=lambda m: None)
    return summary, read_manifest(out)


def test_episode_bags_give_per_frame_labels(tmp_path):
    bags = tmp_path / "episodes"
    episode_bag(bags / "success" / "episode_000000", "success", 30, success_from=22)
    episode_bag(bags / "failure" / "episode_000001", "failure", 25, success_from=10)  # labels ignored
    episode_bag(bags / "aborted" / "episode_000002", "aborted", 10)
    summary, rows = build(tmp_path, [bags], val_fraction=0.0)
    succ = sorted((r for r in rows if r["episode_label"] == 1), key=lambda r: r["frame"])
    assert [r["label"] for r in succ] == [0] * 22 + [1] * 8
    assert all(r["label"] == 0 for r in rows if r["episode_label"] == 0)
    assert summary["splits"]["train"] == {
        "episodes_success": 1,
        "episodes_failure": 1,
        "episodes_transient": 1,  # the failure's labels say success from frame 10
        "frames_positive": 8,
        "frames_negative": 47,
    }
    assert any("aborted" in s["reason"] for s in summary["skipped_bags"])
    # the image on disk is the frame it says it is
    r = succ[5]
    pixels = cv2.imread(str(tmp_path / "ds" / r["images"]["camera"]))
    assert pixels.shape == (16, 20, 3) and pixels[5, 5, 0] == 5


def test_split_is_by_episode_and_ratio_samples_the_surplus(tmp_path):
    bags = tmp_path / "episodes"
    for i in range(10):
        label = "success" if i % 2 == 0 else "failure"
        episode_bag(bags / label / f"episode_{i:06d}", label, 20, success_from=10, t0=T0 + 100 * i)
    summary, rows = build(tmp_path, [bags], val_fraction=0.2, fail_success_ratio=2.0, seed=1)
    train_eps = {r["episode"] for r in rows if r["split"] == "train"}
    val_eps = {r["episode"] for r in rows if r["split"] == "val"}
    assert train_eps and val_eps and not train_eps & val_eps  # no episode on both sides
    assert (
        summary["splits"]["val"]["episodes_success"] == 1
        and summary["splits"]["val"]["episodes_failure"] == 1
    )
    for split in ("train", "val"):
        c = summary["splits"][split]
        assert c["frames_negative"] == 2 * c["frames_positive"]  # 2 negatives per positive
    # deterministic with the seed
    _, rows2 = build(tmp_path, [bags], val_fraction=0.2, fail_success_ratio=2.0, seed=1)
    assert rows2 == rows


def test_validation_holds_each_kind_of_failure_passes_included(tmp_path):
    # 6 failures of mode a, 4 passes of mode b (ground-truth success on from frame 3, ended
    # failure): a 20% validation split must hold one of each at every seed. A plain random draw
    # of 2 of 10 takes both from one kind in 21 of 45 draws
    bags = tmp_path / "episodes"
    for i in range(10):
        mode, success_from = ("a", None) if i < 6 else ("b", 3)
        episode_bag(bags / "failure" / f"episode_{i:06d}", "failure", 6, success_from, T0 + 10 * i, mode=mode)
    for i in range(10, 15):
        episode_bag(bags / "success" / f"episode_{i:06d}", "success", 6, 3, T0 + 10 * i, mode="success")
    for seed in range(8):
        summary, rows = build(tmp_path, [bags], val_fraction=0.2, seed=seed)
        val = {(r["episode"], r["mode"], r["transient"]) for r in rows if r["split"] == "val"}
        assert sorted((m, t) for _e, m, t in val) == [("a", False), ("b", True), ("success", False)], seed
        assert summary["splits"]["val"]["episodes_transient"] == 1
        assert summary["splits"]["train"]["episodes_transient"] == 3
    # a pass is a failure whose success flag was on: frames stay labelled failure
    assert all(r["label"] == 0 for r in rows if r["transient"])


def test_episode_success_once_counts_a_pass_as_a_success_labelled_by_its_flag(tmp_path):
    # a pass: the flag on for frames 10-13 only, the episode ended a failure; ManiSkill's
    # success_once (the RL evaluation's metric) calls it a success
    bags = tmp_path / "episodes"
    w = EpisodeBagWriter(bags / "failure" / "episode_000001", TypeRegistry(), "mcap")
    w.add_topic("/image_raw", "sensor_msgs/msg/Image")
    w.add_topic("/success_label", "reward_msgs/msg/SuccessLabel")
    for i in range(20):
        t = T0 + i * PERIOD
        w.write("/image_raw", ns(t), img(t, i, 0))
        w.write("/success_label", ns(t), stamped(SuccessLabel(success=10 <= i < 14, source=0), t))
    w.close({"label": "failure", "start_stamp_ns": ns(T0), "end_stamp_ns": ns(T0 + 19 * PERIOD), "mode": "m"})
    episode_bag(bags / "failure" / "episode_000002", "failure", 20, t0=T0 + 100)  # never on
    _, end = build(tmp_path, [bags], val_fraction=0.0)
    assert all(r["label"] == 0 and r["episode_label"] == 0 for r in end)
    summary, once = build(tmp_path, [bags], val_fraction=0.0, episode_success="once")
    passed = sorted((r for r in once if r["transient"]), key=lambda r: r["frame"])
    assert [r["label"] for r in passed] == [0] * 10 + [1] * 4 + [0] * 6
    assert {r["episode_label"] for r in passed} == {1}
    assert all(r["label"] == 0 and r["episode_label"] == 0 for r in once if not r["transient"])
    assert summary["splits"]["train"]["episodes_success"] == 1
    assert summary["splits"]["train"]["episodes_transient"] == 1
    with pytest.raises(ValueError, match="episode_success='sometimes'"):
        build(tmp_path, [bags], episode_success="sometimes")


def test_multi_camera_frames_stay_together_and_sampling_per_episode(tmp_path):
    bag = episode_bag(
        tmp_path / "b" / "success" / "episode_000000",
        "success",
        40,
        success_from=30,
        cameras=("/front/image_raw", "/wrist/image_raw"),
    )
    summary, rows = build(tmp_path, [bag], num_samples_per_episode=10, val_fraction=0.0)
    assert len(rows) == 10 and summary["cameras"] == ["/front/image_raw", "/wrist/image_raw"]
    for r in rows:
        assert set(r["images"]) == {"front", "wrist"}
        front = cv2.imread(str(tmp_path / "ds" / r["images"]["front"]))
        wrist = cv2.imread(str(tmp_path / "ds" / r["images"]["wrist"]))
        assert front[5, 5, 0] == wrist[5, 5, 0]  # the same instant
        assert wrist[0, 0, 2] == 1 and front[0, 0, 2] == 0  # from the right camera (BGR on disk)


def test_plain_bags_events_whole_bag_labels_sqlite3_and_idle_frames(tmp_path):
    # a plain bag as `ros2 bag record` makes it (sqlite3): two episodes delimited by events
    w = EpisodeBagWriter(tmp_path / "plain", TypeRegistry(), "sqlite3")
    w.add_topic("/cam/image_raw", "sensor_msgs/msg/Image")
    w.add_topic("/episode/event", "reward_msgs/msg/EpisodeEvent")
    t = T0
    for ep, label in enumerate((EpisodeEvent.LABEL_SUCCESS, EpisodeEvent.LABEL_FAILURE)):
        w.write("/episode/event", ns(t), stamped(EpisodeEvent(event=EpisodeEvent.START), t))
        for i in range(12):
            w.write("/cam/image_raw", ns(t), img(t, 10 * ep + i))
            t += PERIOD
        end = EpisodeEvent(event=EpisodeEvent.SUCCESS if label else EpisodeEvent.FAILURE, label=label)
        w.write("/episode/event", ns(t - PERIOD), stamped(end, t - PERIOD))
        t += 1.0
        w.write("/cam/image_raw", ns(t), img(t, 99))  # between episodes: not used
        t += 1.0
    w.close()
    summary, rows = build(tmp_path, [tmp_path / "plain"], val_fraction=0.0, success_tail_frames=5)
    assert len(rows) == 24 and summary["frames_outside_episodes"] == 2
    assert sum(r["label"] for r in rows) == 5  # no SuccessLabels: the last 5 frames of the success
    # one label for a whole bag, and idle frames dropped (zero action, gripper unchanged)
    moving = [0.01 if i % 2 else 0.0 for i in range(20)]
    bag = episode_bag(tmp_path / "one", "x", 20, labels=False, info=False, actions=moving)
    summary, rows = build(tmp_path, [bag], label_source="failure", drop_idle=True, val_fraction=0.0)
    assert len(rows) == 10 and summary["idle_frames_dropped"] == 10 and not any(r["label"] for r in rows)


def test_compressed_camera_bags_are_decoded_and_a_bad_frame_is_left_out(tmp_path):
    """`ros2 bag record /cam/image_raw/compressed`: the frames are decoded as reward_node decodes
    them (PNG: the same pixels, colours in place); a frame that cannot be decoded is left out
    and listed, and the rest of the episode is kept."""
    w = EpisodeBagWriter(tmp_path / "compressed", TypeRegistry(), "mcap")
    w.add_topic("/cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage")
    w.add_topic("/episode/event", "reward_msgs/msg/EpisodeEvent")
    w.write("/episode/event", ns(T0), stamped(EpisodeEvent(event=EpisodeEvent.START), T0))
    pixels = []
    for i in range(10):
        t = T0 + i * PERIOD
        px = np.zeros((16, 20, 3), np.uint8)
        px[..., 0], px[..., 1], px[..., 2] = 200, 10 * i, 30  # red-dominant, differs per frame
        pixels.append(px)
        msg = rgb_to_compressed(px, "png")
        if i == 4:
            msg = CompressedImage(format="jpeg", data=b"\xff\xd8 broken")
        w.write("/cam/image_raw/compressed", ns(t), stamped(msg, t))
    t_end = T0 + 9 * PERIOD
    end = EpisodeEvent(event=EpisodeEvent.SUCCESS, label=EpisodeEvent.LABEL_SUCCESS)
    w.write("/episode/event", ns(t_end), stamped(end, t_end))
    w.close()
    summary, rows = build(tmp_path, [tmp_path / "compressed"], val_fraction=0.0, image_format="png")
    assert summary["cameras"] == ["/cam/image_raw/compressed"] and len(rows) == 9
    assert [r["frame"] for r in rows] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    bad = summary["undecodable_frames"]
    assert len(bad) == 1 and bad[0]["stamp_ns"] == ns(T0 + 4 * PERIOD) and "cannot decode" in bad[0]["reason"]
    for r in rows:
        assert set(r["images"]) == {"cam"}  # named like the raw topic
        on_disk = cv2.cvtColor(cv2.imread(str(tmp_path / "ds" / r["images"]["cam"])), cv2.COLOR_BGR2RGB)
        assert np.array_equal(on_disk, pixels[r["frame"]])


def test_corrupt_and_unfinished_bags_are_skipped_by_name(tmp_path):
    good = episode_bag(tmp_path / "bags" / "success" / "episode_000000", "success", 10, success_from=5)
    bad = tmp_path / "bags" / "failure" / "episode_000001"
    shutil.copytree(good, bad)
    mcap = next(bad.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:200])  # truncated
    unfinished = tmp_path / "bags" / "failure" / "episode_000002"
    unfinished.mkdir()
    (unfinished / "episode_000002.mcap").write_bytes(b"\x89MCAP0\r\n")
    summary, rows = build(tmp_path, [tmp_path / "bags"], val_fraction=0.0)
    assert len(rows) == 10
    reasons = {Path(s["bag"]).name: s["reason"] for s in summary["skipped_bags"]}
    assert set(reasons) == {"episode_000001", "episode_000002"}
    assert "reward-model recover" in reasons["episode_000002"]
    with pytest.raises(BagError, match="no such file or directory"):
        build_dataset([tmp_path / "missing"], tmp_path / "x", DataConfig())
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no rosbag2 folders"):
        build_dataset([tmp_path / "empty"], tmp_path / "x", DataConfig())


def test_overrides_and_their_errors():
    cfg = apply_overrides(ProcessConfig(), ["data.fail_success_ratio=2", "data.image_format=jpg"])
    assert cfg.data.fail_success_ratio == 2.0 and cfg.data.image_format == "jpg"
    with pytest.raises(OverrideError, match=r"did you mean data\.fail_success_ratio"):
        apply_overrides(ProcessConfig(), ["data.fail_sucess_ratio=2"])
    with pytest.raises(OverrideError, match=r"data\.val_fraction=half"):
        apply_overrides(ProcessConfig(), ["data.val_fraction=half"])


def test_process_command(tmp_path):
    episode_bag(tmp_path / "bags" / "success" / "episode_000000", "success", 10, success_from=5)
    exe = Path(sys.executable).parent / "reward-model"
    out = subprocess.run(
        [str(exe), "process", str(tmp_path / "bags"), "--out", str(tmp_path / "ds"), "data.image_format=jpg"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert (
        "dataset in" in out.stdout
        and json.loads((tmp_path / "ds" / "summary.json").read_text())["samples"] == 10
    )
    assert all(r["images"]["camera"].endswith(".jpg") for r in read_manifest(tmp_path / "ds"))
    again = subprocess.run(
        [str(exe), "process", str(tmp_path / "bags"), "--out", str(tmp_path / "ds"), "data.seed=x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and "data.seed=x" in again.stderr
