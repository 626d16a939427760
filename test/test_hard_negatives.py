"""Hard negatives (`reward-model hard-negatives`, `train --hard-negatives`): an evaluation's
disagreeing frames as a dataset, trained on again, and never reported as held-out figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic import TINY_TRAIN, make_dataset
from synthetic import tiny_train_config as config

from reward_model_ros.core.checkpoint import load_checkpoint
from reward_model_ros.data.dataset import read_manifest
from reward_model_ros.training.data import examples_from
from reward_model_ros.training.evaluate import evaluate
from reward_model_ros.training.hard_negatives import (
    MINED_KEY,
    HardNegativeError,
    export_hard_negatives,
)
from reward_model_ros.training.train import Trainer, train

EXE = Path(sys.executable).parent / "reward-model"


def fake_evaluation(ds: Path, out: Path, seed: int = 0) -> dict[tuple[str, int], dict]:
    """metrics.json + predictions.jsonl as `evaluate` writes them, with random probabilities
    and one invalid frame; returns the predictions by (episode, frame)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    preds = {}
    for k, r in enumerate(read_manifest(ds)):
        keys = ("episode", "frame", "stamp_ns", "label", "episode_label", "images")
        p = {**{key: r[key] for key in keys}, "probability": float(rng.random()), "valid": k != 3}
        if k == 3:
            p.update(probability=0.0, label=1, invalid_reason="blank frame")  # not the model's mistake
        preds[(r["episode"], r["frame"])] = p
    (out / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds.values()))
    metrics = {
        "data": str(ds),
        "split": "all",
        "threshold": 0.5,
        "recommended_threshold": 0.6,
        "checkpoint": "c",
    }
    (out / "metrics.json").write_text(json.dumps(metrics))
    return preds


def test_the_export_is_exactly_the_disagreeing_frames_labelled_with_ground_truth(tmp_path):
    ds = make_dataset(tmp_path / "ds", episodes=4, frames=6, size=32)
    preds = fake_evaluation(ds, tmp_path / "eval")
    truth = {(r["episode"], r["frame"]): r["label"] for r in read_manifest(ds)}
    summary = export_hard_negatives(tmp_path / "eval", tmp_path / "hn")
    wrong = {k for k, p in preds.items() if p["valid"] and (p["probability"] >= 0.6) != p["label"]}
    rows = read_manifest(tmp_path / "hn")  # training's dataset reader takes it
    assert wrong and {(r["episode"], r["frame"]) for r in rows} == wrong
    for r in rows:
        key = (r["episode"], r["frame"])
        assert r["label"] == truth[key] and r["split"] == "train"
        assert r[MINED_KEY] == preds[key]["probability"]
        assert r["disagreement"] == ("false_negative" if r["label"] else "false_positive")
        assert os.path.samefile(tmp_path / "hn" / r["images"]["camera"], ds / preds[key]["images"]["camera"])
    assert summary["threshold"] == 0.6 and summary["invalid_frames_passed_over"] == 1
    (src,) = json.loads((tmp_path / "hn" / "summary.json").read_text())["mined_from"]
    assert src["data"] == str(ds.resolve()) and src["episodes"] == sorted({e for e, _ in wrong})
    examples = examples_from(rows, tmp_path / "hn")
    assert len(examples) == len(wrong) and all(e.path.is_file() for e in examples)
    # another threshold, another set; an existing dataset is never overwritten
    again = export_hard_negatives(tmp_path / "eval", tmp_path / "hn2", threshold=0.3, link=False)
    assert again["samples"] == sum(
        p["valid"] and (p["probability"] >= 0.3) != p["label"] for p in preds.values()
    )
    with pytest.raises(HardNegativeError, match="already holds a dataset"):
        export_hard_negatives(tmp_path / "eval", ds)
    with pytest.raises(HardNegativeError, match="run `reward-model evaluate"):
        export_hard_negatives(tmp_path / "nothing", tmp_path / "hn3")


