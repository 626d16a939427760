"""rl/: SAC and PPO learn PointReach, learn from the reward and never from ground truth; the
pieces (networks, targets, GAE, evaluation, logging, configs) on their own. CPU, one thread."""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from reward_model_ros.core.overrides import OverrideError, apply_overrides
from reward_model_ros.rl import ppo as ppo_mod
from reward_model_ros.rl import sac as sac_mod
from reward_model_ros.rl.buffer import Batch, ReplayBuffer
from reward_model_ros.rl.envs import EnvProtocolError, StepResult, check_env
from reward_model_ros.rl.evaluate import episode_quota, evaluate_policy
from reward_model_ros.rl.logger import RunLogger
from reward_model_ros.rl.networks import ActorCritic, CriticEnsemble, TanhGaussianActor, min_over_subset
from reward_model_ros.rl.ppo import PPOConfig, collect_rollout, compute_gae, train_ppo, truncation_bonus
from reward_model_ros.rl.sac import SACConfig, SACLearner, train_sac
from reward_model_ros.rl.toy import PointReach


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- configs used below
def sac_config(**kw) -> SACConfig:
    """SAC sized for PointReach on one CPU thread."""
    base = dict(
        total_steps=5000,
        learning_starts=500,
        batch_size=128,
        hidden=[64, 64],
        utd_ratio=0.5,
        actor_lr=1e-3,
        critic_lr=1e-3,
        eval_interval=0,
        eval_episodes=32,
        log_interval=1000,
        seed=1,
    )
    return SACConfig(**(base | kw))


def ppo_config(**kw) -> PPOConfig:
    base = dict(
        total_steps=16_000,
        num_steps=50,
        hidden=[64, 64],
        gamma=0.9,
        num_minibatches=4,
        update_epochs=4,
        lr=3e-3,
        eval_interval=0,
        eval_episodes=32,
        seed=1,
    )
    return PPOConfig(**(base | kw))


class RandomPolicy:
    def __init__(self, seed: int = 0):
        self.gen = torch.Generator().manual_seed(seed)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return torch.rand((obs.shape[0], 2), generator=self.gen) * 2 - 1


class Oracle:
    """Straight to the goal (obs[:, 4:6] is goal - position)."""

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return (obs[:, 4:6] / 0.15).clamp(-1, 1)


def random_gt_success(episodes: int = 200) -> float:
    return evaluate_policy(RandomPolicy(), PointReach(8), episodes, seed=0)["gt_success"]


# ---------------------------------------------------------------- learning
def test_sac_learns_point_reach():
    # measured: a uniformly random policy reaches the goal in ~0.16 of episodes (200 episodes);
    # this config reaches 0.88-1.0 by 5000 steps on seeds 1-6 (about 8 s on one thread)
    random_rate = random_gt_success()
    assert random_rate < 0.3
    result = train_sac(sac_config(), PointReach(4), eval_env=PointReach(8))
    assert result["step"] == 5000
    assert result["eval"]["episodes"] == 32
    assert result["eval"]["gt_success"] >= 0.8 > random_rate + 0.5, result["eval"]


def test_ppo_learns_point_reach():
    # measured: ~10k transitions (6 iterations of 32 envs x 50 steps) to >= 0.9, about 1 s
    result = train_ppo(ppo_config(), PointReach(32), eval_env=PointReach(8))
    assert result["step"] == 16_000
    assert result["eval"]["gt_success"] >= 0.8 > random_gt_success() + 0.5, result["eval"]
    tags = set().union(*result["history"])
    assert {"time/rollout_fps", "time/update_s", "losses/value_loss", "charts/success_rate"} <= tags


