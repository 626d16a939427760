"""What `evaluate` measured is what `reward_node` serves: the camera-name contract from the
dataset to the node (crop boxes included), and the decision settings `evaluate` stores in
the checkpoint, across processes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import spin_until
from rclpy.serialization import serialize_message
from reward_msgs.msg import RewardStamped
from sensor_msgs.msg import Image

from reward_model_ros.core.cameras import map_cameras, serve_cameras
from reward_model_ros.core.checkpoint import (
    CheckpointError,
    decision_settings,
    load_checkpoint,
    save_checkpoint,
    store_recommendation,
    store_validation_decision,
    untrained,
)
from reward_model_ros.core.config import ConfigError, ModelConfig
from reward_model_ros.core.overrides import apply_overrides
from reward_model_ros.data.bags import EpisodeBagWriter, TypeRegistry
from reward_model_ros.data.dataset import DataConfig, build_dataset, read_manifest
from reward_model_ros.ros import qos
from reward_model_ros.ros.conversions import array_to_image, seconds_to_stamp, stamp_to_nanoseconds
from reward_model_ros.training.evaluate import evaluate, predict_files
from reward_model_ros.training.train import TrainConfig, train

T0 = 1_700_000_000.0
CROP = [8, 4, 56, 52]  # of an 80x64 frame: the model sees a 48x48 window, not the whole frame


def frame(rng: np.random.Generator, success: bool) -> np.ndarray:
    """80x64 noise with a disc inside the crop window, and a bright band outside it that an
    uncropped frame would show the model."""
    px = rng.integers(30, 120, (64, 80, 3), np.uint8)
    cv2.circle(px, (32, 28), 9, (0, 220, 0) if success else (220, 0, 0), -1)
    px[:, 64:] = 250
    return px


def write_bags(root: Path, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """Two success and two failure episode bags of 8 frames; returns (stamp_ns, rgb) of all."""
    frames = []
    for e in range(4):
        success = e % 2 == 0
        bag = root / ("success" if success else "failure") / f"episode_{e}"
        w = EpisodeBagWriter(bag, TypeRegistry(), "mcap")
        w.add_topic("/image_raw", "sensor_msgs/msg/Image")
        t0 = T0 + 10 * e
        for i in range(8):
            rgb = frame(rng, success and i >= 4)
            msg = array_to_image(rgb, "rgb8")
            msg.header.stamp = seconds_to_stamp(t0 + 0.05 * i)
            ns = stamp_to_nanoseconds(msg.header.stamp)
            w.write("/image_raw", ns, serialize_message(msg))
            frames.append((ns, rgb))
        end = stamp_to_nanoseconds(seconds_to_stamp(t0 + 0.35))
        w.close(
            {
                "label": "success" if success else "failure",
                "start_stamp_ns": stamp_to_nanoseconds(seconds_to_stamp(t0)),
                "end_stamp_ns": end,
            }
        )
    return frames


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained with a crop box on a dataset built from bags."""
    root = tmp_path_factory.mktemp("contract")
    frames = write_bags(root / "bags", np.random.default_rng(0))
    data = root / "dataset"
    build_dataset(
        [root / "bags"], data, DataConfig(val_fraction=0.5, success_tail_frames=4), log=lambda m: None
    )
    cfg = apply_overrides(
        TrainConfig(),
        [
            "model.arch=resnet10",
            "model.image_size=[3,32,32]",
            "model.crop_boxes={camera: [8, 4, 56, 52]}",
            "actor.global_batch_size=8",
            "actor.micro_batch_size=8",
            "runner.max_steps=2",
            "runner.progress=false",
            "runner.precision=fp32",
            f"runner.output_dir={root / 'train'}",
            f"runner.logger.log_path={root / 'logs'}",
        ],
    )
    train(cfg, data, log=lambda m: None)
    return root / "train" / "best_model", data, frames


def test_the_checkpoint_records_the_dataset_cameras_and_their_crop_box(trained):
    best, data, _ = trained
    ckpt = load_checkpoint(best)
    assert ckpt.config.camera_names == ["camera"]  # the dataset builder's name for /image_raw
    assert ckpt.config.crop_boxes == {"camera": CROP}
    assert {tuple(r["images"]) for r in read_manifest(data)} == {("camera",)}