def test_training_includes_the_mined_frames_weighted_and_evaluate_refuses_their_episodes(tmp_path):
    ds = make_dataset(tmp_path / "ds", episodes=8, frames=6, size=32)
    mining = make_dataset(tmp_path / "mining", episodes=4, frames=6, size=32, seed=5)
    heldout = make_dataset(tmp_path / "heldout", episodes=4, frames=6, size=32, seed=9)
    train(config(tmp_path / "first"), ds, log=lambda m: None)
    evaluate(tmp_path / "first" / "best_model", mining, split="all", out=tmp_path / "eval", store=False)
    summary = export_hard_negatives(tmp_path / "eval", tmp_path / "hn")
    mined = {(r["episode"], r["frame"]) for r in read_manifest(tmp_path / "hn")}
    assert mined, "a one-step model gets some frames wrong"

    cfg = config(
        tmp_path / "second",
        "data.hard_negative_weight=4",
        "data.num_samples_per_episode=1",
        "data.mined_frames=all",  # the missed successes too (the default trains the failures only)
    )
    trainer = Trainer(cfg, [ds, tmp_path / "hn"], log=lambda m: None)
    tr, _ = trainer._datasets()
    from_hn = [
        i for i, e in enumerate(tr.examples) if Path(e.path).is_relative_to((tmp_path / "hn").resolve())
    ]
    assert {(e.episode.split(":", 1)[1], e.frame) for e in (tr.examples[i] for i in from_hn)} == mined
    assert all(trainer.train_weights[i] == 4.0 for i in from_hn)  # every one, though 1 per episode is sampled
    sampler = trainer._loader(tr, 0, 64, trainer.train_weights).sampler
    w, labels = np.asarray(sampler.weights), tr.labels()
    for i in from_hn:  # within its class, a mined frame is drawn 4 times as often
        others = [j for j in range(len(tr)) if labels[j] == labels[i] and trainer.train_weights[j] == 1.0]
        assert w[i] == pytest.approx(4 * w[others[0]])
    trainer.fit()
    meta = load_checkpoint(tmp_path / "second" / "best_model").training
    assert meta["data"][-1] == str((tmp_path / "hn").resolve())
    assert [{k: v for k, v in s.items() if k != "via"} for s in meta["mined_from"]] == summary["mined_from"]

    ckpt = tmp_path / "second" / "best_model"
    with pytest.raises(ValueError, match=r"trained on frames mined from \d+ episode\(s\) of .*mining"):
        evaluate(ckpt, mining, split="all", out=tmp_path / "e1")
    report = evaluate(ckpt, mining, split="all", out=tmp_path / "e2", allow_trained_episodes=True)
    assert report["trained_episodes"] == summary["mined_from"][0]["episodes"]
    assert report["stored"].startswith("not stored") and "recommended" not in _config(ckpt)
    report = evaluate(ckpt, heldout, split="all", out=tmp_path / "e3")  # nothing mined there
    assert report["trained_episodes"] == [] and "recommended" in _config(ckpt)


def test_mined_frames_false_positives_trains_on_the_mined_failures_only(tmp_path):
    """data.mined_frames=false_positives (the default): of the mined frames, only those ground
    truth calls failures are trained on (an RL policy's missed successes were mostly an arm hiding
    the cube: trained as successes they taught the reward that a hidden cube is a success)."""
    from reward_model_ros.training.train import TrainError

    ds = make_dataset(tmp_path / "ds", episodes=8, frames=6, size=32)
    mining = make_dataset(tmp_path / "mining", episodes=4, frames=6, size=32, seed=5)
    fake_evaluation(mining, tmp_path / "eval")
    export_hard_negatives(tmp_path / "eval", tmp_path / "hn")
    rows = read_manifest(tmp_path / "hn")
    failures = {(r["episode"], r["frame"]) for r in rows if r["label"] == 0}
    assert failures and len(failures) < len(rows), "the random evaluation gets both kinds wrong"

    def mined(*overrides):
        trainer = Trainer(config(tmp_path / "run", *overrides), [ds, tmp_path / "hn"], log=lambda m: None)
        tr, _ = trainer._datasets()
        root = (tmp_path / "hn").resolve()
        return {
            (e.episode.split(":", 1)[1], e.frame) for e in tr.examples if Path(e.path).is_relative_to(root)
        }

    assert mined() == failures  # the default
    assert mined("data.mined_frames=false_positives") == failures
    assert mined("data.mined_frames=all") == {(r["episode"], r["frame"]) for r in rows}
    with pytest.raises(
        TrainError, match=r"data\.mined_frames='negatives': choose one of false_positives, all"
    ):
        Trainer(config(tmp_path / "bad", "data.mined_frames=negatives"), [ds, tmp_path / "hn"], log=print)


def _config(ckpt: Path) -> dict:
    return json.loads((ckpt / "config.json").read_text())


def test_train_hard_negatives_in_one_command_and_evaluate_refuses_on_the_command_line(tmp_path):
    ds = make_dataset(tmp_path / "ds", episodes=8, frames=6, size=32)
    mining = make_dataset(tmp_path / "mining", episodes=4, frames=6, size=32, seed=5)
    fake_evaluation(mining, tmp_path / "eval")
    out = subprocess.run(
        [str(EXE), "hard-negatives", str(tmp_path / "eval"), "--out", str(tmp_path / "hn")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "disagreeing frame(s)" in out.stdout, out.stderr
    run = tmp_path / "run"
    where = [f"runner.output_dir={run}", f"runner.logger.log_path={run / 'logs'}"]
    cmd = [str(EXE), "train", "--data", str(ds), "--hard-negatives", str(tmp_path / "eval")]
    out = subprocess.run(
        [*cmd, *TINY_TRAIN, *where],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "exported to" in out.stdout
    exported = read_manifest(run / "hard_negatives")
    assert len(exported) == len(read_manifest(tmp_path / "hn"))  # the same frames as the command's
    meta = load_checkpoint(run / "best_model").training
    assert meta["data"] == [str(ds.resolve()), str((run / "hard_negatives").resolve())]
    out = subprocess.run(
        [
            str(EXE),
            "evaluate",
            "--checkpoint",
            str(run / "best_model"),
            "--data",
            str(mining),
            "--split",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--allow-trained-episodes" in out.stderr, out.stderr
