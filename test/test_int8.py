"""int8 inference: train stores calibration frames, auto picks int8 only where it can run,
the int8 graph agrees with fp32, and bad or missing calibration frames are clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic import make_dataset, tiny_train_config

from reward_model_ros.cli import main
from reward_model_ros.core import quantize
from reward_model_ros.core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    store_int8_frames,
    untrained,
)
from reward_model_ros.core.config import ConfigError, ModelConfig
from reward_model_ros.core.scoring import FrameScorer
from reward_model_ros.data.dataset import read_manifest
from reward_model_ros.training.data import load_rgb

pytestmark = pytest.mark.skipif(
    not quantize.int8_available(), reason="this torch has no x86 quantized engine"
)


def trained(tmp_path):
    from reward_model_ros.training.train import train

    data = make_dataset(tmp_path / "data", episodes=8, frames=8)
    cfg = tiny_train_config(
        tmp_path / "run",
        "model.image_size=[3,48,48]",
        "runner.max_steps=12",
        "runner.int8_calibration_frames=24",
    )
    train(cfg, data, log=lambda m: None)
    return data, tmp_path / "run" / "best_model"


def test_train_stores_frames_auto_picks_int8_and_it_scores_like_fp32(tmp_path, monkeypatch, capsys):
    import reward_model_ros.core.model as model_module

    data, best = trained(tmp_path)
    frames = quantize.read_frames(best)
    assert frames is not None and tuple(frames.shape) == (24, 3, 48, 48)
    meta = json.loads((best / "config.json").read_text())
    assert meta["int8"]["frames"] == 24 and "train" in meta["int8"]["source"]

    monkeypatch.setattr(model_module, "cpu_has_vnni", lambda: True)
    int8 = load_checkpoint(best)
    assert (int8.config.precision, int8.config.optimize) == ("int8", "freeze")
    monkeypatch.setattr(model_module, "cpu_has_vnni", lambda: False)  # no int8 dot products: not auto
    assert load_checkpoint(best).config.precision != "int8"
    fp32 = load_checkpoint(best, {"precision": "fp32", "optimize": "none"})

    rows = read_manifest(data)
    rgb = [load_rgb(data / r["images"]["camera"]) for r in rows]
    got = np.array(FrameScorer(int8).score(rgb).probabilities)
    want = np.array(FrameScorer(fp32).score(rgb).probabilities)
    assert want.max() - want.min() > 0.5  # a model that separates the classes, so agreement means something
    assert np.abs(got - want).max() < 0.1  # the demo checkpoint: 0.084 on val, no decision changed
    t = fp32.threshold
    assert ((got >= t) == (want >= t)).mean() >= 0.95

    # the command for older checkpoints: stores frames and says what int8 changes
    (best / quantize.FRAMES_FILE).unlink()
    assert main(["quantize", str(best), "--data", str(data), "--frames", "16"]) == 0
    out = capsys.readouterr().out
    assert "16 inputs" in out and "int8 against fp32" in out and "max |dp|" in out
    assert tuple(quantize.read_frames(best).shape) == (16, 3, 48, 48)
    assert main(["quantize", str(best), "--data", str(data), "--split", "test"]) == 2
    assert "no samples in split 'test'" in capsys.readouterr().err


def test_missing_or_foreign_calibration_frames_are_clear_errors(tmp_path):
    cfg = ModelConfig(arch="resnet10", image_size=[3, 48, 48], hidden_dim=16)
    ck = save_checkpoint(tmp_path / "ck", untrained(cfg, 0.5).model, 0.5)
    with pytest.raises(CheckpointError, match="reward-model quantize"):
        load_checkpoint(ck, {"precision": "int8"})
    assert load_checkpoint(ck).config.precision != "int8"  # auto never picks int8 without frames
    store_int8_frames(ck, np.zeros((4, 3, 64, 64), np.uint8), "another model's inputs")
    with pytest.raises(CheckpointError, match=r"shape \[3, 64, 64\].*takes \[3, 48, 48\]"):
        load_checkpoint(ck, {"precision": "int8"})
    (ck / quantize.FRAMES_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(ck, {"precision": "int8"})
    with pytest.raises(ConfigError, match="must be freeze with precision int8"):
        ModelConfig(arch="resnet10", precision="int8", optimize="none").validate()
