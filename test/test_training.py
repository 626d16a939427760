"""Training, evaluation and prediction on a small synthetic dataset (seconds on the CPU)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic import make_dataset

from reward_model_ros.core.checkpoint import load_checkpoint
from reward_model_ros.core.overrides import OverrideError, apply_overrides
from reward_model_ros.paths import share_dir
from reward_model_ros.training import metrics as M
from reward_model_ros.training.evaluate import evaluate
from reward_model_ros.training.train import (
    RAW_WEIGHTS,
    Optim,
    TrainConfig,
    Trainer,
    TrainError,
    adamw,
    averaged_model,
    ema_decay_at,
    scheduled_lr,
    train,
)

EXE = Path(sys.executable).parent / "reward-model"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("syn"), episodes=16, frames=16)


def config(tmp_path: Path, *overrides: str):
    base = [
        "model.arch=resnet10",
        "model.image_size=[3,48,48]",
        "model.hidden_dim=32",
        "actor.global_batch_size=32",
        "actor.micro_batch_size=16",
        "runner.val_check_interval=3",
        "runner.save_interval=0",
        "runner.progress=false",
        "runner.precision=fp32",
        f"runner.output_dir={tmp_path / 'run'}",
        f"runner.logger.log_path={tmp_path / 'run' / 'logs'}",
    ]
    return apply_overrides(TrainConfig(), [*base, *overrides], [share_dir() / "config" / "train_reward.yaml"])


def test_a_tiny_run_learns_a_separable_set_and_saves_a_loadable_checkpoint(dataset, tmp_path):
    cfg = config(tmp_path, "runner.max_epochs=4", "actor.optim.lr_schedule=cosine")
    result = train(cfg, dataset, log=lambda m: None)
    best = load_checkpoint(tmp_path / "run" / "best_model")
    val = best.training["validation"]
    assert val["accuracy"] >= 0.95 and val["auroc"] >= 0.99
    assert 0.0 < best.threshold < 1.0 and best.config.arch == "resnet10"
    assert result["state"]["step"] == 4 * (16 * 16 * 3 // 4 // 32)  # 3/4 of episodes train
    # the cosine schedule: from actor.optim.lr down towards 0 by the last step
    lrs = [h["lr"] for h in result["history"]]
    assert lrs[0] <= 3e-4 and all(b < a for a, b in itertools.pairwise(lrs)) and lrs[-1] < 0.1 * 3e-4
    events = list((tmp_path / "run" / "logs").glob("events.out.tfevents.*"))
    assert events  # TensorBoard logs
    # threshold and debounce are chosen on the validation episodes as reward_node scores them
    # (the served precision and temperature), not on the training-time model's probabilities
    from reward_model_ros.data.dataset import read_manifest
    from reward_model_ros.training.evaluate import DEBOUNCES, DECISION_DEBOUNCES, MIN_DEBOUNCE, score_rows

    decided = json.loads((tmp_path / "run" / "best_model" / "config.json").read_text())["validation_decision"]
    assert decided["scored_as"] == best.config.precision and decided["temperature"] == best.temperature
    val_rows = sorted(
        (r for r in read_manifest(dataset) if r["split"] == "val"), key=lambda r: (r["episode"], r["frame"])
    )
    probs, _ = score_rows(best, val_rows, dataset)
    labels = np.array([r["label"] for r in val_rows])
    episodes = M.episodes_of(val_rows, labels, probs)
    assert (best.threshold, best.debounce) == M.validation_decision(
        labels, probs, episodes, DECISION_DEBOUNCES
    )[:2]
    # these separable episodes need no debounce; train still stores the floor: a single frame
    # above the threshold is what a cube carried through the goal gives
    assert best.debounce == MIN_DEBOUNCE == 2
    assert M.shortest_safe_debounce(episodes, best.threshold, DEBOUNCES) == 1
    assert decided["episodes"] == len(episodes) == 4 and decided["failure_episodes_judged_successful"] == 0
    # and what keeps evaluate's later recommendations safe on these failure episodes
    bounds = M.failure_run_bounds(episodes, DEBOUNCES)
    assert decided["failure_bounds"] == {
        "temperature": best.temperature,
        "by_debounce": {str(d): pytest.approx(p) for d, p in bounds.items()},
    }


def test_early_stopping_best_model_and_save_interval(dataset, tmp_path):
    # a learning rate of 0: the validation loss never improves after the first validation
    cfg = config(
        tmp_path,
        "actor.optim.lr=0.0",
        "runner.early_stop.patience=2",
        "runner.max_epochs=50",
        "runner.save_interval=2",
    )
    result = train(cfg, dataset, log=lambda m: None)
    assert result["state"]["step"] == 9  # validations at 3, 6, 9: two without improvement
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert saved == ["step_000002", "step_000004", "step_000006", "step_000008"]
    # best_model by a named metric: the step of the best val/accuracy in the history
    cfg = config(tmp_path / "b", "runner.best_metric=val/accuracy", "runner.max_steps=9")
    result = train(cfg, dataset, log=lambda m: None)
    hist = result["history"]
    best_step = max(hist, key=lambda h: (h["val/accuracy"], -h["step"]))["step"]
    assert load_checkpoint(tmp_path / "b" / "run" / "best_model").training["step"] == best_step


def test_resume_continues_from_last_and_runs_are_deterministic(dataset, tmp_path):
    a = train(config(tmp_path / "a", "runner.max_steps=6"), dataset, log=lambda m: None)
    b = train(config(tmp_path / "b", "runner.max_steps=6"), dataset, log=lambda m: None)
    wa = load_checkpoint(tmp_path / "a" / "run" / "last").model.state_dict()
    wb = load_checkpoint(tmp_path / "b" / "run" / "last").model.state_dict()
    assert all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa)  # same seed, same weights
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    last = tmp_path / "a" / "run" / "last"
    resumed = train(
        config(tmp_path / "c", f"runner.resume={last}", "runner.max_steps=9"), dataset, log=lambda m: None
    )
    assert resumed["state"]["step"] == 9 and [h["step"] for h in resumed["history"]] == [9]
    with pytest.raises(TrainError, match=r"training_state\.json"):
        train(config(tmp_path / "d", f"runner.resume={tmp_path / 'a' / 'run' / 'best_model'}"), dataset)


def test_overrides_and_configuration_errors(dataset, tmp_path):
    with pytest.raises(OverrideError, match=r"did you mean runner\.max_epochs"):
        config(tmp_path, "runner.max_epoch=3")
    with pytest.raises(OverrideError, match=r"runner\.max_epochs=many"):
        config(tmp_path, "runner.max_epochs=many")
    with pytest.raises(TrainError, match=r"multiple of actor\.micro_batch_size"):
        train(config(tmp_path, "actor.global_batch_size=40"), dataset)
    with pytest.raises(TrainError, match=r"runner\.best_metric"):
        train(config(tmp_path, "runner.best_metric=val/nonsense"), dataset)
    with pytest.raises(TrainError, match=r"actor\.optim\.lr_schedule='step': choose cosine or constant"):
        train(config(tmp_path, "actor.optim.lr_schedule=step"), dataset)
    with pytest.raises(TrainError, match=r"data\.hflip=1\.5 is a probability"):
        train(config(tmp_path, "data.hflip=1.5"), dataset)
    with pytest.raises(
        TrainError, match=r"runner\.threshold_rule='median': choose one of balanced, half_floor, half"
    ):
        train(config(tmp_path, "runner.threshold_rule=median"), dataset)
    # the shipped YAML has exactly the trainer's keys and defaults
    assert apply_overrides(
        TrainConfig(), [], [share_dir() / "config" / "train_reward.yaml"]
    ) == apply_overrides(TrainConfig())


def test_cosine_learning_rate_schedule():
    optim = Optim(lr=1e-3, lr_schedule="cosine")
    lrs = [scheduled_lr(optim, step, 10) for step in range(10)]
    assert (
        lrs[0] == 1e-3 and lrs[5] == pytest.approx(5e-4) and lrs[-1] == pytest.approx(1e-3 * 0.0245, rel=0.01)
    )
    assert all(b < a for a, b in itertools.pairwise(lrs))
    assert scheduled_lr(Optim(lr=1e-3, lr_schedule="constant"), 9, 10) == 1e-3


def test_the_fused_adamw_train_builds_makes_the_same_updates_as_torchs_default():
    import torch

    torch.manual_seed(0)
    params = [torch.randn(64, 32, requires_grad=True), torch.randn(32, requires_grad=True)]
    twins = [p.detach().clone().requires_grad_(True) for p in params]
    fused = adamw(params, 1e-2, 1e-4, "cpu")
    default = torch.optim.AdamW(twins, lr=1e-2, weight_decay=1e-4, foreach=True)
    assert fused.defaults["fused"] is True  # the fast path, not the per-tensor loop
    for step in range(5):
        for ps, opt in ((params, fused), (twins, default)):
            opt.zero_grad()
            ((ps[0] @ ps[1]).sin().sum() * (step + 1)).backward()
            opt.step()
    for a, b in zip(params, twins, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_horizontal_flip_mirrors_every_view_of_an_example_alike_and_off_changes_nothing():
    import torch

    from reward_model_ros.training.data import Augment

    img = torch.arange(2 * 3 * 4 * 6, dtype=torch.uint8).reshape(2, 3, 4, 6)  # two views
    always = Augment(0, 0.0, hflip=1.0)
    gen = torch.Generator().manual_seed(0)
    assert always.flips(gen)
    assert torch.equal(always(img[0], gen, True), img[0].flip(-1))
    # about half of the examples at 0.5, every one at 1, none at 0
    half = Augment(0, 0.0, hflip=0.5)
    draws = [half.flips(torch.Generator().manual_seed(i)) for i in range(400)]
    assert 150 < sum(draws) < 250
    # off: no random draw, so a seeded shift and jitter are what they were without the option
    plain = Augment(4, 0.2)
    with_off = Augment(4, 0.2, hflip=0.0)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert not with_off.flips(g2)
    assert torch.equal(plain(img[1], g1), with_off(img[1], g2))
    # a joint example's views are mirrored together: the scene is mirrored, not one camera
    from reward_model_ros.core.config import ModelConfig
    from reward_model_ros.training.data import Example, FrameDataset

    half_views = Augment(0, 0.0, hflip=0.5)
    ex = Example(
        Path("a.png"), 1, "ep", 0, "front", views=((Path("a.png"), "front"), (Path("b.png"), "side"))
    )
    ds = FrameDataset([ex] * 40, ModelConfig(), half_views, cache=False)
    ds.image = lambda i: img.numpy()
    mirrored = [torch.equal(ds[i][0], img.flip(-1)) for i in range(40)]
    assert all(m or torch.equal(ds[i][0], img) for i, m in enumerate(mirrored)) and 5 < sum(mirrored) < 35


def test_weight_averaging_follows_the_parameters_and_batchnorm_statistics():
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = averaged_model(net, 0.5)
    assert averaged_model(net, 0.0) is None
    expected_w = net[0].weight.detach().clone()  # the first update copies
    expected_mean = net[1].running_mean.clone()
    for n in range(4):
        with torch.no_grad():
            net[0].weight.add_(1.0)
        net.train()
        net(torch.randn(8, 2))  # moves the BatchNorm running statistics
        ema.update_parameters(net)
        d = ema_decay_at(0.5, n)
        if n:
            expected_w = expected_w * d + net[0].weight.detach() * (1 - d)
            expected_mean = expected_mean * d + net[1].running_mean * (1 - d)
        else:
            expected_w, expected_mean = net[0].weight.detach().clone(), net[1].running_mean.clone()
    assert torch.allclose(ema.module[0].weight, expected_w) and torch.allclose(
        ema.module[1].running_mean, expected_mean
    )
    assert not torch.allclose(ema.module[0].weight, net[0].weight)  # it lags the raw weights
    # the warm-up: the first updates weigh the new weights more than the decay would
    assert ema_decay_at(0.99, 0) == pytest.approx(0.1) and ema_decay_at(0.99, 10_000) == 0.99


def test_weight_averaging_is_what_validation_scores_best_model_holds_and_resume_continues(dataset, tmp_path):
    cfg = config(tmp_path / "a", "runner.max_steps=6", "runner.ema_decay=0.8")
    result = train(cfg, dataset, log=lambda m: None)
    last = tmp_path / "a" / "run" / "last"
    from safetensors.torch import load_file

    raw = load_file(str(last / RAW_WEIGHTS))
    averaged = load_checkpoint(last).model.state_dict()
    assert set(raw) == set(averaged)
    assert any(not np.allclose(raw[k].float().numpy(), averaged[k].float().numpy()) for k in raw)
    # the validation in the history scored the averaged weights that last/ holds
    trainer = Trainer(cfg, dataset, log=lambda m: None)
    _, val_ds = trainer._datasets()
    logged = result["history"][-1]["val/loss"]
    model = load_checkpoint(last).model
    assert trainer.validate(model, val_ds)["loss"] == pytest.approx(logged, rel=1e-3)
    model.load_state_dict(raw)
    assert trainer.validate(model, val_ds)["loss"] != pytest.approx(logged, rel=1e-2)
    best = load_checkpoint(tmp_path / "a" / "run" / "best_model")
    assert best.training["step"] == result["state"]["best_step"]
    resumed = train(
        config(tmp_path / "b", f"runner.resume={last}", "runner.max_steps=9", "runner.ema_decay=0.8"),
        dataset,
        log=lambda m: None,
    )
    assert resumed["state"]["step"] == 9
    with pytest.raises(
        TrainError, match=r"trained with weight averaging; resume it with the same runner\.ema_decay"
    ):
        train(config(tmp_path / "c", f"runner.resume={last}", "runner.max_steps=9"), dataset)
    plain = train(config(tmp_path / "d", "runner.max_steps=3"), dataset, log=lambda m: None)
    assert not (Path(plain["best_model"]).parent / "last" / RAW_WEIGHTS).exists()
    with pytest.raises(TrainError, match=r"trained without weight averaging"):
        train(
            config(
                tmp_path / "e", f"runner.resume={tmp_path / 'd' / 'run' / 'last'}", "runner.ema_decay=0.9"
            ),
            dataset,
        )
    with pytest.raises(TrainError, match=r"runner\.ema_decay=1\.0 must be in \[0, 1\)"):
        train(config(tmp_path / "f", "runner.ema_decay=1.0"), dataset)


def test_failure_run_bounds_say_where_a_failure_episode_is_judged_successful():
    from reward_model_ros.training.evaluate import DEBOUNCES

    episodes = {
        "f": (0, np.zeros(5), np.array([0.1, 0.9, 0.95, 0.2, 0.8])),
        "short": (0, np.zeros(2), np.array([0.3, 0.3])),
        "s": (1, np.ones(5), np.ones(5)),  # successes do not count
    }
    bounds = M.failure_run_bounds(episodes, DEBOUNCES)
    assert bounds[1] == 0.95 and bounds[2] == 0.9 and bounds[3] == 0.2 and bounds[6] == 0.0
    for d in DEBOUNCES:  # the bound is exactly where the debounced decision flips
        for t, fooled in ((bounds[d], True), (bounds[d] + 1e-6, False)):
            if t <= 0.0:
                continue
            outcomes = M.episode_outcomes(episodes, t, d)
            assert any(o.label == 0 and o.judged_success for o in outcomes) == fooled, (d, t)


def test_metrics_on_hand_made_probabilities():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert M.auroc(y, p) == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ordered
    m = M.binary_metrics(y, p, 0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 0, 2, 1)
    assert m["precision"] == 1.0 and m["recall"] == 0.5 and m["false_positive_rate"] == 0.0
    cal = M.calibration(np.array([0, 1, 1, 1]), np.array([0.05, 0.95, 0.95, 0.95]), bins=10)
    assert cal["ece"] == pytest.approx(0.05)
    episodes = {
        "s": (1, np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.7, 0.9, 0.9])),
        "f": (0, np.array([0, 0, 0, 0, 0]), np.array([0.1, 0.6, 0.65, 0.2, 0.1])),
    }
    out = {o.episode: o for o in M.episode_outcomes(episodes, 0.55, debounce=2)}
    assert out["f"].judged_success and out["s"].first_detected == 3 and out["s"].delay_frames == 1
    out = {o.episode: o for o in M.episode_outcomes(episodes, 0.55, debounce=3)}
    assert not out["f"].judged_success and out["s"].delay_frames == 2
    rows, best = M.threshold_sweep(
        np.concatenate([episodes["s"][1], episodes["f"][1]]),
        np.concatenate([episodes["s"][2], episodes["f"][2]]),
        episodes,
        debounce=2,
    )
    # 0.6 judges "f" successful (0.6, 0.65 in a row); 0.65 up to 0.9 do not and still detect
    # "s" (0.9, 0.9 in a row): the middle of that safe range is recommended
    assert best == (pytest.approx(0.75), 2)
    assert next(r for r in rows if r["threshold"] == best[0])["false_positive_episodes"] == 0
    # with the debounce swept too, a longer debounce lets a lower threshold through safely
    rows, best = M.threshold_sweep(
        np.concatenate([episodes["s"][1], episodes["f"][1]]),
        np.concatenate([episodes["s"][2], episodes["f"][2]]),
        episodes,
        debounce=[2, 3],
    )
    assert best == (pytest.approx(0.75), 2)  # both debounces detect "s": the shorter one wins
    assert {r["debounce"] for r in rows} == {2, 3}
    # the balanced rule: the best balanced-accuracy threshold, then the shortest safe debounce there
    episodes = {
        "s": (1, np.array([0, 0, 1, 1, 1, 1, 1]), np.array([0.1, 0.1, 0.7, 0.7, 0.7, 0.7, 0.95])),
        "f": (0, np.zeros(10, int), np.array([0.1] * 9 + [0.8])),  # one frame looks like success
    }
    labels = np.concatenate([episodes["s"][1], episodes["f"][1]])
    probs = np.concatenate([episodes["s"][2], episodes["f"][2]])
    # 0.11-0.70 keep every success frame and lose the one failure frame: closest to 0.5 wins
    assert M.best_accuracy_threshold(labels, probs) == 0.5
    assert M.shortest_safe_debounce(episodes, 0.5, [1, 2, 3]) == 2
    assert M.shortest_safe_debounce(episodes, 0.5, [1]) is None
    assert M.validation_decision(labels, probs, episodes, [1, 2, 3], "balanced")[:2] == (0.5, 2)
    # no safe debounce at that threshold: the sweep's pair, which moves the threshold instead
    # (above the failure frame's 0.8, at most the success frames' 0.95: the middle of 0.85-0.95)
    threshold, debounce, why = M.validation_decision(labels, probs, episodes, [1], "balanced")
    assert (threshold, debounce) == (pytest.approx(0.9), 1) and "sweep" in why
    # half_floor: the balanced-accuracy threshold, but never below 0.5. Success frames at 0.3 put
    # the best balanced accuracy at 0.30 (closest to 0.5 of 0.06-0.30); an unseen failure that
    # holds 0.3-0.5 would pass there, so the floor moves the threshold to 0.5, at the cost of
    # those frames
    episodes = {
        "s": (1, np.array([0, 0, 1, 1, 1, 1]), np.array([0.05, 0.05, 0.3, 0.3, 0.9, 0.9])),
        "f": (0, np.zeros(6, int), np.full(6, 0.05)),
    }
    labels = np.concatenate([episodes["s"][1], episodes["f"][1]])
    probs = np.concatenate([episodes["s"][2], episodes["f"][2]])
    assert M.validation_decision(labels, probs, episodes, [2, 3], "balanced")[:2] == (0.3, 2)
    threshold, debounce, why = M.validation_decision(labels, probs, episodes, [2, 3], "half_floor")
    assert (threshold, debounce) == (0.5, 2) and "at least 0.5" in why
    with pytest.raises(ValueError, match="threshold rule 'median'"):
        M.validation_decision(labels, probs, episodes, [2, 3], "median")
    # half: 0.5 whatever validation's frames say. The last frame before the success (labelled a
    # failure, scored 0.8) pushes the best balanced accuracy up to 0.81, which a held-out success
    # plateau at 0.6-0.8 would never reach
    episodes = {
        "s": (1, np.array([0, 0, 0, 1, 1, 1]), np.array([0.1, 0.1, 0.8, 0.95, 0.95, 0.95])),
        "f": (0, np.zeros(6, int), np.full(6, 0.05)),
    }
    labels = np.concatenate([episodes["s"][1], episodes["f"][1]])
    probs = np.concatenate([episodes["s"][2], episodes["f"][2]])
    assert M.validation_decision(labels, probs, episodes, [2, 3], "balanced")[:2] == (0.81, 2)
    threshold, debounce, why = M.validation_decision(labels, probs, episodes, [2, 3], "half")
    assert (threshold, debounce) == (0.5, 2) and why.startswith("0.5, the calibrated")
    assert M.validation_decision(labels, probs, episodes, [2, 3]) == (threshold, debounce, why)  # default
    # where the errors lie: at the success boundary, or away from it
    rows = [{"episode": "a"}] * 6 + [{"episode": "b"}] * 3
    labels = np.array([0, 0, 0, 1, 1, 0, 0, 0, 0])
    assert M.frames_from_label_change(rows, labels)[:6].tolist() == [2, 1, 0, 0, 0, 0]
    assert (M.frames_from_label_change(rows, labels)[6:] > 100).all()  # "b" never changes
    probs = np.array([0.1, 0.1, 0.9, 0.2, 0.9, 0.1, 0.9, 0.1, 0.1])  # frames 2, 3 and 6 wrong
    errors = M.near_change_errors(rows, labels, probs, 0.5)
    assert (errors["errors"], errors["at_a_label_change"], errors["within_2_frames_of_one"]) == (3, 2, 2)
    assert errors["frames_away_from_changes"] == 3
    assert errors["accuracy_away_from_changes"] == pytest.approx(2 / 3)


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_and_predict_commands(dataset, tmp_path):
    train(config(tmp_path, "runner.max_epochs=4"), dataset, log=lambda m: None)
    ckpt = tmp_path / "run" / "best_model"
    out = subprocess.run(
        [
            str(EXE),
            "evaluate",
            "--checkpoint",
            str(ckpt),
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "ev"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert report["frames"]["accuracy"] >= 0.95 and report["episodes"]["false_positive_episodes"] == 0
    # the held-out episode figures are at the settings the checkpoint came with (train's, chosen on
    # validation), not at the pair the sweep chose on these frames (reported beside them)
    import shutil

    from reward_model_ros.core.checkpoint import store_validation_decision

    came_with = load_checkpoint(ckpt)  # evaluate stored its recommendation since
    other = shutil.copytree(ckpt, tmp_path / "other", ignore=lambda d, names: ["eval"])
    cfg_json = json.loads((other / "config.json").read_text())
    del cfg_json["recommended"]
    (other / "config.json").write_text(json.dumps(cfg_json))
    store_validation_decision(other, 0.23, 2, {"reason": "off the sweep's 0.05 grid"})
    served = evaluate(other, dataset, out=tmp_path / "ev_other", store=False)
    assert (served["episodes"]["threshold"], served["episodes"]["debounce_frames"]) == (0.23, 2)
    assert served["threshold"] == 0.23 and not served["decision"]["chosen_on_these_frames"]
    assert served["frames"] == M.binary_metrics(
        np.array([r["label"] for r in json_lines(tmp_path / "ev_other" / "predictions.jsonl")]),
        np.array([r["probability"] for r in json_lines(tmp_path / "ev_other" / "predictions.jsonl")]),
        0.23,
    )
    assert served["episodes_at_recommended"]["threshold"] == served["recommended_threshold"] != 0.23
    assert served["recommendation_also_safe_on"].startswith("nothing else")  # no bounds stored there
    # validation failure episodes the evaluated set lacks (a cube that slid through the goal): the
    # recommendation must not be fooled by them either. Here they fool debounces 1 and 2 at any
    # threshold, while this separable set alone would recommend the floor, debounce 2
    assert (
        report["debounce"] == 2 and report["recommendation_also_safe_on"] == "train's 4 validation episodes"
    )
    fooled = shutil.copytree(other, tmp_path / "fooled")
    by_debounce = {"1": 0.999, "2": 0.999, **{str(d): 0.0 for d in range(3, 9)}}
    store_validation_decision(
        fooled,
        0.23,
        2,
        {"failure_bounds": {"temperature": came_with.temperature, "by_debounce": by_debounce}},
    )
    safe = evaluate(fooled, dataset, out=tmp_path / "ev_fooled", store=False)
    assert safe["debounce"] == 3 and safe["episodes_at_recommended"]["detected_success_episodes"] > 0
    assert all(r["safe_on_other_failures"] == (r["debounce"] >= 3) for r in safe["sweep"])
    rec = report["episodes_at_recommended"]
    assert (rec["threshold"], rec["debounce_frames"]) == (report["recommended_threshold"], report["debounce"])
    assert came_with.recommended["chosen_on"]["split"] == "val"
    again = evaluate(ckpt, dataset, out=tmp_path / "ev2", store=False)  # now served: the recommendation
    assert again["decision"]["chosen_on_these_frames"] and "(recommended)" in again["decision"]["source"]
    assert again["episodes"]["threshold"] == came_with.recommended["reward_threshold"]
    for png in ("loss_curves", "roc_pr", "reliability", "confusion_matrix", "worst_errors"):
        assert (tmp_path / "ev" / f"{png}.png").stat().st_size > 1000
    pos = dataset / "images" / "ep000" / "000015_camera.png"
    neg = dataset / "images" / "ep000" / "000000_camera.png"
    (tmp_path / "notes.png").write_text("not an image")
    out = subprocess.run(
        [
            str(EXE),
            "predict",
            "--checkpoint",
            str(ckpt),
            str(pos),
            str(neg),
            str(tmp_path / "notes.png"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows[0]["success"] and not rows[1]["success"] and rows[0]["probability"] > rows[1]["probability"]
    assert "cannot read image" in rows[2]["error"] and out.returncode == 1


def test_two_process_ddp_with_gloo(dataset, tmp_path):
    import socket

    with socket.socket() as sock:  # a free port on the loopback interface
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
            str(EXE),
            "train",
            "--data",
            str(dataset),
            "model.arch=resnet10",
            "model.image_size=[3,48,48]",
            "actor.global_batch_size=32",
            "actor.micro_batch_size=8",
            "runner.max_steps=4",
            "runner.val_check_interval=2",
            "runner.progress=false",
            "device=cpu",
            f"runner.output_dir={tmp_path / 'run'}",
            f"runner.logger.log_path={tmp_path / 'logs'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "8 x 2 x 2 process(es)" in out.stdout  # micro 8 x accumulation 2 x 2 processes = 32
    assert out.stdout.count("done: 4 steps") == 1  # rank 0 reports
    assert load_checkpoint(tmp_path / "run" / "last").training["step"] == 4


def test_a_dataset_smaller_than_one_global_batch_still_trains(dataset, tmp_path):
    # 192 training images, global batch 512: one optimizer step per epoch, with replacement
    for balance in ("true", "false"):
        cfg = config(
            tmp_path / balance,
            "actor.global_batch_size=512",
            "runner.max_epochs=2",
            f"data.balance={balance}",
        )
        result = train(cfg, dataset, log=lambda m: None)
        assert result["state"]["step"] == 2 and len(result["history"]) == 2
        assert (tmp_path / balance / "run" / "best_model" / "model.safetensors").is_file()


def test_training_on_several_datasets_adds_the_second_ones_frames(tmp_path):
    """`train --data A --data B`: e.g. the recorded dataset plus an RL run's disagreements."""
    a = make_dataset(tmp_path / "a", episodes=8, frames=6, size=32)
    b = make_dataset(tmp_path / "b", episodes=4, frames=6, size=32, seed=3)
    cfg = apply_overrides(
        TrainConfig(),
        [
            "model.arch=resnet10",
            "model.image_size=[3,32,32]",
            "actor.global_batch_size=16",
            "actor.micro_batch_size=16",
            "runner.max_steps=1",
            "runner.progress=false",
            f"runner.output_dir={tmp_path / 'out'}",
            f"runner.logger.log_path={tmp_path / 'logs'}",
        ],
    )
    trainer = Trainer(cfg, [a, b], log=lambda m: None)
    tr, _va = trainer._datasets()
    sources = {Path(e.path).parents[2].name for e in tr.examples}
    assert sources == {"a", "b"}  # frames of both datasets, paths resolved against each
    assert any(e.episode.startswith("b:") for e in tr.examples)  # episode keys stay unique
    trainer.fit()
    meta = json.loads((tmp_path / "out" / "best_model" / "config.json").read_text())
    assert meta["training"]["data"] == [str(a.resolve()), str(b.resolve())]


def test_episode_report_names_the_modes_and_passes_judged_successful():
    from reward_model_ros.training.evaluate import episode_report

    low, burst = np.full(10, 0.1), np.r_[np.full(4, 0.1), np.full(3, 0.9), np.full(3, 0.1)]
    episodes = {
        "pass": (0, np.zeros(10, int), burst),  # success seen for 3 frames, then lost
        "short": (0, np.zeros(10, int), low),
        "ok": (1, np.r_[np.zeros(5, int), np.ones(5, int)], np.r_[np.full(5, 0.1), np.full(5, 0.9)]),
    }
    kinds = {"pass": ("push_past", True), "short": ("push_short", False), "ok": ("success", False)}
    fooled = episode_report(episodes, 0.5, 1, True, kinds)
    assert fooled["failure_modes"] == {
        "push_past": {"episodes": 1, "judged_successful": 1},
        "push_short": {"episodes": 1, "judged_successful": 0},
    }
    assert (fooled["transient_failure_episodes"], fooled["transient_judged_successful"]) == (1, 1)
    assert fooled["per_episode"][0]["transient"] is True
    safe = episode_report(episodes, 0.5, 4, kinds=kinds)
    assert safe["transient_judged_successful"] == 0 and safe["detected_success_episodes"] == 1
