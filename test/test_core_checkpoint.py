"""Checkpoints: round trip, and a clear error for each way a checkpoint can be wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reward_model_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, untrained
from reward_model_ros.core.config import ModelConfig

CFG = ModelConfig(arch="resnet10", hidden_dim=16, image_size=[3, 64, 64], camera_names=["front"])


@pytest.fixture
def ckpt(tmp_path):
    model = untrained(CFG, threshold=0.5, seed=3).model
    return save_checkpoint(tmp_path / "pick_v1", model, threshold=0.62, training={"epochs": 3}), model


def test_round_trip_gives_the_same_predictions(ckpt):
    path, model = ckpt
    loaded = load_checkpoint(path, {"precision": model.cfg.precision, "optimize": "none"})
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), np.uint8)
    assert np.array_equal(loaded.model.predict(x).logits, model.predict(x).logits)  # the same weights
    # by default it scores as every loader does (bf16 in a frozen graph where that is native)
    fast = load_checkpoint(path)
    assert np.abs(fast.model.predict(x).probabilities - model.predict(x).probabilities).max() < 0.01
    assert loaded.threshold == pytest.approx(0.62)
    assert loaded.config.camera_names == ["front"] and loaded.training == {"epochs": 3}
    assert loaded.model_id.startswith("pick_v1@") and len(loaded.model_id) == len("pick_v1@") + 12
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]


def test_model_id_changes_with_the_weights(ckpt, tmp_path):
    path, model = ckpt
    with torch.no_grad():
        model.head[0].weight.add_(1.0)
    other = save_checkpoint(tmp_path / "pick_v1_b", model, threshold=0.5)
    assert load_checkpoint(path).model_id.split("@")[1] != load_checkpoint(other).model_id.split("@")[1]


def test_runtime_overrides_apply(ckpt):
    path, _ = ckpt
    loaded = load_checkpoint(
        path,
        {
            "precision": "bf16",
            "crop_boxes": {"front": [0, 0, 10, 10]},
            "arch": "resnet10",
            "hidden_dim": None,
        },
    )
    assert loaded.config.precision == "bf16" and loaded.config.crop_boxes == {"front": [0, 0, 10, 10]}


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (
            {"hidden_dim": 256},
            r"model.hidden_dim is 256 but the checkpoint .* was trained with hidden_dim=16; "
            r"remove the model.hidden_dim setting",
        ),
        (
            {"image_size": [3, 128, 128]},
            r"model.image_size is \[3, 128, 128\] but .* image_size=\[3, 64, 64\]",
        ),
        ({"arch": "resnet18"}, r"model.arch is 'resnet18' but .* arch='resnet10'"),
        ({"normalize": False}, r"model.normalize is False but .* normalize=True"),
    ],
)
def test_contradicting_setting_names_field_both_values_and_fix(ckpt, override, match):
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(ckpt[0], override)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist; train one with `reward-model train`"):
        load_checkpoint(tmp_path / "nope")


def test_missing_weights(ckpt):
    (ckpt[0] / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model.safetensors is missing"):
        load_checkpoint(ckpt[0])


def test_missing_config(ckpt):
    (ckpt[0] / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config.json is missing"):
        load_checkpoint(ckpt[0])


def test_corrupt_weights(ckpt):
    path = ckpt[0] / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors is corrupt or not a safetensors file"):
        load_checkpoint(ckpt[0])


def test_pickle_is_never_loaded(ckpt):
    """A pickle renamed to model.safetensors is refused, not unpickled."""
    torch.save({"x": torch.zeros(1)}, ckpt[0] / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"corrupt or not a safetensors file"):
        load_checkpoint(ckpt[0])


def test_corrupt_config(ckpt):
    (ckpt[0] / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json is not valid JSON"):
        load_checkpoint(ckpt[0])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.update(format_version=99), r"format_version 99 is not supported"),
        (lambda m: m.pop("threshold"), r"field 'threshold' is missing"),
        (lambda m: m.update(threshold=1.5), r"threshold 1.5 must be a number in \[0, 1\]"),
        (lambda m: m["model"].update(arch="vit"), r"invalid model section: model.arch='vit'"),
        (lambda m: m["model"].update(colour="red"), r"unknown model keys \['colour'\]"),
        (lambda m: m["model"].update(hidden_dim=32), r"does not fit a resnet10 with hidden_dim=32"),
    ],
)
def test_bad_config_fields(ckpt, edit, match):
    path = ckpt[0] / "config.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(ckpt[0])


def test_every_loader_scores_with_the_same_resolved_inference_settings(tmp_path, monkeypatch):
    """load_checkpoint, which reward_node, evaluate, predict and the RL reward all use, runs
    bf16 in a frozen graph where bf16 is native, eager fp32 elsewhere, whatever precision
    the checkpoint was trained in; explicit overrides win."""
    import reward_model_ros.core.model as model_module

    path = tmp_path / "ckpt"
    save_checkpoint(path, untrained(ModelConfig(arch="resnet10", image_size=[3, 32, 32]), 0.5).model, 0.5)
    monkeypatch.setattr(model_module, "cpu_has_bf16", lambda: True)
    cfg = load_checkpoint(path).config
    assert (cfg.precision, cfg.optimize) == ("bf16", "freeze")
    cfg = load_checkpoint(path, {"precision": "fp32"}).config
    assert (cfg.precision, cfg.optimize) == ("fp32", "none")
    monkeypatch.setattr(model_module, "cpu_has_bf16", lambda: False)
    cfg = load_checkpoint(path).config
    assert (cfg.precision, cfg.optimize) == ("fp32", "none")
