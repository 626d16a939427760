"""Leave-one-failure-mode-out (`reward-model lomo`) and the mode filter it rests on
(`data.exclude_modes`), on tiny synthetic datasets with failure modes (seconds on the CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic import TINY_TRAIN, make_mode_dataset
from synthetic import tiny_train_config as config

from reward_model_ros.core.checkpoint import load_checkpoint
from reward_model_ros.data.dataset import read_manifest
from reward_model_ros.training.protocols import (
    REFERENCE,
    ProtocolError,
    format_table,
    leave_one_mode_out,
)
from reward_model_ros.training.train import Trainer, TrainError

EXE = Path(sys.executable).parent / "reward-model"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_mode_dataset(tmp_path_factory.mktemp("modes"))


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    return make_mode_dataset(tmp_path_factory.mktemp("heldout"), per_outcome=2, seed=7)


def _modes(rows) -> dict[str, str]:
    return {r["episode"]: r["mode"] for r in rows}


def test_exclude_modes_drops_exactly_the_episodes_of_that_mode(data, tmp_path):
    manifest = read_manifest(data)
    trainer = Trainer(config(tmp_path / "run", "data.exclude_modes=[red]"), data, log=lambda m: None)
    kept = trainer._rows()
    assert {(r["episode"], r["frame"]) for r in kept} == {
        (r["episode"], r["frame"]) for r in manifest if r["mode"] != "red"
    }
    tr, va = trainer._datasets()  # neither training nor validation sees the mode
    seen = {e.episode for e in tr.examples} | {e.episode for e in va.examples}
    assert seen == {r["episode"] for r in manifest if r["mode"] != "red"}
    assert set(trainer.episodes_used["val"].values()) == {"success", "blue"}


def test_an_unknown_mode_is_an_error_that_lists_the_modes(data, tmp_path):
    trainer = Trainer(config(tmp_path / "run", "data.exclude_modes=[green]"), data, log=lambda m: None)
    with pytest.raises(TrainError, match=r"has mode 'green'; its modes are: blue, red, success"):
        trainer._datasets()


def test_lomo_trains_without_each_mode_and_scores_only_that_modes_failures(data, heldout, tmp_path):
    out = tmp_path / "lomo"
    report = leave_one_mode_out(config(out / "unused"), [data], heldout, out, log=lambda m: None)
    held = read_manifest(heldout)
    assert report["modes"] == ["blue", "red"]
    assert [(r["mode"], r["model"]) for r in report["rows"]] == [
        ("all", REFERENCE),
        ("blue", "without_blue"),
        ("blue", REFERENCE),
        ("red", "without_red"),
        ("red", REFERENCE),
    ]
    training = read_manifest(data)
    for row in report["rows"]:
        mode, model = row["mode"], row["model"]
        wanted = {r["episode"] for r in held if r["episode_label"] == 1 or mode in ("all", r["mode"])}
        assert row["failure_episodes"] == len({e for e in wanted if not e.startswith("success")})
        assert row["success_episodes"] == 2
        for key in ("frame_accuracy", "auroc", "ece", "detected_within_bar", "max_delay_frames"):
            assert key in row
        if model == REFERENCE:
            continue
        # the held-out episodes scored: that mode's failures and the successes, nothing else
        run = out / model
        scored = {json.loads(line)["episode"] for line in (run / "heldout_predictions.jsonl").open()}
        assert scored == wanted and {_modes(held)[e] for e in scored} == {"success", mode}
        # the model never trained or validated on the mode: episodes.json and the checkpoint say so
        used = json.loads((run / "episodes.json").read_text())
        trained_on = {**used["train"], **used["val"]}
        assert mode not in trained_on.values()
        assert set(trained_on) == {r["episode"] for r in training if r["mode"] != mode}
        meta = load_checkpoint(run / "best_model").training
        assert meta["exclude_modes"] == [mode] and mode not in meta["modes"]
        assert report["models"][model]["exclude_modes"] == [mode]
    assert set(load_checkpoint(out / REFERENCE / "best_model").training["modes"]) == {
        "success",
        "red",
        "blue",
    }
    assert json.loads((out / "lomo.json").read_text())["rows"] == json.loads(json.dumps(report["rows"]))
    table = format_table(report)
    assert len(table.splitlines()) == 2 + len(report["rows"]) and "without_red" in table


def test_lomo_refuses_what_would_not_measure_unseen_modes(data, tmp_path):
    cfg = config(tmp_path / "unused")
    with pytest.raises(
        ProtocolError, match=r"--modes \['green'\]: the training data's failure modes are blue, red"
    ):
        leave_one_mode_out(cfg, [data], data, tmp_path / "o", split="val", modes=["green"])
    with pytest.raises(ProtocolError, match=r"also training data and split 'all'"):
        leave_one_mode_out(cfg, [data], data, tmp_path / "o")


def test_lomo_command_line_errors_name_the_fix(data, heldout, tmp_path):
    where = ["--out", str(tmp_path / "o")]
    out = subprocess.run(
        [
            str(EXE),
            "lomo",
            "--train-data",
            str(data),
            "--data",
            str(heldout),
            *where,
            "--modes",
            "green,red",
            *TINY_TRAIN,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "--modes ['green']: the training data's failure modes are blue, red" in out.stderr
