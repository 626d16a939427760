"""PPO for vectorised continuous-control envs (CleanRL's ppo_continuous_action, ManiSkill's baseline).

Each iteration collects `num_steps` steps from every sub-env (tensors stay on the device),
computes GAE with masks at episode ends (on truncation gamma * V(final_obs) is added to the
reward, as ManiSkill's baseline does with its final values), then runs `update_epochs` passes
of clipped-surrogate minibatch updates. The learner reads observations, actions, rewards,
`terminated` and `truncated`; episode dicts (with `gt_success`) go to the logger only.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reward_model_ros.core.overrides import to_plain
from reward_model_ros.rl.checkpoint import (
    Policy,
    PolicyCheckpointError,
    load_modules,
    load_training_state,
    save_policy,
)
from reward_model_ros.rl.common import adam, as_config, crossed, resolve_device
from reward_model_ros.rl.envs import VecEnv
from reward_model_ros.rl.evaluate import evaluate_policy
from reward_model_ros.rl.logger import RunLogger
from reward_model_ros.rl.networks import ActorCritic

log = logging.getLogger(__name__)


@dataclass
class PPOConfig:
    total_steps: int = 1_000_000
    """environment transitions to collect, summed over the sub-envs (rounded up to whole rollouts)"""
    time_budget_s: float = 0.0
    """stop after the rollout that passes this many seconds of training, evaluations excluded (0 = none)"""
    num_steps: int = 50
    """steps per sub-env per rollout (a rollout is num_envs * num_steps transitions)"""
    gamma: float = 0.99
    """the discount factor"""
    gae_lambda: float = 0.95
    """the lambda of generalised advantage estimation"""
    update_epochs: int = 4
    """passes over each rollout"""
    num_minibatches: int = 32
    """minibatches per pass"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient"""
    clip_vloss: bool = False
    """clip the value loss like the policy's (CleanRL's option; ManiSkill's baseline leaves it off)"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient norm clipping"""
    lr: float = 3e-4
    """the learning rate (Adam, eps 1e-5)"""
    anneal_lr: bool = False
    """decay the learning rate linearly to 0 over the run"""
    target_kl: float | None = 0.1
    """stop an iteration's update once the approximate KL exceeds this (None: never)"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    reward_scale: float = 1.0
    """rewards are multiplied by this before learning"""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """hidden layer widths of the actor and of the value network (tanh)"""
    init_log_std: float = 0.0
    """the initial log-std of the Gaussian policy (ManiSkill's baseline: -0.5)"""
    eval_interval: int = 100_000
    """transitions between evaluations on eval_env (0: at the end only)"""
    eval_episodes: int = 16
    """episodes per evaluation (deterministic actions)"""
    eval_seed: int = 10_000
    """the eval env's reset seed (the same every evaluation)"""
    save_interval: int = 0
    """transitions between checkpoints into checkpoint_dir (0: at the end only)"""
    checkpoint_dir: str = ""
    """the checkpoint directory (overwritten by each save; empty: no checkpoints)"""
    log_dir: str = ""
    """TensorBoard event files go here (empty: none)"""
    progress: bool = False
    """show a tqdm progress bar"""
    seed: int = 1
    """seeds the network init, the sampling generator and the env's first reset"""
    device: str = ""
    """the agent's and the rollout's device (empty: the env's)"""


@dataclass
class Rollout:
    """One rollout's tensors, (num_steps, num_envs, ...), on one device."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    """rewards * reward_scale, plus gamma * V(final_obs) where the episode was truncated"""
    ended: torch.Tensor
    """1.0 where the episode ended (terminated or truncated) at this step"""
    values: torch.Tensor

    @staticmethod
    def empty(num_steps: int, num_envs: int, obs_dim: int, act_dim: int, device: torch.device) -> Rollout:
        def z(*shape: int) -> torch.Tensor:
            return torch.zeros((num_steps, num_envs, *shape), device=device)

        return Rollout(z(obs_dim), z(act_dim), z(), z(), z(), z())


@dataclass
class LoopState:
    """The loop's state besides the agent and optimizer (saved in checkpoints)."""

    step: int = 0
    iteration: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    last_eval: dict[str, Any] | None = None
    train_s: float = 0.0
    """wall-clock seconds of training so far, evaluations excluded"""


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    ended: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), each (T, N). `ended[t]` masks the bootstrap from step t+1 (the next
    episode's); `next_value` is V of the observation after the last step."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        nxt = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        nonterminal = 1.0 - ended[t]
        delta = rewards[t] + gamma * nxt * nonterminal - values[t]
        last = delta + gamma * gae_lambda * nonterminal * last
        advantages[t] = last
    return advantages, advantages + values


def truncation_bonus(
    truncated: torch.Tensor, terminated: torch.Tensor, final_values: torch.Tensor, gamma: float
) -> torch.Tensor:
    """gamma * V(final_obs) where an episode was truncated (and not terminated), else 0."""
    return gamma * final_values * (truncated & ~terminated).float()


def collect_rollout(
    agent: ActorCritic,
    env: VecEnv,
    obs: torch.Tensor,
    storage: Rollout,
    cfg: PPOConfig,
    gen: torch.Generator,
    logger: RunLogger,
    run: LoopState,
) -> torch.Tensor:
    """Fill `storage` with num_steps steps from `obs`; returns the observation after the last one."""
    device = storage.obs.device
    for t in range(cfg.num_steps):
        storage.obs[t] = obs
        with torch.no_grad():
            action, logprob, _, value = agent.get_action_and_value(obs, generator=gen)
        res = env.step(action.clamp(-1.0, 1.0).to(env.device))
        reward = res.reward.to(device) * cfg.reward_scale
        terminated, truncated = res.terminated.to(device), res.truncated.to(device)
        if res.episodes:  # some episode ended: bootstrap the truncated ones from their last obs
            with torch.no_grad():
                final_values = agent.get_value(res.final_obs.to(device, torch.float32))
            reward = reward + truncation_bonus(truncated, terminated, final_values, cfg.gamma)
        storage.actions[t], storage.logprobs[t], storage.values[t] = action, logprob, value
        storage.rewards[t], storage.ended[t] = reward, (terminated | truncated).float()
        run.step += env.num_envs
        logger.episodes(res.episodes, run.step)
        obs = res.obs.to(device, torch.float32)
    return obs


def ppo_update(
    agent: ActorCritic,
    opt: torch.optim.Optimizer,
    storage: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    cfg: PPOConfig,
    gen: torch.Generator,
) -> dict[str, float]:
    """update_epochs passes of minibatch updates; returns the losses of the last minibatch."""
    b_obs = storage.obs.flatten(0, 1)
    b_actions = storage.actions.flatten(0, 1)
    b_logprobs, b_values = storage.logprobs.flatten(), storage.values.flatten()
    b_adv, b_returns = advantages.flatten(), returns.flatten()
    batch = b_obs.shape[0]
    mb_size = max(1, batch // cfg.num_minibatches)
    clipfracs: list[torch.Tensor] = []
    m: dict[str, torch.Tensor] = {}
    for _ in range(cfg.update_epochs):
        perm = torch.randperm(batch, generator=gen, device=gen.device).to(b_obs.device)
        for start in range(0, batch - mb_size + 1, mb_size):
            mb = perm[start : start + mb_size]
            _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_actions[mb])
            logratio = newlogprob - b_logprobs[mb]
            ratio = logratio.exp()
            with torch.no_grad():
                m["old_approx_kl"] = (-logratio).mean()
                m["approx_kl"] = ((ratio - 1) - logratio).mean()
                clipfracs.append(((ratio - 1.0).abs() > cfg.clip_coef).float().mean())
            adv = b_adv[mb]
            if cfg.norm_adv:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
            v_loss = _value_loss(newvalue, b_returns[mb], b_values[mb], cfg)
            entropy_loss = entropy.mean()
            loss = pg_loss - cfg.ent_coef * entropy_loss + cfg.vf_coef * v_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
            opt.step()
            m |= {
                "policy_loss": pg_loss.detach(),
                "value_loss": v_loss.detach(),
                "entropy": entropy_loss.detach(),
            }
            if cfg.target_kl is not None and float(m["approx_kl"]) > cfg.target_kl:
                break
        else:
            continue
        break  # target_kl reached: stop this iteration's update
    out = {f"losses/{k}": float(v) for k, v in m.items()}
    out["losses/clipfrac"] = float(torch.stack(clipfracs).mean())
    var_y = b_returns.var()
    out["losses/explained_variance"] = (
        float(1 - (b_returns - b_values).var() / var_y) if var_y > 0 else math.nan
    )
    return out


def _value_loss(
    newvalue: torch.Tensor, returns: torch.Tensor, values: torch.Tensor, cfg: PPOConfig
) -> torch.Tensor:
    if not cfg.clip_vloss:
        return 0.5 * ((newvalue - returns) ** 2).mean()
    clipped = values + (newvalue - values).clamp(-cfg.clip_coef, cfg.clip_coef)
    return 0.5 * torch.max((newvalue - returns) ** 2, (clipped - returns) ** 2).mean()


def run_device(agent: nn.Module) -> torch.device:
    return next(agent.parameters()).device


def save_ppo(
    directory: str | Path,
    agent: ActorCritic,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    cfg: PPOConfig,
    run: LoopState,
    obs_dim: int,
    act_dim: int,
) -> Path:
    """A checkpoint: the agent, its optimizer and the sampling generator."""
    state = {
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "step": run.step,
        "metrics": run.metrics,
        "iteration": run.iteration,
    }
    return save_policy(directory, "ppo", {"agent": agent}, to_plain(cfg), state, {"agent": opt}, {"ppo": gen})


def resume_ppo(
    directory: str | Path, agent: ActorCritic, opt: torch.optim.Optimizer, gen: torch.Generator
) -> LoopState:
    directory = Path(directory)
    meta = load_modules(directory, {"agent": agent})
    if meta["kind"] != "ppo":
        raise PolicyCheckpointError(f"{directory}: a {meta['kind']!r} checkpoint cannot resume PPO")
    load_training_state(directory, {"agent": opt}, {"ppo": gen})
    run = LoopState(step=int(meta["step"]), iteration=int(meta["state"]["iteration"]))
    run.metrics = dict(meta.get("metrics", {}))
    log.info("resumed PPO from %s at step %d (iteration %d)", directory, run.step, run.iteration)
    return run


def train_ppo(
    cfg: PPOConfig | Any,
    env: VecEnv,
    eval_env: VecEnv | None = None,
    logger: RunLogger | None = None,
    resume: str | Path | None = None,
) -> dict[str, Any]:
    """Train for ceil(total_steps / (num_envs * num_steps)) iterations. Returns {"step", "wall_s",
    "checkpoint", "eval", "metrics", "history", "agent" (the ActorCritic)}, as train_sac does."""
    cfg = as_config(cfg, PPOConfig)
    device = resolve_device(cfg.device, env.device)
    torch.manual_seed(cfg.seed)  # network init
    agent = ActorCritic(env.obs_dim, env.act_dim, cfg.hidden, cfg.init_log_std).to(device)
    opt = adam(agent.parameters(), cfg.lr, device, eps=1e-5)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    run = resume_ppo(resume, agent, opt, gen) if resume else LoopState()
    own_logger = logger is None
    logger = logger or RunLogger(cfg.log_dir, cfg.progress, cfg.total_steps)
    logger.start_at(run.step)
    start = time.perf_counter()
    try:
        _loop(cfg, env, agent, opt, gen, eval_env, logger, run)
    finally:
        if own_logger:
            logger.close()
    checkpoint = None
    if cfg.checkpoint_dir:
        checkpoint = str(save_ppo(cfg.checkpoint_dir, agent, opt, gen, cfg, run, env.obs_dim, env.act_dim))
    return {
        "step": run.step,
        "wall_s": time.perf_counter() - start,
        "train_s": run.train_s,
        "checkpoint": checkpoint,
        "eval": run.last_eval,
        "metrics": run.metrics,
        "history": logger.history,
        "agent": agent,
    }


def _loop(
    cfg: PPOConfig,
    env: VecEnv,
    agent: ActorCritic,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    eval_env: VecEnv | None,
    logger: RunLogger,
    run: LoopState,
) -> None:
    device = run_device(agent)
    num_iterations = math.ceil(cfg.total_steps / (env.num_envs * cfg.num_steps))
    storage = Rollout.empty(cfg.num_steps, env.num_envs, env.obs_dim, env.act_dim, device)
    # a resumed run starts new episodes from another seed than the first run did
    obs = env.reset(seed=cfg.seed + run.step).to(device, torch.float32)
    for iteration in range(run.iteration + 1, num_iterations + 1):
        if cfg.anneal_lr:
            opt.param_groups[0]["lr"] = (1.0 - (iteration - 1) / num_iterations) * cfg.lr
        before, t0 = run.step, time.perf_counter()
        obs = collect_rollout(agent, env, obs, storage, cfg, gen, logger, run)
        t1 = time.perf_counter()
        with torch.no_grad():
            next_value = agent.get_value(obs)
        advantages, returns = compute_gae(
            storage.rewards, storage.values, storage.ended, next_value, cfg.gamma, cfg.gae_lambda
        )
        metrics = ppo_update(agent, opt, storage, advantages, returns, cfg, gen)
        t2 = time.perf_counter()
        run.iteration = iteration
        metrics |= {
            "charts/learning_rate": opt.param_groups[0]["lr"],
            "reward/step_reward_mean": float(storage.rewards.mean()),
            "time/rollout_fps": (run.step - before) / max(t1 - t0, 1e-9),
            "time/update_s": t2 - t1,
        }
        run.metrics = metrics
        run.train_s += time.perf_counter() - t0
        metrics["time/train_s"] = run.train_s
        logger.scalars(metrics, run.step)
        out_of_time = bool(cfg.time_budget_s and run.train_s >= cfg.time_budget_s)
        _maybe_eval_and_save(
            cfg,
            agent,
            opt,
            gen,
            env,
            eval_env,
            logger,
            run,
            before,
            iteration == num_iterations or out_of_time,
        )
        logger.progress(run.step)
        if out_of_time:
            break


def _maybe_eval_and_save(
    cfg: PPOConfig,
    agent: ActorCritic,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    env: VecEnv,
    eval_env: VecEnv | None,
    logger: RunLogger,
    run: LoopState,
    before: int,
    final: bool,
) -> None:
    if eval_env is not None and (crossed(before, run.step, cfg.eval_interval) or final):
        policy = Policy(agent, "ppo", {"obs_dim": env.obs_dim, "act_dim": env.act_dim}, run_device(agent))
        result = evaluate_policy(policy, eval_env, cfg.eval_episodes, seed=cfg.eval_seed)
        run.last_eval = {k: v for k, v in result.items() if k != "per_episode"}
        run.last_eval["train_s"] = run.train_s
        logger.scalars({f"eval/{k}": v for k, v in run.last_eval.items()}, run.step)
        log.info(
            "step %d: eval gt_success %.3f, success %.3f", run.step, result["gt_success"], result["success"]
        )
    if cfg.checkpoint_dir and crossed(before, run.step, cfg.save_interval) and not final:
        save_ppo(cfg.checkpoint_dir, agent, opt, gen, cfg, run, env.obs_dim, env.act_dim)
