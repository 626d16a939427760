"""Temperature scaling: the fit, where it is stored, and that every scorer applies it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import make_dataset, tiny_train_config

from reward_model_ros.cli import main
from reward_model_ros.core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rescale_threshold,
    save_checkpoint,
    store_calibration,
    store_recommendation,
    untrained,
)
from reward_model_ros.core.config import ModelConfig
from reward_model_ros.core.scoring import FrameScorer
from reward_model_ros.training import metrics as M
from reward_model_ros.training.temperature import fit_calibration, fit_temperature, nll, sigmoid

CFG = ModelConfig(arch="resnet10", hidden_dim=16, image_size=[3, 48, 48], camera_names=["camera"])


def over_confident(n: int = 20000, scale: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z) (calibrated logits z), reported as scale * z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < sigmoid(z)).astype(int)
    return scale * z, labels


def checkpoint(tmp_path: Path, name: str = "ckpt", training: dict | None = None) -> Path:
    """An untrained model whose logits spread over several units (so T visibly matters)."""
    model = untrained(CFG, threshold=0.5, seed=1).model
    with torch.no_grad():
        model.head[3].weight.mul_(200.0)
        model.head[3].bias.fill_(0.5)
    return save_checkpoint(tmp_path / name, model, threshold=0.7, training=training or {})


def frames(n: int = 6, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(30, 220, (60, 80, 3), np.uint8) for _ in range(n)]


def calibration(t: float, applied: bool = True) -> dict:
    return {"temperature": t, "applied": applied, "fitted_on": "test", "ece_before": 0.1, "ece_after": 0.01}


def test_a_temperature_fitted_on_over_confident_logits_lowers_ece_and_nll():
    logits, labels = over_confident()
    cal = fit_calibration(logits, labels, "synthetic val, 20000 frames")
    assert cal["applied"] and cal["temperature"] == pytest.approx(3.0, rel=0.05)
    assert cal["ece_after"] < cal["ece_before"] and cal["nll_after"] < cal["nll_before"]
    assert cal["ece_before"] > 0.05 and cal["ece_after"] <= 0.02  # the bar, on these frames
    calibrated = sigmoid(logits / cal["temperature"])
    assert cal["ece_after"] == pytest.approx(M.calibration(labels, calibrated)["ece"])
    assert cal["nll_before"] == pytest.approx(nll(logits, labels, 1.0))
    # deterministic, and the NLL is lowest there
    assert fit_temperature(logits, labels) == cal["temperature"]
    best = nll(logits, labels, cal["temperature"])
    assert best <= nll(logits, labels, cal["temperature"] * 1.05)
    assert best <= nll(logits, labels, cal["temperature"] / 1.05)
    # an under-confident model gets T < 1
    assert fit_temperature(logits / 6.0, labels) == pytest.approx(0.5, rel=0.05)


def test_a_temperature_that_would_not_lower_the_ece_is_not_applied():
    # logits 0 on half-successful frames: perfectly calibrated already
    cal = fit_calibration(np.zeros(40), np.arange(40) % 2, "flat")
    assert not cal["applied"] and cal["temperature"] == 1.0 and "T = 1 kept" in cal["reason"]
    one_class = fit_calibration(np.full(10, 5.0), np.ones(10, int), "positives only")
    assert not one_class["applied"] and one_class["temperature"] == 1.0
    assert "one class" in one_class["reason"]


def test_the_temperature_is_stored_and_loaded_and_thresholds_keep_their_decisions(tmp_path):
    path = checkpoint(tmp_path)
    store_recommendation(path, 0.4, 3, "mean", "test")
    changed = store_calibration(path, calibration(2.0))
    ckpt = load_checkpoint(path)
    assert ckpt.temperature == 2.0 and ckpt.model.temperature == 2.0
    assert ckpt.calibration["applied"] and ckpt.calibration["fitted_on"] == "test"
    assert ckpt.threshold == pytest.approx(1 / (1 + math.exp(-math.log(0.7 / 0.3) / 2.0)))
    assert changed["threshold"] == [0.7, ckpt.threshold]
    assert changed["reward_threshold"][0] == 0.4 and ckpt.recommended["debounce_frames"] == 3
    # a refit maps from the old temperature to the new one: every logit is decided as before
    z = np.linspace(-6, 6, 1201)
    before = sigmoid(z / 2.0) >= ckpt.recommended["reward_threshold"]
    store_calibration(path, calibration(4.0))
    again = load_checkpoint(path)
    assert again.temperature == 4.0
    assert np.array_equal(before, sigmoid(z / 4.0) >= again.recommended["reward_threshold"])
    assert rescale_threshold(0.7, 1.0, 1.0) == 0.7 and rescale_threshold(1.0, 1.0, 3.0) == 1.0
    # so are train's validation failure bounds, stored with the temperature they were taken at
    from reward_model_ros.core.checkpoint import store_validation_decision, validation_failure_bounds

    store_validation_decision(
        path,
        again.threshold,
        2,
        {"failure_bounds": {"temperature": 2.0, "by_debounce": {"1": 0.8, "2": 0.0}}},
    )
    bounds = validation_failure_bounds(load_checkpoint(path))
    assert bounds[1] == pytest.approx(rescale_threshold(0.8, 2.0, 4.0)) != 0.8 and bounds[2] == 0.0
    assert np.array_equal(sigmoid(z / 2.0) > 0.8, sigmoid(z / 4.0) > bounds[1])
    # a fit that was not applied scales nothing
    store_calibration(path, calibration(1.0, applied=False))
    assert load_checkpoint(path).temperature == 1.0
    assert load_checkpoint(path).threshold == pytest.approx(0.7)


def test_a_checkpoint_without_calibration_loads_as_temperature_one_and_a_bad_entry_is_refused(tmp_path):
    path = checkpoint(tmp_path)
    assert "calibration" not in json.loads((path / "config.json").read_text())
    ckpt = load_checkpoint(path)
    assert ckpt.temperature == 1.0 and ckpt.calibration is None
    scored = FrameScorer(ckpt).score(frames(), ["camera"] * 6)
    logits = ckpt.model.predict(scored.inputs).logits
    assert np.allclose(scored.probabilities, torch.sigmoid(torch.from_numpy(logits)).numpy(), atol=1e-6)
    meta = json.loads((path / "config.json").read_text())
    for bad in ({"temperature": -1.0, "applied": True}, {"temperature": 2.0}, "2.0"):
        (path / "config.json").write_text(json.dumps({**meta, "calibration": bad}))
        with pytest.raises(CheckpointError, match=r"'calibration' must hold .*reward-model calibrate"):
            load_checkpoint(path)


def test_the_scorer_gives_sigmoid_of_logit_over_temperature(tmp_path):
    path = checkpoint(tmp_path)
    plain = FrameScorer(load_checkpoint(path)).score(frames(), ["camera"] * 6)
    store_calibration(path, calibration(2.5))
    ckpt = load_checkpoint(path)
    scored = FrameScorer(ckpt).score(frames(), ["camera"] * 6)
    assert scored.all_valid
    logits = ckpt.model.predict(scored.inputs).logits  # raw: the same with and without T
    assert np.abs(logits).max() > 1.0  # T visibly matters on these frames
    want = torch.sigmoid(torch.from_numpy(logits) / 2.5).numpy()
    assert np.allclose(scored.probabilities, want, atol=1e-6)
    assert not np.allclose(scored.probabilities, plain.probabilities, atol=1e-3)
    # same ranking: the temperature changes how sure the model is, not its order
    assert np.array_equal(np.argsort(scored.probabilities), np.argsort(plain.probabilities))


def test_calibrate_command_refits_on_val_refuses_training_frames_and_a_missing_checkpoint(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", episodes=8, frames=6)
    path = checkpoint(tmp_path, training={"data": str(data)})
    assert main(["calibrate", str(tmp_path / "nowhere"), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "nowhere does not exist" in err and "reward-model train" in err
    assert main(["calibrate", str(path), "--data", str(data), "--split", "train"]) == 2
    assert "own training frames" in capsys.readouterr().err
    assert main(["calibrate", str(path), "--data", str(data), "--split", "test"]) == 2
    assert "no samples in split 'test'" in capsys.readouterr().err
    assert main(["calibrate", str(path), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    cal = json.loads((path / "config.json").read_text())["calibration"]
    assert cal["fitted_on"] == f"{data} val, 12 frames" and cal["frames"] == 12  # 2 val episodes x 6
    assert "fitted_temperature" in cal and "stored in" in out
    assert load_checkpoint(path).temperature == (cal["fitted_temperature"] if cal["applied"] else 1.0)


def test_training_stores_the_fit_on_best_model_and_evaluate_reports_the_temperature(tmp_path):
    from reward_model_ros.training.evaluate import evaluate
    from reward_model_ros.training.train import train

    data = make_dataset(tmp_path / "data", episodes=8, frames=8)
    cfg = tiny_train_config(tmp_path / "run", "model.image_size=[3,48,48]", "runner.max_steps=2")
    lines: list[str] = []
    result = train(cfg, data, log=lines.append)
    best = load_checkpoint(tmp_path / "run" / "best_model")
    assert best.calibration == result["calibration"]
    assert best.calibration["fitted_on"] == f"{data} val, 16 frames"  # 2 val episodes x 8 frames
    assert best.temperature == (best.calibration["fitted_temperature"] if best.calibration["applied"] else 1)
    assert any(line.startswith("calibration") for line in lines)
    assert load_checkpoint(tmp_path / "run" / "last").calibration is None  # only best_model
    report = evaluate(tmp_path / "run" / "best_model", data, out=tmp_path / "ev", store=False)
    assert report["calibration"]["temperature"] == best.temperature
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["calibration"]["temperature"] == best.temperature
