"""`reward-model rl train` and `rl evaluate` on PushCube-v1 in ManiSkill (CPU), a few hundred
steps: the whole path runs (the task, the learned reward, scripted demonstrations, SAC,
ground-truth evaluation, the monitor, checkpoints, the episode picture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mani_skill")

from reward_model_ros.core.checkpoint import save_checkpoint, untrained
from reward_model_ros.core.config import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
EXE = os.path.join(os.path.dirname(sys.executable), "reward-model")


def test_rl_train_and_evaluate_smoke_on_pushcube(tmp_path):
    ckpt = save_checkpoint(
        tmp_path / "clf", untrained(ModelConfig(arch="resnet10", image_size=[3, 64, 64]), 0.5).model, 0.5
    )
    out = tmp_path / "run"
    cmd = [
        EXE, "rl", "train", "--config", str(ROOT / "config" / "rl_pushcube.yaml"),
        f"reward.checkpoint_path={ckpt}", "reward.precision=fp32", "env.camera_size=64",
        "sac.total_steps=150", "sac.learning_starts=50", "sac.batch_size=64", "sac.time_budget_s=0",
        "sac.progress=false", "sac.hidden=[64,64]", "sac.bc_pretrain_steps=50", "demos.episodes=1",
        "eval.episodes=2",
        "eval.interval=150", f"output_dir={out}",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "done: 150 env steps" in run.stdout
    assert "reward: threshold 0.5" in run.stderr + run.stdout  # where the decision settings came from
    assert "inference fp32 (none) on cpu" in run.stderr + run.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 150 and result["final_eval"]["episodes"] == 2
    assert 0.0 <= result["final_eval"]["gt_success"] <= 1.0 and result["reward_scoring_s"] > 0
    assert (out / "policy" / "policy.safetensors").is_file() and (out / "policy" / "policy.json").is_file()
    assert list((out / "logs").glob("events.out.tfevents.*"))
    ev = subprocess.run(
        [EXE, "rl", "evaluate", "--checkpoint", str(out / "policy"), "--episodes", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ev.returncode == 0, ev.stdout[-3000:] + ev.stderr[-3000:]
    assert "PushCube-v1: ground-truth success" in ev.stdout and (out / "episodes.png").is_file()
    assert json.loads((out / "evaluation.json").read_text())["episodes"] == 2


def test_rl_train_refuses_a_missing_classifier_with_one_line(tmp_path):
    run = subprocess.run(
        [EXE, "rl", "train", "--config", str(ROOT / "config" / "rl_pushcube.yaml"),
         f"reward.checkpoint_path={tmp_path / 'none'}", f"output_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "checkpoint directory" in run.stderr and "does not exist" in run.stderr


def test_ppo_over_several_sub_envs_runs_on_the_cpu(tmp_path):
    """The vectorised (GPU) path's logic on the CPU: PPO over two ManiSkill envs scored in one
    batch, partial resets by index, ground-truth evaluation."""
    ckpt = save_checkpoint(
        tmp_path / "clf", untrained(ModelConfig(arch="resnet10", image_size=[3, 64, 64]), 0.5).model, 0.5
    )
    out = tmp_path / "run"
    cmd = [
        EXE, "rl", "train", "--config", str(ROOT / "config" / "rl_pushcube.yaml"), "algo=ppo",
        f"reward.checkpoint_path={ckpt}", "reward.precision=fp32", "env.camera_size=64", "env.num_envs=2",
        "env.max_episode_steps=10", "ppo.num_steps=10", "ppo.total_steps=40", "ppo.num_minibatches=2",
        "ppo.hidden=[32,32]", "eval.episodes=2", "eval.interval=40", f"output_dir={out}",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["algo"] == "ppo" and result["steps"] == 40 and result["final_eval"]["episodes"] == 2
    assert (out / "policy" / "policy.json").is_file()


def test_the_gpu_pickcube_config_runs_on_the_cpu_with_two_envs(tmp_path):
    """config/rl_pickcube_gpu.yaml (PickCube, goal shown, pd_ee_delta_pose, PPO) with only the
    device keys and sizes overridden: the GPU task's code path, short of CUDA itself."""
    ckpt = save_checkpoint(
        tmp_path / "clf", untrained(ModelConfig(arch="resnet10", image_size=[3, 64, 64]), 0.5).model, 0.5
    )
    out = tmp_path / "run"
    cmd = [
        EXE, "rl", "train", "--config", str(ROOT / "config" / "rl_pickcube_gpu.yaml"),
        "env.sim_backend=physx_cpu", "env.render_backend=cpu", "reward.device=cpu", "ppo.device=cpu",
        "reward.precision=fp32", f"reward.checkpoint_path={ckpt}", "env.camera_size=64", "env.num_envs=2",
        "env.max_episode_steps=10", "ppo.num_steps=10", "ppo.total_steps=40", "ppo.num_minibatches=2",
        "eval.episodes=2", "eval.interval=40", f"output_dir={out}",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["task"] == "PickCube-v1" and result["algo"] == "ppo" and result["steps"] == 40
    assert result["final_eval"]["episodes"] == 2


def test_the_oracle_baseline_trains_through_rl_train(tmp_path):
    """bench/rl_pushcube.py's baseline: `reward.oracle=true` builds a pipeline with no classifier
    (and no frame history), and its rewards are the simulator's success: never a scored frame."""
    out = tmp_path / "run"
    cmd = [
        EXE, "rl", "train", "--config", str(ROOT / "config" / "rl_pushcube.yaml"), "reward.oracle=true",
        f"reward.checkpoint_path={tmp_path / 'none'}", "env.camera_size=64", "sac.total_steps=60",
        "sac.learning_starts=30",
        "sac.batch_size=32", "sac.time_budget_s=0", "sac.progress=false", "sac.hidden=[32,32]",
        "sac.bc_pretrain_steps=10", "demos.episodes=1", "eval.episodes=1", "eval.interval=60",
        f"output_dir={out}",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["reward"].startswith("ORACLE") and result["steps"] == 60
    assert result["reward_scoring_s"] == 0.0  # no classifier ran
    assert result["final_eval"]["episodes"] == 1
