"""SAC in RLPD / HIL-SERL form: LayerNorm critic ensemble, min over a random subset of critics,
update-to-data ratio, critic-actor ratio, symmetric demo/online batches.

`SACLearner` holds the networks and does one update per call (`update(batch)`), so an actor
elsewhere (a ROS node) can feed a learner thread; `train_sac` composes it with an env loop:
random actions for `learning_starts` transitions (the behaviour-cloned actor instead when
`bc_pretrain_steps` is set), then the policy; after every env step
`utd_ratio * num_envs` critic updates (the actor and temperature every `critic_actor_ratio`-th).
Bootstrapping stops at `terminated` only; truncated episodes bootstrap from `final_obs`.
The learner reads observations, actions, rewards and `terminated`; episode dicts (with
`gt_success`) go to the logger only.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reward_model_ros.core.overrides import to_plain
from reward_model_ros.rl.buffer import META as BUFFER_META
from reward_model_ros.rl.buffer import WEIGHTS as BUFFER_WEIGHTS
from reward_model_ros.rl.buffer import Batch, ReplayBuffer, sample_symmetric
from reward_model_ros.rl.checkpoint import (
    PolicyCheckpointError,
    load_modules,
    load_training_state,
    save_policy,
)
from reward_model_ros.rl.common import adam, as_config, crossed, resolve_device
from reward_model_ros.rl.envs import VecEnv
from reward_model_ros.rl.evaluate import evaluate_policy
from reward_model_ros.rl.logger import RunLogger
from reward_model_ros.rl.networks import CriticEnsemble, TanhGaussianActor, Temperature, min_over_subset

log = logging.getLogger(__name__)

BUFFER_DIR = "replay_buffer"


@dataclass
class SACConfig:
    total_steps: int = 100_000
    """environment transitions to collect, summed over the sub-envs"""
    time_budget_s: float = 0.0
    """stop after this many seconds of training wall-clock time, evaluations excluded (0 = no limit)"""
    learning_starts: int = 5_000
    """transitions collected before the first update: with uniform random actions, or with the
    behaviour-cloned actor when bc_pretrain_steps > 0"""
    batch_size: int = 256
    """transitions per update (demo_ratio of them from the demo buffer when there is one)"""
    buffer_size: int = 1_000_000
    """replay buffer capacity, in transitions"""
    gamma: float = 0.97
    """the discount factor (HIL-SERL: 0.97; RLPD: 0.96-0.99)"""
    tau: float = 0.005
    """target critic soft-update rate (per critic update)"""
    actor_lr: float = 3e-4
    """actor learning rate (Adam)"""
    critic_lr: float = 3e-4
    """critic learning rate (Adam)"""
    temp_lr: float = 3e-4
    """temperature learning rate (Adam)"""
    init_temperature: float = 1e-2
    """initial entropy temperature alpha (HIL-SERL: 1e-2)"""
    target_entropy: float | None = None
    """entropy target of the temperature; None: -act_dim / 2 (SERL and RLPD's default)"""
    backup_entropy: bool = True
    """subtract alpha * log-prob of the next action in the critic's target (soft Q backup)"""
    num_qs: int = 2
    """critics in the ensemble (RLPD: 10, SERL: 2)"""
    num_min_qs: int = 2
    """the target is the minimum over this many critics drawn at random per update (RLPD)"""
    utd_ratio: float = 1.0
    """critic updates per collected transition (update-to-data ratio); fractions accumulate"""
    critic_actor_ratio: int = 2
    """critic updates per actor and temperature update (HIL-SERL: 2)"""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """hidden layer widths of the actor and of each critic"""
    layer_norm: bool = True
    """LayerNorm after each hidden layer of the critics (SERL/RLPD)"""
    demo_ratio: float = 0.5
    """fraction of each batch drawn from the demo buffer, when one is given (RLPD: 0.5)"""
    bc_pretrain_steps: int = 0
    """behaviour-cloning steps on the demonstrations before RL (the actor starts as their
    imitation, and collects the first data with it instead of uniform random actions)"""
    bc_weight: float = 0.0
    """weight of a behaviour-cloning term on the demonstration half of each actor batch (0 = off)"""
    eval_interval: int = 10_000
    """transitions between evaluations on eval_env (0: at the end only)"""
    eval_episodes: int = 10
    """episodes per evaluation (deterministic actions)"""
    eval_seed: int = 10_000
    """the eval env's reset seed (the same every evaluation, so evaluations are comparable)"""
    save_interval: int = 0
    """transitions between checkpoints into checkpoint_dir (0: at the end only)"""
    save_buffer: bool = True
    """save the replay buffer with each checkpoint, so a resumed run continues with it"""
    checkpoint_dir: str = ""
    """the checkpoint directory (overwritten by each save; empty: no checkpoints)"""
    log_dir: str = ""
    """TensorBoard event files go here (empty: none)"""
    log_interval: int = 1_000
    """transitions between logs of losses and time/sps"""
    progress: bool = False
    """show a tqdm progress bar"""
    seed: int = 1
    """seeds the networks' init, the learner's generator and the env's first reset"""
    device: str = ""
    """the learner's device (empty: the env's)"""


class SACLearner:
    """SAC's networks, optimizers and one update; all randomness from `self.gen`."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig, device: str | torch.device = "cpu"):
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden).to(self.device)
        self.critic = CriticEnsemble(obs_dim, act_dim, cfg.hidden, cfg.num_qs, cfg.layer_norm).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.temperature = Temperature(cfg.init_temperature).to(self.device)
        te = cfg.target_entropy
        self.target_entropy = float(te) if te is not None else -act_dim / 2
        self.actor_opt = adam(self.actor.parameters(), cfg.actor_lr, self.device)
        self.critic_opt = adam(self.critic.parameters(), cfg.critic_lr, self.device)
        self.temp_opt = adam(self.temperature.parameters(), cfg.temp_lr, self.device)
        self.num_updates = 0
        """critic updates done"""

    def modules(self) -> dict[str, torch.nn.Module]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "temperature": self.temperature,
        }

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt, "temperature": self.temp_opt}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions in [-1, 1] on the learner's device (sampled from self.gen unless deterministic)."""
        return self.actor.act(obs.to(self.device, torch.float32), deterministic, self.gen)

    def update(self, batch: Batch, demo_rows: int = 0) -> dict[str, torch.Tensor]:
        """One critic update (and the actor's and temperature's every critic_actor_ratio-th);
        `demo_rows`: the batch's first rows are demonstrations (for bc_weight). Returns
        detached 0-d tensors (float() them to log: no device sync here)."""
        metrics = self._update_critic(batch)
        if (self.num_updates + 1) % self.cfg.critic_actor_ratio == 0:
            metrics |= self._update_actor_and_temperature(batch, demo_rows)
        self._soft_update_target()
        self.num_updates += 1
        return metrics

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        """r + gamma * (1 - terminated) * (min over a random subset of target Qs - alpha * log pi)."""
        next_action, next_log_prob = self.actor.sample(batch.next_obs, self.gen)
        q_next = self.critic_target(batch.next_obs, next_action)
        q_next = min_over_subset(q_next, self.cfg.num_min_qs, self.gen)
        if self.cfg.backup_entropy:
            q_next = q_next - self.temperature() * next_log_prob
        return batch.rewards + self.cfg.gamma * (1.0 - batch.dones) * q_next

    def _update_critic(self, batch: Batch) -> dict[str, torch.Tensor]:
        target = self.td_target(batch)
        q = self.critic(batch.obs, batch.actions)
        loss = ((q - target.unsqueeze(0)) ** 2).mean(1).sum()  # each critic's own MSE
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        return {"losses/qf_loss": loss.detach() / q.shape[0], "losses/qf_values": q.detach().mean()}

    def _bc_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Squared error of the actor's mean action to the demonstrated one."""
        mean, _ = self.actor(obs)
        return ((torch.tanh(mean) - actions.clamp(-1.0, 1.0)) ** 2).mean()

    def pretrain_bc(self, demos: ReplayBuffer, steps: int) -> float:
        """Behaviour cloning of the actor on `demos` (cfg.batch_size per step); the last loss."""
        loss = torch.zeros(())
        for _ in range(steps):
            batch = demos.sample(self.cfg.batch_size, self.gen).to(self.device)
            loss = self._bc_loss(batch.obs, batch.actions)
            self.actor_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.actor_opt.step()
        return float(loss.detach())

    def _update_actor_and_temperature(self, batch: Batch, demo_rows: int = 0) -> dict[str, torch.Tensor]:
        action, log_prob = self.actor.sample(batch.obs, self.gen)
        self.critic.requires_grad_(False)
        q = self.critic(batch.obs, action).mean(0)
        self.critic.requires_grad_(True)
        alpha = self.temperature()
        actor_loss = (alpha.detach() * log_prob - q).mean()
        bc = None
        if self.cfg.bc_weight > 0 and demo_rows > 0:
            bc = self._bc_loss(batch.obs[:demo_rows], batch.actions[:demo_rows])
            actor_loss = actor_loss + self.cfg.bc_weight * bc
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        temp_loss = (-alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.temp_opt.zero_grad(set_to_none=True)
        temp_loss.backward()
        self.temp_opt.step()
        extra = {"losses/bc_loss": bc.detach()} if bc is not None else {}
        return extra | {
            "losses/actor_loss": actor_loss.detach(),
            "losses/alpha": alpha.detach(),
            "losses/alpha_loss": temp_loss.detach(),
            "losses/entropy": -log_prob.detach().mean(),
        }

    @torch.no_grad()
    def _soft_update_target(self) -> None:
        for p, tp in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
            tp.lerp_(p, self.cfg.tau)


@dataclass
class LoopState:
    """The loop's state besides the learner and buffer (saved in checkpoints)."""

    step: int = 0
    update_credit: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    last_eval: dict[str, Any] | None = None
    train_s: float = 0.0
    """wall-clock seconds of training so far, evaluations excluded"""


def save_sac(directory: str | Path, learner: SACLearner, buffer: ReplayBuffer | None, run: LoopState) -> Path:
    """A checkpoint: policy + optimizers + generator (+ the replay buffer under replay_buffer/)."""
    directory = Path(directory)
    state = {
        "obs_dim": learner.obs_dim,
        "act_dim": learner.act_dim,
        "step": run.step,
        "metrics": run.metrics,
        "num_updates": learner.num_updates,
        "update_credit": run.update_credit,
    }
    save_policy(
        directory,
        "sac",
        learner.modules(),
        to_plain(learner.cfg),
        state,
        learner.optimizers(),
        {"learner": learner.gen},
    )
    if buffer is not None:
        buffer.save(directory / BUFFER_DIR)
    else:  # a buffer from an earlier save would not match this checkpoint
        for name in (BUFFER_WEIGHTS, BUFFER_META):
            (directory / BUFFER_DIR / name).unlink(missing_ok=True)
    return directory


def resume_sac(directory: str | Path, learner: SACLearner) -> tuple[LoopState, ReplayBuffer | None]:
    """Restore `learner` from a checkpoint; returns the loop state and the saved buffer (or None)."""
    directory = Path(directory)
    meta = load_modules(directory, learner.modules())
    if meta["kind"] != "sac":
        raise PolicyCheckpointError(f"{directory}: a {meta['kind']!r} checkpoint cannot resume SAC")
    load_training_state(directory, learner.optimizers(), {"learner": learner.gen})
    learner.num_updates = int(meta["state"]["num_updates"])
    run = LoopState(step=int(meta["step"]), update_credit=float(meta["state"].get("update_credit", 0.0)))
    run.metrics = dict(meta.get("metrics", {}))
    buffer = None
    if (directory / BUFFER_DIR / BUFFER_META).is_file():
        buffer = ReplayBuffer.load(directory / BUFFER_DIR, learner.device)
    else:
        log.warning("%s has no %s/: resuming with an empty replay buffer", directory, BUFFER_DIR)
    log.info("resumed SAC from %s at step %d", directory, run.step)
    return run, buffer


def train_sac(
    cfg: SACConfig | Any,
    env: VecEnv,
    demo_buffer: ReplayBuffer | None = None,
    eval_env: VecEnv | None = None,
    logger: RunLogger | None = None,
    resume: str | Path | None = None,
) -> dict[str, Any]:
    """Train until cfg.total_steps transitions. Returns {"step", "wall_s", "checkpoint" (path or None),
    "eval" (the last evaluation on eval_env, without its per-episode list, or None), "metrics" (the
    last losses), "history" (the logger's records), "learner" (the SACLearner)}."""
    cfg = as_config(cfg, SACConfig)
    device = resolve_device(cfg.device, env.device)
    torch.manual_seed(cfg.seed)  # network init
    learner = SACLearner(env.obs_dim, env.act_dim, cfg, device)
    buffer, run = None, LoopState()
    if resume:
        run, buffer = resume_sac(resume, learner)
    if buffer is None:
        buffer = ReplayBuffer(cfg.buffer_size, env.obs_dim, env.act_dim, device)
    own_logger = logger is None
    logger = logger or RunLogger(cfg.log_dir, cfg.progress, cfg.total_steps)
    logger.start_at(run.step)
    start = time.perf_counter()
    if cfg.bc_pretrain_steps and demo_buffer is not None and len(demo_buffer) and not resume:
        loss = learner.pretrain_bc(demo_buffer, cfg.bc_pretrain_steps)
        run.train_s += time.perf_counter() - start
        logger.scalars({"losses/bc_pretrain_loss": loss}, 0)
        log.info("behaviour cloning on %d demonstration transitions: loss %.4f", len(demo_buffer), loss)
    try:
        _loop(cfg, env, learner, buffer, demo_buffer, eval_env, logger, run)
    finally:
        if own_logger:
            logger.close()
    checkpoint = None
    if cfg.checkpoint_dir:
        checkpoint = str(save_sac(cfg.checkpoint_dir, learner, buffer if cfg.save_buffer else None, run))
    return {
        "step": run.step,
        "wall_s": time.perf_counter() - start,
        "train_s": run.train_s,
        "checkpoint": checkpoint,
        "eval": run.last_eval,
        "metrics": run.metrics,
        "history": logger.history,
        "learner": learner,
    }


def _loop(
    cfg: SACConfig,
    env: VecEnv,
    learner: SACLearner,
    buffer: ReplayBuffer,
    demo_buffer: ReplayBuffer | None,
    eval_env: VecEnv | None,
    logger: RunLogger,
    run: LoopState,
) -> None:
    # a resumed run starts new episodes from another seed than the first run did
    obs = env.reset(seed=cfg.seed + run.step)
    last_log, last_log_time = run.step, time.perf_counter()
    reward_sum = torch.zeros((), device=buffer.device)
    metrics: dict[str, torch.Tensor] = {}
    tick = time.perf_counter()
    while run.step < cfg.total_steps and not (cfg.time_budget_s and run.train_s >= cfg.time_budget_s):
        before = run.step
        obs, reward = _env_step(cfg, env, learner, buffer, obs, run, logger)
        reward_sum += reward.sum().to(buffer.device)
        metrics |= _updates(cfg, learner, buffer, demo_buffer, run, run.step - before)  # keep the actor's too
        if crossed(last_log, run.step, cfg.log_interval) or run.step >= cfg.total_steps:
            now = time.perf_counter()
            values = {k: float(v) for k, v in metrics.items()}
            run.metrics = values
            values["reward/step_reward_mean"] = float(reward_sum) / max(1, run.step - last_log)
            values["time/sps"] = (run.step - last_log) / max(now - last_log_time, 1e-9)
            values["time/train_s"] = run.train_s
            logger.scalars(values, run.step)
            last_log, last_log_time, reward_sum = run.step, now, reward_sum.zero_()
        run.train_s += time.perf_counter() - tick
        _maybe_eval_and_save(cfg, learner, buffer, eval_env, logger, run, before)
        tick = time.perf_counter()
        logger.progress(run.step)


def _env_step(
    cfg: SACConfig,
    env: VecEnv,
    learner: SACLearner,
    buffer: ReplayBuffer,
    obs: torch.Tensor,
    run: LoopState,
    logger: RunLogger,
) -> tuple[torch.Tensor, torch.Tensor]:
    if run.step < cfg.learning_starts and not cfg.bc_pretrain_steps:
        shape = (env.num_envs, env.act_dim)
        action = torch.rand(shape, generator=learner.gen, device=learner.device) * 2 - 1
    else:
        action = learner.act(obs)
    res = env.step(action.to(env.device))
    buffer.add(obs, action, res.reward, res.final_obs, res.terminated)
    run.step += env.num_envs
    logger.episodes(res.episodes, run.step)
    return res.obs, res.reward


def _updates(
    cfg: SACConfig,
    learner: SACLearner,
    buffer: ReplayBuffer,
    demo_buffer: ReplayBuffer | None,
    run: LoopState,
    transitions: int,
) -> dict[str, torch.Tensor]:
    """The updates due after a step of `transitions`: utd_ratio per transition, from learning_starts on."""
    if run.step < cfg.learning_starts:
        return {}
    run.update_credit += cfg.utd_ratio * transitions
    n = int(run.update_credit)
    run.update_credit -= n
    metrics: dict[str, torch.Tensor] = {}
    with_demos = demo_buffer is not None and len(demo_buffer) > 0 and cfg.demo_ratio > 0 and len(buffer) > 0
    demo_rows = min(cfg.batch_size, round(cfg.batch_size * cfg.demo_ratio)) if with_demos else 0
    for _ in range(n):
        batch = sample_symmetric(buffer, demo_buffer, cfg.batch_size, learner.gen, cfg.demo_ratio)
        metrics |= learner.update(batch, demo_rows)
    return metrics


def _maybe_eval_and_save(
    cfg: SACConfig,
    learner: SACLearner,
    buffer: ReplayBuffer,
    eval_env: VecEnv | None,
    logger: RunLogger,
    run: LoopState,
    before: int,
) -> None:
    final = run.step >= cfg.total_steps or bool(cfg.time_budget_s and run.train_s >= cfg.time_budget_s)
    if eval_env is not None and (crossed(before, run.step, cfg.eval_interval) or final):
        result = evaluate_policy(learner, eval_env, cfg.eval_episodes, seed=cfg.eval_seed)
        run.last_eval = {k: v for k, v in result.items() if k != "per_episode"}
        run.last_eval["train_s"] = run.train_s
        logger.scalars({f"eval/{k}": v for k, v in run.last_eval.items()}, run.step)
        log.info(
            "step %d: eval gt_success %.3f, success %.3f", run.step, result["gt_success"], result["success"]
        )
    if cfg.checkpoint_dir and crossed(before, run.step, cfg.save_interval) and not final:
        save_sac(cfg.checkpoint_dir, learner, buffer if cfg.save_buffer else None, run)
