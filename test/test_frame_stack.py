"""model.frame_stack: a model that also sees the frames before, in training, evaluate and
the stream's history (reward_node, the RL reward), all alike."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synthetic import make_dataset, make_motion_dataset

from reward_model_ros.core.checkpoint import CheckpointError, load_checkpoint
from reward_model_ros.core.config import ConfigError, ModelConfig
from reward_model_ros.core.model import ResNetRewardModel
from reward_model_ros.core.overrides import apply_overrides
from reward_model_ros.core.pipeline import FrameHistory, FrameSet, build_pipeline
from reward_model_ros.data.dataset import read_manifest
from reward_model_ros.paths import share_dir
from reward_model_ros.training.data import Augment, earlier_rows, load_rgb
from reward_model_ros.training.evaluate import score_rows
from reward_model_ros.training.train import TrainConfig, train


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    return make_motion_dataset(tmp_path_factory.mktemp("motion"), episodes=24, frames=20)


def run(tmp_path, data, *overrides):
    base = [
        "model.arch=resnet10",
        "model.image_size=[3,32,32]",
        "model.hidden_dim=32",
        "actor.global_batch_size=32",
        "actor.micro_batch_size=32",
        "actor.optim.lr=0.003",
        "runner.max_epochs=15",
        "runner.early_stop.patience=0",
        "data.augment=false",
        "runner.save_interval=0",
        "runner.progress=false",
        "runner.precision=fp32",
        f"runner.output_dir={tmp_path / 'run'}",
        f"runner.logger.log_path={tmp_path / 'run' / 'logs'}",
    ]
    cfg = apply_overrides(TrainConfig(), [*base, *overrides], [share_dir() / "config" / "train_reward.yaml"])
    train(cfg, data, log=lambda m: None)
    return load_checkpoint(tmp_path / "run" / "best_model")


def test_a_stacked_model_learns_what_only_motion_shows(motion, tmp_path):
    single = run(tmp_path / "one", motion)
    stacked = run(tmp_path / "two", motion, "model.frame_stack=2")
    assert stacked.config.frame_stack == 2 and single.config.frame_stack == 1
    auroc = {
        k: json.loads((tmp_path / k / "run" / "best_model" / "config.json").read_text())["training"][
            "validation"
        ]["auroc"]
        for k in ("one", "two")
    }
    # any one frame is a grey disc somewhere: alone, a frame says nothing
    assert auroc["one"] < 0.75 and auroc["two"] > 0.9, auroc  # measured: 0.54 and 0.96


def test_the_stream_history_gives_what_evaluate_gives(motion, tmp_path):
    """The contract between training's stacking (the episode's frames before) and serving's
    (FrameHistory over the stream): the same frames score the same."""
    cfg = ModelConfig(arch="resnet10", image_size=[3, 32, 32], hidden_dim=8, frame_stack=3)
    from reward_model_ros.core.checkpoint import untrained

    ckpt = untrained(cfg, threshold=0.5, seed=3)
    with torch.no_grad():  # an untrained stacked model starts blind to the past: make it look
        ckpt.model.backbone.conv1.weight[:, 3:].normal_(0, 0.2)
    rows = [r for r in read_manifest(motion) if r["episode"] in ("ep000", "ep001")]
    want, invalid = score_rows(ckpt, rows, motion)
    assert not any(invalid)
    pipeline, _, cams = build_pipeline(ckpt, ["camera"])
    got = []
    for ep in ("ep000", "ep001"):
        history = pipeline.history()
        for r in (r for r in rows if r["episode"] == ep):
            frame = load_rgb(motion / r["images"]["camera"])
            past = history.push([frame], cams)
            got.append(pipeline.score([FrameSet([frame], cams, past=past)])[0].probability)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # and the past matters: without it the same frames score otherwise
    alone = [
        pipeline.score([FrameSet([load_rgb(motion / r["images"]["camera"])], cams)])[0].probability
        for r in rows
    ]
    assert np.abs(np.array(alone) - want).max() > 1e-3


def test_history_keeps_the_last_frames_per_camera_and_starts_over():
    h = FrameHistory(3)
    a, b, c = (np.full((2, 2, 3), v, np.uint8) for v in (1, 2, 3))
    assert h.push([a], ["front"]) == [[]]
    assert [f[0, 0, 0] for f in h.push([b], ["front"])[0]] == [1]
    assert [f[0, 0, 0] for f in h.push([c], ["front"])[0]] == [2, 1]
    assert [f[0, 0, 0] for f in h.push([a], ["front"])[0]] == [3, 2]  # keeps frame_stack - 1
    assert h.push([a], ["side"]) == [[]]  # per camera
    h.reset()
    assert h.push([a], ["front"]) == [[]]
    assert FrameHistory(1).push([a], ["front"]) is None  # nothing kept for single frames


def test_earlier_frames_come_from_the_episode_and_a_gap_is_refused(tmp_path):
    rows = [{"episode": "e", "frame": i, "images": {"c": f"{i}.png"}} for i in range(4)]
    got = earlier_rows(rows, 3)
    assert [[r["frame"] for r in e] for e in got] == [[0, 0], [0, 0], [1, 0], [2, 1]]
    with pytest.raises(ValueError, match=r"episode e has 3 of the frames 0\.\.3.*fail_success_ratio 0"):
        earlier_rows([r for r in rows if r["frame"] != 2], 2)


def test_stacked_frames_are_shifted_and_jittered_alike():
    aug = Augment(shift=4, jitter=0.3)
    frame = torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)
    out = aug(torch.cat([frame, frame]), torch.Generator().manual_seed(1))
    assert out.shape == (6, 32, 32) and torch.equal(out[:3], out[3:])
    assert not torch.equal(out[:3], frame)  # it did augment
    # one frame augments as it always did
    assert torch.equal(aug(frame, torch.Generator().manual_seed(1)), out[:3])


def test_a_stacked_model_starts_as_the_single_frame_one_and_bad_settings_are_refused(tmp_path):
    one = ResNetRewardModel(ModelConfig(arch="resnet10", image_size=[3, 32, 32], hidden_dim=8))
    two = ResNetRewardModel(ModelConfig(arch="resnet10", image_size=[3, 32, 32], hidden_dim=8, frame_stack=2))
    assert torch.count_nonzero(two.backbone.conv1.weight[:, 3:]) == 0
    state = one.state_dict()  # the same weights, the past's zero ones added
    state["backbone.conv1.weight"] = torch.cat(
        [state["backbone.conv1.weight"], two.backbone.conv1.weight[:, 3:]], 1
    )
    two.load_state_dict(state)
    x = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    other = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    one.eval(), two.eval()
    torch.testing.assert_close(two(torch.cat([x, other], 1)), one(x))  # zero weights on the past
    with pytest.raises(ValueError, match=r"takes \(N, 6 \(3 per stacked frame\), H, W\)"):
        two(x)
    with pytest.raises(ConfigError, match=r"model\.frame_stack=2: needs a trainable first convolution"):
        ModelConfig(frame_stack=2, frozen_stages=0).validate()
    with pytest.raises(ConfigError, match=r"model\.frame_stack=5"):
        ModelConfig(frame_stack=5).validate()
    # a dataset that keeps only some frames cannot train a stacked model: said before training
    data = make_dataset(tmp_path / "d", episodes=8, frames=8)
    rows = read_manifest(data)
    (data / "manifest.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows if not (r["episode"] == "ep000" and r["frame"] == 3))
    )
    with pytest.raises(ValueError, match=r"episode ep000 has 7 of the frames 0\.\.7"):
        run(tmp_path, data, "model.frame_stack=2", "runner.max_epochs=1")


def test_a_stacked_checkpoint_refuses_a_contradicting_override(motion, tmp_path):
    from reward_model_ros.core.checkpoint import save_checkpoint, untrained

    ckpt = untrained(ModelConfig(arch="resnet10", image_size=[3, 32, 32], hidden_dim=8, frame_stack=2), 0.5)
    save_checkpoint(tmp_path / "c", ckpt.model, 0.5)
    with pytest.raises(CheckpointError, match=r"model\.frame_stack is 1 but the checkpoint"):
        load_checkpoint(tmp_path / "c", {"frame_stack": 1})
    loaded = load_checkpoint(tmp_path / "c")
    assert loaded.config.frame_stack == 2
    # the RL reward and reward_node build the same pipeline: it keeps a history per stream
    pipeline, _, _ = build_pipeline(loaded, ["camera"])
    assert pipeline.history().keep == 1


def test_the_oracle_baselines_pipeline_without_a_scorer_keeps_no_history():
    """bench/rl_pushcube.py's oracle run builds RewardPipeline(None, ...): it has no frames to stack."""
    from reward_model_ros.core.pipeline import RewardPipeline
    from reward_model_ros.core.reward import RewardConfig

    history = RewardPipeline(None, RewardConfig()).history()
    assert history.push([np.zeros((2, 2, 3), np.uint8)], ["camera"]) is None