def test_reward_node_serves_exactly_what_evaluate_and_predict_measured(trained, ros_node, start_node):
    """The same frames, scored by evaluate (from the dataset's PNGs), predict (from files) and
    reward_node (from Image messages over DDS, in another process): equal to 1e-4. reward_node
    gets no parameter but the checkpoint and its topic, so its camera name and crop box come
    from the checkpoint; and it decides with the threshold and debounce stored in it."""
    best, data, frames = trained
    report = evaluate(best, data, split="all", out=best.parent / "eval")
    assert report["stored"].startswith("not stored")  # the checkpoint's own training frames
    by_stamp = {}
    for line in (best.parent / "eval" / "predictions.jsonl").read_text().splitlines():
        r = json.loads(line)
        by_stamp[r["stamp_ns"]] = r
    assert len(by_stamp) == len(frames)
    predicted, _ = predict_files(best, [data / "images"])
    by_path = {Path(r["path"]).relative_to(data).as_posix(): r["probability"] for r in predicted}
    for r in by_stamp.values():
        assert by_path[r["images"]["camera"]] == pytest.approx(r["probability"], abs=1e-4)
    # uncropped, the model would see something else: the crop box is what makes them equal
    plain = load_checkpoint(best)
    plain.config.crop_boxes = {}
    from reward_model_ros.core.scoring import FrameScorer

    uncropped = FrameScorer(plain).score([rgb for _, rgb in frames], ["camera"] * len(frames))
    assert (
        max(
            abs(p - by_stamp[ns]["probability"])
            for (ns, _), p in zip(frames, uncropped.probabilities, strict=True)
        )
        > 1e-3
    )

    store_recommendation(best, threshold=0.0, debounce=3, fusion="mean", source="this test")
    got: list[RewardStamped] = []
    ros_node.create_subscription(RewardStamped, "/reward", got.append, qos.reliable(100))
    pub = ros_node.create_publisher(Image, "/image_raw", qos.images("reliable", 50))
    node = start_node("reward_node", params={"model.checkpoint_path": str(best), "image_qos": "reliable"})
    spin_until(ros_node, lambda: pub.get_subscription_count() > 0 or not node.alive(), 90, "reward_node")
    assert node.alive(), node.output()
    for ns, rgb in frames:
        msg = array_to_image(rgb, "rgb8")
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)
        pub.publish(msg)
        before = len(got)
        spin_until(ros_node, lambda b=before: len(got) > b, 20, "a reward")
    for r in got:
        ns = stamp_to_nanoseconds(r.header.stamp)
        assert r.probability == pytest.approx(by_stamp[ns]["probability"], abs=1e-4)
        assert list(r.camera_names) == ["camera"] and r.threshold == 0.0
    # threshold 0 and debounce 3 from the checkpoint: success from the third frame on
    assert [r.success for r in got[:4]] == [False, False, True, True]
    assert "debounce 3 (recommended)" in node.output()


def test_cameras_map_to_the_checkpoint_or_fail_naming_both_sides():
    assert map_cameras(["front", "wrist"], ["/a", "/b"]) == ["front", "wrist"]
    assert map_cameras([], ["/a"]) == ["/a"]  # a model without recorded cameras
    assert map_cameras(["front"], ["/a", "/b"], ["front", "front"]) == ["front", "front"]
    with pytest.raises(ConfigError, match=r"1 image topic\(s\) \['/a'\], but the checkpoint was trained on"):
        map_cameras(["front", "wrist"], ["/a"])
    with pytest.raises(ConfigError, match=r"camera_names \['side'\] match no camera .* \['front', 'wrist'\]"):
        map_cameras(["front", "wrist"], ["/a"], ["side"])


def test_a_crop_box_of_a_camera_not_served_is_an_error():
    cfg = ModelConfig(
        arch="resnet10", image_size=[3, 32, 32], camera_names=["front", "wrist"], crop_boxes={"wrist": CROP}
    )
    ckpt = untrained(cfg, threshold=0.5)
    with pytest.raises(
        ConfigError, match=r"crop box\(es\) for camera\(s\) \['wrist'\] match none of the served"
    ):
        serve_cameras(ckpt, ["/front/image_raw"], ["front"])
    assert serve_cameras(ckpt, ["/f", "/w"]) == ["front", "wrist"]