def test_the_learner_optimises_the_reward_not_ground_truth():
    """The reward says success at the goal's mirror image (-goal): the policy goes there."""

    def mirrored(pos: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(pos + goal, dim=-1) < 0.15

    result = train_ppo(
        ppo_config(), PointReach(32, reward_fn=mirrored), eval_env=PointReach(8, reward_fn=mirrored)
    )
    ev = result["eval"]
    assert ev["success"] >= 0.8 and ev["gt_success"] <= 0.3, ev


class ScrambledGroundTruth(PointReach):
    """PointReach whose episodes report a random gt_success (from its own generator)."""

    def __init__(self, *args, scramble_seed: int, **kw):
        super().__init__(*args, **kw)
        self.scramble = torch.Generator().manual_seed(scramble_seed)

    def step(self, action: torch.Tensor) -> StepResult:
        res = super().step(action)
        for ep in res.episodes:
            ep["gt_success"] = bool(torch.rand((), generator=self.scramble) < 0.5)
        return res


def _params(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n, m in modules.items() for k, v in m.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _gt_curve(history: list[dict]) -> list[float]:
    return [r["charts/gt_success_rate"] for r in history if "charts/gt_success_rate" in r]


def test_sac_parameters_do_not_depend_on_gt_success():
    """Two runs that differ only in gt_success end with bitwise-identical networks."""
    cfg = apply_overrides(sac_config(), ["total_steps=400", "learning_starts=100", "log_interval=100"])
    runs = [train_sac(cfg, ScrambledGroundTruth(4, scramble_seed=s)) for s in (0, 1)]
    assert _gt_curve(runs[0]["history"]) != _gt_curve(runs[1]["history"])  # the scrambling took effect
    assert runs[0]["learner"].num_updates > 0
    _assert_same(*(_params(r["learner"].modules()) for r in runs))


def test_ppo_parameters_do_not_depend_on_gt_success():
    runs = [
        train_ppo(ppo_config(total_steps=3200), ScrambledGroundTruth(32, scramble_seed=s)) for s in (0, 1)
    ]
    assert _gt_curve(runs[0]["history"]) != _gt_curve(runs[1]["history"])
    _assert_same(*(_params({"agent": r["agent"]}) for r in runs))


def test_sac_with_demos_samples_them(monkeypatch):
    seen = []
    original = sac_mod.sample_symmetric

    def spy(online, demo, batch_size, generator, demo_ratio):
        seen.append((demo, demo_ratio))
        return original(online, demo, batch_size, generator, demo_ratio)

    monkeypatch.setattr(sac_mod, "sample_symmetric", spy)
    demo = ReplayBuffer(100, 6, 2)
    demo.add(
        torch.zeros(10, 6),
        torch.zeros(10, 2),
        torch.ones(10),
        torch.zeros(10, 6),
        torch.ones(10, dtype=torch.bool),
    )
    train_sac(sac_config(total_steps=80, learning_starts=40, utd_ratio=0.25), PointReach(4), demo_buffer=demo)
    assert seen and all(d is demo and r == 0.5 for d, r in seen)


# ---------------------------------------------------------------- SAC pieces
def _batch(n: int = 8, dones: float = 0.0) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(
        torch.randn(n, 6, generator=g),
        torch.rand(n, 2, generator=g) * 2 - 1,
        torch.rand(n, generator=g),
        torch.randn(n, 6, generator=g),
        torch.full((n,), dones),
    )


def test_td_target_stops_bootstrapping_at_termination_only():
    learner = SACLearner(6, 2, sac_config())
    terminated = _batch(dones=1.0)
    assert torch.equal(learner.td_target(terminated), terminated.rewards)
    running = _batch(dones=0.0)  # not terminated (e.g. truncated): bootstraps from next_obs
    assert not torch.allclose(learner.td_target(running), running.rewards)


def test_min_over_subset():
    q = torch.tensor([[1.0, 5.0], [2.0, 0.0], [3.0, 9.0], [4.0, 4.0]])
    assert torch.equal(min_over_subset(q, 4), torch.tensor([1.0, 0.0]))
    gen = torch.Generator().manual_seed(0)
    picks = set()
    for _ in range(30):
        out = min_over_subset(q, 2, gen)
        assert any(out[0] == q[i, 0] for i in range(4))
        picks.add(tuple(out.tolist()))
    assert len(picks) > 1  # the subset is drawn anew per call
    assert all(v[0] <= 3.0 for v in picks)  # the minimum of two of {1, 2, 3, 4} is never 4


def test_critic_ensemble_members_are_independent():
    critic = CriticEnsemble(6, 2, [32, 32], num_qs=5, layer_norm=True)
    obs, act = torch.randn(7, 6), torch.randn(7, 2)
    q = critic(obs, act)
    assert q.shape == (5, 7)
    assert len({round(float(v), 6) for v in q.detach()[:, 0]}) == 5
    assert any(isinstance(m, torch.nn.Module) and "LayerNorm" in type(m).__name__ for m in critic.modules())
    q[2].sum().backward()
    grads = [p.grad for p in critic.net[0].parameters()]
    assert all(g[2].abs().sum() > 0 and g[[0, 1, 3, 4]].abs().sum() == 0 for g in grads)


def test_tanh_gaussian_actor_log_prob_and_bounds():
    torch.manual_seed(0)
    actor = TanhGaussianActor(6, 2, [32])
    obs = torch.randn(64, 6) * 5
    gen = torch.Generator().manual_seed(1)
    action, log_prob = actor.sample(obs, gen)
    assert action.abs().max() <= 1.0
    mean, log_std = actor(obs)
    assert log_std.min() >= -5.0 and log_std.max() <= 2.0
    base = torch.distributions.Normal(mean, log_std.exp())
    dist = torch.distributions.TransformedDistribution(base, [torch.distributions.TanhTransform()])
    expected = dist.log_prob(action.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    ok = action.abs().max(-1).values < 0.999  # away from the saturated ends, where atanh is ill-conditioned
    torch.testing.assert_close(log_prob[ok], expected[ok], atol=2e-3, rtol=1e-3)
    assert torch.equal(actor.act(obs, deterministic=True), torch.tanh(mean))


def test_actor_updates_every_critic_actor_ratio_th_update():
    learner = SACLearner(6, 2, sac_config(critic_actor_ratio=3))
    changed = []
    for _ in range(6):
        before = _params({"actor": learner.actor})
        learner.update(_batch(32))
        after = _params({"actor": learner.actor})
        changed.append(any(not torch.equal(before[k], after[k]) for k in before))
    assert changed == [False, False, True, False, False, True]
    assert learner.num_updates == 6


def test_target_entropy_default_is_minus_half_act_dim():
    assert SACLearner(6, 4, sac_config()).target_entropy == -2.0
    assert SACLearner(6, 4, sac_config(target_entropy=-4.0)).target_entropy == -4.0


# ---------------------------------------------------------------- PPO pieces
def test_compute_gae_masks_episode_ends():
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [0.25], [1.0]])
    ended = torch.tensor([[0.0], [1.0], [0.0]])
    next_value = torch.tensor([4.0])
    g, lam = 0.9, 0.8
    adv, ret = compute_gae(rewards, values, ended, next_value, g, lam)
    d2 = 2.0 + g * 4.0 - 1.0
    d1 = 0.0 - 0.25  # the episode ended after step 1: no bootstrap from step 2
    d0 = 1.0 + g * 0.25 - 0.5
    expected = torch.tensor([[d0 + g * lam * d1], [d1], [d2]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_truncation_bonus_only_where_truncated():
    truncated = torch.tensor([True, False, True])
    terminated = torch.tensor([False, False, True])
    bonus = truncation_bonus(truncated, terminated, torch.tensor([2.0, 3.0, 5.0]), 0.5)
    assert bonus.tolist() == [1.0, 0.0, 0.0]


class Recording(PointReach):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.results: list[StepResult] = []

    def step(self, action):
        res = super().step(action)
        self.results.append(res)
        return res


def test_rollout_adds_gamma_v_final_obs_on_truncation():
    env = Recording(2, max_episode_steps=3)
    cfg = ppo_config(num_steps=4, gamma=0.9)
    torch.manual_seed(0)
    agent = ActorCritic(6, 2, [16])
    storage = ppo_mod.Rollout.empty(4, 2, 6, 2, torch.device("cpu"))
    obs = env.reset(seed=0)
    collect_rollout(
        agent, env, obs, storage, cfg, torch.Generator().manual_seed(0), RunLogger(), ppo_mod.LoopState()
    )
    truncated = env.results[2]
    assert truncated.truncated.all()
    with torch.no_grad():
        expected = truncated.reward + 0.9 * agent.get_value(truncated.final_obs)
    torch.testing.assert_close(storage.rewards[2], expected)
    assert storage.ended[2].tolist() == [1.0, 1.0] and storage.ended[1].tolist() == [0.0, 0.0]
    torch.testing.assert_close(storage.rewards[1], env.results[1].reward)
    assert not torch.equal(truncated.final_obs, truncated.obs)  # obs is already the next episode's


# ---------------------------------------------------------------- env, evaluation, logger
def test_point_reach_follows_the_protocol():
    check_env(PointReach(4))
    check_env(PointReach(4, terminate_on_success=True), steps=200)
    env = PointReach(3, max_episode_steps=5)
    env.reset(seed=0)
    for _ in range(4):
        assert not env.step(torch.zeros(3, 2)).truncated.any()
    res = env.step(torch.zeros(3, 2))
    assert res.truncated.all() and len(res.episodes) == 3 and res.episodes[0]["length"] == 5


def test_check_env_rejects_a_broken_env():
    class NoFinalObs(PointReach):
        def step(self, action):
            res = super().step(action)
            res.final_obs = res.final_obs + 1.0  # differs from obs everywhere
            return res

    with pytest.raises(EnvProtocolError, match="final_obs"):
        check_env(NoFinalObs(2))


def test_reward_fn_can_disagree_with_ground_truth():
    env = PointReach(1, reward_fn=lambda pos, goal: torch.ones(pos.shape[0], dtype=torch.bool))
    env.reset(seed=0)
    env.pos[:] = torch.tensor([[0.9, 0.9]])
    env.goal[:] = torch.tensor([[-0.9, -0.9]])
    res = env.step(torch.zeros(1, 2))
    assert res.reward.item() == 1.0 and not env.gt_success.item() and env.success.item()


def test_evaluate_runs_exactly_the_requested_episodes_per_sub_env():
    env = PointReach(4, terminate_on_success=True)
    a = evaluate_policy(Oracle(), env, episodes=6, seed=3)
    b = evaluate_policy(Oracle(), env, episodes=6, seed=3)
    assert a["episodes"] == 6 and len(a["per_episode"]) == 6
    assert [ep["env_index"] for ep in a["per_episode"]] == [0, 0, 1, 1, 2, 3]
    assert episode_quota(6, 4) == [2, 2, 1, 1]
    assert a == b
    assert a["gt_success"] == 1.0 and a["length"] < 20
    assert evaluate_policy(RandomPolicy(), env, episodes=6, seed=3)["gt_success"] < 1.0


def test_logger_episodes_history_hooks_and_tensorboard(tmp_path):
    logger = RunLogger(tmp_path / "tb", progress=False, total_steps=10)
    calls = []
    logger.on_episodes.append(lambda eps, step: calls.append((len(eps), step)))
    eps = [
        {
            "return": 1.0,
            "length": 10,
            "success": True,
            "gt_success": False,
            "final_distance": 0.5,
            "env_index": 0,
        },
        {
            "return": 3.0,
            "length": 20,
            "success": True,
            "gt_success": True,
            "final_distance": 0.1,
            "env_index": 1,
        },
    ]
    summary = logger.episodes(eps, step=7)
    logger.scalar("losses/x", torch.tensor(2.0), 8)
    logger.close()
    assert summary["charts/episodic_return"] == 2.0 and summary["charts/episodic_length"] == 15
    assert summary["charts/success_rate"] == 1.0 and summary["charts/gt_success_rate"] == 0.5
    assert summary["reward/model_gt_agreement"] == 0.5
    assert summary["charts/final_distance"] == pytest.approx(0.3) and "charts/env_index" not in summary
    assert calls == [(2, 7)]
    assert logger.curve("losses/x") == [(8, 2.0)] and logger.history[0]["step"] == 7
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


# ---------------------------------------------------------------- configs
def test_overrides_on_the_configs():
    assert apply_overrides(SACConfig(), ["gamma=0.9"]).gamma == 0.9
    assert apply_overrides(PPOConfig(), ["target_kl=null"]).target_kl is None
    with pytest.raises(OverrideError, match="gamma"):
        apply_overrides(SACConfig(), ["gama=0.9"])
    with pytest.raises(OverrideError, match="clip_coef"):
        apply_overrides(PPOConfig(), ["clip_cof=0.1"])


def undocumented_fields(source: str, class_name: str) -> list[str]:
    """Fields of `class_name` not followed by a string literal (CleanRL's Args convention)."""
    cls = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef) and n.name == class_name)
    missing = []
    for stmt, nxt in zip(cls.body, [*cls.body[1:], None], strict=True):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            doc = (
                isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            )
            if not doc or not nxt.value.value.strip():
                missing.append(stmt.target.id)
    return missing


@pytest.mark.parametrize("module, cls", [(sac_mod, SACConfig), (ppo_mod, PPOConfig)])
def test_every_config_field_has_a_docstring(module, cls):
    source = Path(inspect.getsourcefile(module)).read_text()
    assert undocumented_fields(source, cls.__name__) == []
    assert len(fields(cls)) >= 20


def test_the_docstring_check_catches_a_missing_one():
    source = textwrap.dedent(
        '''
        class C:
            a: int = 1
            """documented"""
            b: int = 2
            c: int = 3
            """documented"""
        '''
    )
    assert undocumented_fields(source, "C") == ["b"]


def test_sac_config_defaults_follow_hil_serl():
    cfg = SACConfig()
    assert (cfg.gamma, cfg.init_temperature, cfg.batch_size, cfg.demo_ratio) == (0.97, 1e-2, 256, 0.5)
    assert cfg.layer_norm and cfg.num_min_qs == 2 and cfg.target_entropy is None
    assert math.isclose(PPOConfig().clip_coef, 0.2)


def _demo_buffer(n: int = 256) -> ReplayBuffer:
    """Transitions of a fixed expert on PointReach: the action points at the goal."""
    gen = torch.Generator().manual_seed(3)
    obs = torch.rand((n, 6), generator=gen) * 2 - 1
    actions = torch.clamp((obs[:, 2:4] - obs[:, 0:2]) * 2, -1, 1)
    buf = ReplayBuffer(n, 6, 2)
    buf.add(obs, actions, torch.zeros(n), obs, torch.zeros(n, dtype=torch.bool))
    return buf


def test_behaviour_cloning_pretrains_the_actor_on_the_demonstrations():
    torch.manual_seed(0)
    learner = SACLearner(6, 2, SACConfig(batch_size=64, hidden=[64, 64], actor_lr=1e-3, seed=0), "cpu")
    demos = _demo_buffer()
    before = float(learner._bc_loss(demos.obs, demos.actions))
    after = learner.pretrain_bc(demos, 300)
    assert after < before / 5, (before, after)


def test_the_bc_term_enters_the_actor_loss_only_with_demo_rows_and_a_weight():
    demos = _demo_buffer(64)
    batch = demos.sample(64, torch.Generator().manual_seed(0))
    with_bc = SACLearner(6, 2, SACConfig(batch_size=64, critic_actor_ratio=1, bc_weight=2.0), "cpu")
    assert "losses/bc_loss" in with_bc.update(batch, demo_rows=32)
    assert "losses/bc_loss" not in with_bc.update(batch, demo_rows=0)
    plain = SACLearner(6, 2, SACConfig(batch_size=64, critic_actor_ratio=1), "cpu")
    assert "losses/bc_loss" not in plain.update(batch, demo_rows=32)
