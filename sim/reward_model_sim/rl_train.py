"""`reward-model rl train` / `rl evaluate`: a policy learns a ManiSkill task from the learned
reward, and is measured against ground truth.

The pieces (all tested on their own): the task as a `SimBatch` (rl_sim), the learned reward
(`LearnedRewardEnv` over the same `RewardPipeline` reward_node runs), demonstrations in the
policy's action space (scripted, or from recorded episode bags), SAC in RLPD form or PPO
(rl.sac, rl.ppo), the reward-hacking monitor (rl.monitor), and ground-truth evaluation on
fixed seeds with state observations (`GroundTruthEvalEnv`). Configuration: `config/rl_<task>.yaml`
plus key=value overrides (RLinf's reward keys under `reward.`).

Outputs under `output_dir`: `policy/` (safetensors + JSON; `rl evaluate --checkpoint`),
`logs/` (TensorBoard: charts/, losses/, reward/, time/, eval/), `disagreements/` (frames where
the model and ground truth disagreed, a dataset for `reward-model train`), `result.json`
(the evaluation curve: ground-truth success against env steps and training seconds),
`config.yaml`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reward_model_ros.core.overrides import to_plain
from reward_model_ros.rl.buffer import ReplayBuffer
from reward_model_ros.rl.monitor import RewardHackingMonitor
from reward_model_ros.rl.ppo import PPOConfig
from reward_model_ros.rl.reward_env import LearnedRewardEnv, RewardEnvConfig
from reward_model_ros.rl.sac import SACConfig
from reward_model_sim.rl_sim import GroundTruthEvalEnv, ManiSkillBatch, SimBatchConfig

log = logging.getLogger(__name__)


@dataclass
class EnvSection(SimBatchConfig):
    """The simulated task (SimBatchConfig's keys) and the episode length."""

    max_episode_steps: int = 50
    """episode length (the time limit; the model's success may end an episode earlier)"""


@dataclass
class RewardSection:
    """RLinf's reward-model keys: how the classifier's output becomes the reward."""

    checkpoint_path: str = ""
    """the success classifier (`reward-model train`, then `evaluate` to store its settings)"""
    reward_mode: str = "per_step"
    """per_step | terminal (the reward only at the episode's last step, from the model's decision)"""
    reward_threshold: float = -1.0
    """-1 = the checkpoint's recommended threshold"""
    debounce_frames: int = -1
    """-1 = the checkpoint's recommended debounce"""
    camera_fusion: str = ""
    """empty = the checkpoint's recommended fusion (`logit` without one)"""
    success_reward: float = 1.0
    """model reward on success"""
    fail_reward: float = 0.0
    """model reward on failure"""
    combine_mode: str = "replace"
    """replace | add | weighted (with the simulator's own reward: it includes its success term)"""
    reward_weight: float = 1.0
    """weight of the model reward in combine_mode=weighted"""
    env_reward_weight: float = 1.0
    """weight of the simulator's reward in combine_mode=weighted"""
    terminate_on_success: bool = True
    """the debounced success decision ends the episode (HIL-SERL)"""
    precision: str = ""
    """classifier inference precision (fp32 | bf16 | int8); empty = auto, as reward_node: int8 on a
    VNNI CPU for a checkpoint with int8 calibration frames, else bf16 in a frozen graph where bf16
    is native, else fp32"""
    device: str = "auto"
    """classifier device: auto | cpu | cuda"""
    camera_names: list[str] = field(default_factory=list)
    """the checkpoint camera of each simulator camera; empty = in order"""
    oracle: bool = False
    """BENCHMARK BASELINE ONLY: reward = the simulator's ground-truth success, no classifier"""


@dataclass
class DemoSection:
    episodes: int = 20
    """scripted demonstrations played through the learned reward (0 = none)"""
    bags: list[str] = field(default_factory=list)
    """episode bags (recorder) to take demonstrations from instead of scripted ones"""


@dataclass
class MonitorSection:
    save_frames: bool = True
    """keep the frames where the model and ground truth disagree (a dataset: disagreements/)"""
    max_frames: int = 2000
    """at most this many"""
    every_nth: int = 5
    """one of every n consecutive disagreeing frames"""
    window: int = 50
    """episodes the reward/ rates are computed over"""
    warn_gap: float = 0.1
    """warn when the model's success rate exceeds ground truth's by more than this"""
    warn_false_positive_rate: float = 0.1
    """warn when more than this share of the episodes the model judged successful were not"""


@dataclass
class EvalSection:
    episodes: int = 50
    """evaluation episodes on fixed seeds (ground truth, state observations)"""
    seed: int = 1_000_000
    """the first evaluation seed (training seeds start at `seed`)"""
    interval: int = 5000
    """env steps between evaluations"""


@dataclass
class RLConfig:
    algo: str = "sac"
    """sac (RLPD form, with demonstrations) | ppo (vectorised simulation)"""
    env: EnvSection = field(default_factory=EnvSection)
    reward: RewardSection = field(default_factory=RewardSection)
    demos: DemoSection = field(default_factory=DemoSection)
    monitor: MonitorSection = field(default_factory=MonitorSection)
    eval: EvalSection = field(default_factory=EvalSection)
    sac: SACConfig = field(default_factory=SACConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    output_dir: str = "runs/rl"
    """policy/, logs/, disagreements/, result.json go here"""
    seed: int = 1
    """seed of the simulator's training episodes and of the learner"""


class RLError(ValueError):
    """A configuration the RL run cannot work with; says what to change."""


def _sim_config(env: EnvSection) -> SimBatchConfig:
    return SimBatchConfig(**{f.name: getattr(env, f.name) for f in fields(SimBatchConfig)})


def load_classifier(r: RewardSection):
    """The classifier checkpoint of `reward` (checked before any simulator is built: a wrong
    path fails in a second, not after ManiSkill's start-up)."""
    from reward_model_ros.core.checkpoint import CheckpointError, load_checkpoint
    from reward_model_ros.core.config import ConfigError
    from reward_model_ros.core.inference import pick_device

    if not r.checkpoint_path:
        raise RLError("reward.checkpoint_path is empty: train a classifier for this task first (see docs)")
    try:
        overrides = {"precision": r.precision} if r.precision else {}
        return load_checkpoint(r.checkpoint_path, overrides, pick_device(r.device))
    except (CheckpointError, ConfigError, ValueError) as exc:
        raise RLError(str(exc)) from exc


def reward_pipeline(r: RewardSection, cameras: list[str], ckpt=None):
    """The RewardPipeline for the simulator's cameras, built as reward_node builds it; and where
    its decision settings came from. `ckpt`: load_classifier(r), if already loaded."""
    from reward_model_ros.core.checkpoint import CheckpointError
    from reward_model_ros.core.config import ConfigError
    from reward_model_ros.core.pipeline import REWARD_KEYS, build_pipeline

    ckpt = ckpt if ckpt is not None else load_classifier(r)
    try:
        reward = {k: getattr(r, k) for k in REWARD_KEYS}
        pipeline, settings, served = build_pipeline(
            ckpt,
            cameras,
            r.camera_names,
            reward=reward,
            threshold=r.reward_threshold,
            debounce=r.debounce_frames,
            fusion=r.camera_fusion,
        )
    except (CheckpointError, ConfigError, ValueError) as exc:
        raise RLError(str(exc)) from exc
    pipeline.scorer.warm_up()
    return pipeline, settings.source, served


def make_env(cfg: RLConfig, monitor: RewardHackingMonitor | None) -> tuple[LearnedRewardEnv, str]:
    r = cfg.reward
    ckpt = None if r.oracle else load_classifier(r)
    sim = ManiSkillBatch(_sim_config(cfg.env))
    env_cfg = RewardEnvConfig(cfg.env.max_episode_steps, r.terminate_on_success, oracle=r.oracle)
    if r.oracle:
        from reward_model_ros.core.pipeline import RewardPipeline
        from reward_model_ros.core.reward import RewardConfig

        mapping = RewardConfig(
            reward_mode=r.reward_mode,
            reward_threshold=0.5,
            success_reward=r.success_reward,
            fail_reward=r.fail_reward,
        )
        env = LearnedRewardEnv(sim, RewardPipeline(None, mapping), env_cfg, sim.cameras)
        return env, "ORACLE: the simulator's ground-truth success is the reward (benchmark baseline only)"
    # cameras: the checkpoint camera of each sim camera
    pipeline, source, cameras = reward_pipeline(r, sim.cameras, ckpt)
    source += f"; inference {ckpt.config.precision} ({ckpt.config.optimize}) on {ckpt.model.device}"
    if monitor is not None:
        monitor.cameras = cameras  # the disagreements dataset names them like the training data
    return LearnedRewardEnv(sim, pipeline, env_cfg, cameras, monitor), source


def scripted_demos(env: LearnedRewardEnv, episodes: int, seed: int) -> ReplayBuffer:
    """`episodes` scripted PushCube demonstrations (the push controller, in the policy's action
    space) played through `env`: their rewards come from the classifier, like the policy's."""
    from reward_model_sim.push import PushController

    if env.sim.cfg.task != "PushCube-v1":
        raise RLError(
            f"scripted demonstrations exist for PushCube-v1; for {env.sim.cfg.task} give demos.bags"
        )
    buf = ReplayBuffer(episodes * env.max_episode_steps + 8, env.obs_dim, env.act_dim, env.device)
    obs = env.reset(seed=seed)
    ctrls = [PushController("success", seed + k) for k in range(env.num_envs)]
    done = 0
    while done < episodes:
        action = torch.as_tensor(np.stack([c.act(o) for c, o in zip(ctrls, obs.cpu().numpy(), strict=True)]))
        res = env.step(action.to(env.device))
        buf.add(obs, action.to(buf.device), res.reward, res.final_obs, res.terminated)
        for ep in res.episodes:
            i = int(ep["env_index"])
            ctrls[i] = PushController("success", seed + 1000 + done)
            done += 1
        obs = res.obs
    return buf


def demo_buffer(cfg: RLConfig, env: LearnedRewardEnv) -> tuple[ReplayBuffer | None, str]:
    if cfg.demos.bags:
        from reward_model_ros.rl.demos import demos_from_bags
        from reward_model_sim.env import normalised_action

        def to_action(dp, drot, grip):
            return normalised_action(dp, drot, grip, cfg.env.control_mode)[0]

        buf, n = demos_from_bags(
            [Path(b) for b in cfg.demos.bags], env, to_action, cfg.reward.terminate_on_success
        )
        return buf, f"{n} demonstration episodes from {len(cfg.demos.bags)} bag path(s)"
    if cfg.demos.episodes <= 0:
        return None, "no demonstrations"
    return scripted_demos(env, cfg.demos.episodes, cfg.seed + 500_000), (
        f"{cfg.demos.episodes} scripted demonstrations"
    )


def train_rl(cfg: Any, log_fn=print) -> dict[str, Any]:
    """Train a policy on the learned reward; returns the result (also result.json)."""
    from omegaconf import OmegaConf

    from reward_model_ros.rl.logger import RunLogger
    from reward_model_ros.rl.ppo import train_ppo
    from reward_model_ros.rl.sac import train_sac

    plain = to_plain(cfg)
    out = Path(plain["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(plain)))
    cfg = OmegaConf.to_object(cfg) if OmegaConf.is_config(cfg) else cfg
    if cfg.algo not in ("sac", "ppo"):
        raise RLError(f"algo={cfg.algo!r}: choose sac or ppo")
    monitor = None
    if not cfg.reward.oracle:
        monitor = RewardHackingMonitor(
            out / "disagreements" if cfg.monitor.save_frames else None,
            cfg.monitor.max_frames,
            cfg.monitor.window,
            cfg.monitor.warn_gap,
            every_nth=cfg.monitor.every_nth,
            warn_false_positive_rate=cfg.monitor.warn_false_positive_rate,
        )
    env, source = make_env(cfg, monitor)
    log_fn(f"reward: {source}")
    eval_env = GroundTruthEvalEnv(_sim_config(cfg.env), cfg.env.max_episode_steps)
    algo = cfg.sac if cfg.algo == "sac" else cfg.ppo
    algo.seed = cfg.seed
    algo.eval_interval, algo.eval_episodes, algo.eval_seed = (
        cfg.eval.interval,
        cfg.eval.episodes,
        cfg.eval.seed,
    )
    algo.checkpoint_dir, algo.log_dir = str(out / "policy"), str(out / "logs")
    logger = RunLogger(algo.log_dir, algo.progress, algo.total_steps)
    if monitor is not None:
        logger.on_episodes.append(lambda eps, step: logger.scalars(monitor.on_episodes(eps, step), step))
    started = time.monotonic()
    try:
        if cfg.algo == "sac":
            demos, what = demo_buffer(cfg, env)
            log_fn(f"demonstrations: {what}" + (f" ({len(demos)} transitions)" if demos is not None else ""))
            result = train_sac(algo, env, demo_buffer=demos, eval_env=eval_env, logger=logger)
        else:
            result = train_ppo(algo, env, eval_env=eval_env, logger=logger)
    finally:
        logger.close()
        env.close()
        eval_env.close()
    curve = [
        {"step": int(r["step"]), **{k[5:]: v for k, v in r.items() if k.startswith("eval/")}}
        for r in result["history"]
        if "eval/gt_success" in r
    ]
    summary = {
        "algo": cfg.algo,
        "task": cfg.env.task,
        "reward": source,
        "steps": result["step"],
        "train_s": result.get("train_s"),
        "wall_s": time.monotonic() - started,
        "final_eval": result["eval"],
        "eval_curve": curve,
        "reward_scoring_s": env.scoring_seconds,
        "monitor": monitor.stats() if monitor is not None else None,  # the last window
        "monitor_totals": dict(monitor.totals) if monitor is not None else None,  # the whole run
        "checkpoint": result["checkpoint"],
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def evaluate_checkpoint(
    checkpoint: Path, task: str, episodes: int, seed: int, max_steps: int, control_mode: str
) -> dict[str, Any]:
    """Ground-truth success of a saved policy on fixed seeds (state observations)."""
    from reward_model_ros.rl.checkpoint import load_policy
    from reward_model_ros.rl.evaluate import evaluate_policy

    policy = load_policy(checkpoint)
    env = GroundTruthEvalEnv(SimBatchConfig(task=task, control_mode=control_mode), max_steps)
    try:
        return evaluate_policy(policy, env, episodes, seed)
    finally:
        env.close()


def episode_picture(policy, cfg: RLConfig, out: Path, episodes: int = 4, seed: int = 1_000_000) -> Path:
    """A picture of `episodes` evaluation episodes: the camera frame every few steps, titled with
    the step and ground truth (rendered: the policy's own view is the state vector)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim = ManiSkillBatch(_sim_config(EnvSection(**{**to_plain(cfg.env), "num_envs": 1})))
    cols = 8
    fig, axes = plt.subplots(episodes, cols, figsize=(2 * cols, 2.2 * episodes), squeeze=False)
    try:
        for e in range(episodes):
            s = sim.reset(seed + e)
            shots, success = [], False
            for t in range(cfg.env.max_episode_steps):
                if t % max(1, cfg.env.max_episode_steps // cols) == 0:
                    shots.append((t, s.frames[0][0], bool(s.gt_success[0])))
                s = sim.step(policy.act(s.obs, deterministic=True).to(sim.device))
                success |= bool(s.gt_success[0])
                if success:
                    shots.append((t + 1, s.frames[0][0], True))
                    break
            for k in range(cols):
                ax = axes[e, k]
                ax.axis("off")
                if k < len(shots):
                    t, img, ok = shots[k]
                    ax.imshow(img)
                    ax.set_title(f"seed {seed + e} t={t}" + (" SUCCESS" if ok else ""), fontsize=7)
    finally:
        sim.close()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