def test_reward_node_refuses_topics_that_match_no_checkpoint_camera(start_node, tmp_path):
    cfg = ModelConfig(arch="resnet10", image_size=[3, 32, 32], camera_names=["front", "wrist"])
    ckpt = save_checkpoint(tmp_path / "c", untrained(cfg, 0.5).model, 0.5)
    node = start_node("reward_node", params={"model.checkpoint_path": str(ckpt)})
    assert node.popen.wait(timeout=60) == 2
    assert "1 image topic(s) ['/image_raw'], but the checkpoint was trained on 2 camera(s)" in node.output()


def test_decision_settings_come_from_parameters_then_the_recommendation_then_the_checkpoint(tmp_path):
    cfg = ModelConfig(arch="resnet10", image_size=[3, 32, 32])
    path = save_checkpoint(tmp_path / "c", untrained(cfg, 0.5).model, 0.42)
    plain = decision_settings(load_checkpoint(path))
    assert (plain.reward_threshold, plain.debounce_frames, plain.camera_fusion) == (0.42, 1, "logit")
    assert "validation threshold" in plain.source and "no recommendation stored" in plain.source
    store_validation_decision(path, 0.47, 3, {"reason": "this test"})  # what train stores
    trained = decision_settings(load_checkpoint(path))
    assert (trained.reward_threshold, trained.debounce_frames) == (0.47, 3)
    assert "debounce 3 (chosen on validation episodes by train)" in trained.source
    with pytest.raises(CheckpointError, match="validation_decision' must hold debounce_frames >= 1"):
        store_validation_decision(path, 0.47, 0, {})
    store_recommendation(path, 0.35, 4, "min", "evaluate on held-out")
    rec = decision_settings(load_checkpoint(path))
    assert (rec.reward_threshold, rec.debounce_frames, rec.camera_fusion) == (0.35, 4, "min")
    assert "recommended by evaluate on held-out" in rec.source
    mixed = decision_settings(load_checkpoint(path), threshold=0.9)
    assert (mixed.reward_threshold, mixed.debounce_frames) == (0.9, 4)
    assert "threshold 0.9 (set)" in mixed.source


def test_debug_image_save_dir_is_the_default_of_model_debug_save_dir(trained, tmp_path, monkeypatch):
    """RLinf's DEBUG_IMAGE_SAVE_DIR: where the classifier's inputs go when nothing else is set."""
    best, data, _ = trained
    monkeypatch.setenv("DEBUG_IMAGE_SAVE_DIR", str(tmp_path / "dbg"))
    rows, _ = predict_files(best, [data / "images"])
    written = sorted((tmp_path / "dbg").rglob("*.png"))
    assert len(written) == len(rows) == 32
    assert {p.parent.name for p in written} <= {"resnet_success", "resnet_fail"}
    first = written[0].name
    assert first[:6].isdigit() and first[6:11] == "_prob" and first.endswith(".png")
    assert cv2.imread(str(written[0])).shape == (32, 32, 3)  # the model input, cropped and resized
    explicit, _ = predict_files(best, [data / "images"], debug_dir=str(tmp_path / "mine"))
    assert len(list((tmp_path / "mine").rglob("*.png"))) == len(explicit)


def test_train_evaluate_and_reward_node_fuse_cameras_alike_by_default(tmp_path):
    """train chooses the stored threshold on score_rows' fused probabilities; reward_node and
    the RL reward publish RewardPipeline's with decision_settings' fusion. One default for all,
    or the stored threshold is applied to another probability than the one it was chosen on."""
    import inspect

    from reward_model_ros.core.pipeline import RewardPipeline
    from reward_model_ros.core.reward import DEFAULT_FUSION
    from reward_model_ros.training.evaluate import score_rows

    cfg = ModelConfig(arch="resnet10", image_size=[3, 32, 32], camera_names=["front", "side"])
    path = save_checkpoint(tmp_path / "c", untrained(cfg, 0.5).model, 0.5)
    defaults = {
        "decision_settings": decision_settings(load_checkpoint(path)).camera_fusion,
        "score_rows": inspect.signature(score_rows).parameters["fusion"].default,
        "evaluate": inspect.signature(evaluate).parameters["fusion"].default,
        "RewardPipeline": inspect.signature(RewardPipeline).parameters["fusion"].default,
    }
    assert set(defaults.values()) == {DEFAULT_FUSION}, defaults
