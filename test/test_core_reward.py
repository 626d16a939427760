"""Reward mapping: truth tables for every mode, debounce, fusion."""

from __future__ import annotations

import itertools

import pytest

from reward_model_ros.core.config import ConfigError
from reward_model_ros.core.reward import (
    Debouncer,
    RewardConfig,
    RewardMapper,
    combine,
    decide,
    fuse,
    step_reward,
)


def test_decision_is_inclusive_at_the_threshold():
    assert decide(0.5, 0.5) and decide(0.51, 0.5) and not decide(0.49, 0.5)
    assert decide(0.0, 0.0) and not decide(0.99, 1.0)


# (reward_mode, success, last_step) -> model reward, with success_reward=2, fail_reward=-1
STEP_TABLE = {
    ("per_step", True, False): 2.0,
    ("per_step", True, True): 2.0,
    ("per_step", False, False): -1.0,
    ("per_step", False, True): -1.0,
    ("terminal", True, False): 0.0,
    ("terminal", True, True): 2.0,
    ("terminal", False, False): 0.0,
    ("terminal", False, True): -1.0,
}


@pytest.mark.parametrize(("key", "expected"), sorted(STEP_TABLE.items()))
def test_step_reward_truth_table(key, expected):
    mode, success, last = key
    cfg = RewardConfig(reward_mode=mode, success_reward=2.0, fail_reward=-1.0)
    assert step_reward(success, last, cfg) == expected


# (combine_mode, model, env) -> combined, with reward_weight=0.5, env_reward_weight=2
COMBINE_TABLE = {
    ("replace", 1.0, 3.0): 1.0,
    ("replace", 0.0, None): 0.0,
    ("add", 1.0, 3.0): 4.0,
    ("add", 1.0, None): 1.0,
    ("weighted", 1.0, 3.0): 6.5,
    ("weighted", 0.0, 3.0): 6.0,
    ("weighted", 1.0, None): 0.5,
}


@pytest.mark.parametrize(("key", "expected"), sorted(COMBINE_TABLE.items(), key=str))
def test_combine_truth_table(key, expected):
    mode, model, env = key
    cfg = RewardConfig(combine_mode=mode, reward_weight=0.5, env_reward_weight=2.0)
    assert combine(model, env, cfg) == expected


def test_debounce_needs_k_consecutive_frames_and_resets():
    d = Debouncer(3)
    assert [d.update(x) for x in (True, True, False, True, True, True, True)] == [
        False,
        False,
        False,
        False,
        False,
        True,
        True,
    ]
    d.reset()
    assert d.update(True) is False


def test_mapper_stream_terminal_with_debounce():
    mapper = RewardMapper(RewardConfig(reward_mode="terminal", reward_threshold=0.6, debounce_frames=2))
    probs = [0.1, 0.7, 0.8, 0.9]
    out = [mapper.step(p, last_step=(i == len(probs) - 1)) for i, p in enumerate(probs)]
    assert out == [(False, 0.0), (False, 0.0), (True, 0.0), (True, 1.0)]
    mapper.reset()
    assert mapper.step(0.9, last_step=True) == (False, 0.0)  # debounce restarted with the episode


def test_mapper_per_step_weighted_with_env_reward():
    cfg = RewardConfig(combine_mode="weighted", reward_weight=0.5, env_reward_weight=0.25)
    mapper = RewardMapper(cfg)
    assert mapper.step(0.9, env_reward=4.0) == (True, 0.5 * 1.0 + 0.25 * 4.0)
    assert mapper.step(0.1, env_reward=4.0) == (False, 1.0)


def test_every_mode_combination_is_accepted():
    for mode, comb in itertools.product(("per_step", "terminal"), ("replace", "add", "weighted")):
        RewardMapper(RewardConfig(reward_mode=mode, combine_mode=comb))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reward_mode": "episodic"}, r"reward_mode='episodic': must be one of per_step, terminal"),
        ({"combine_mode": "mul"}, r"combine_mode='mul'"),
        ({"reward_threshold": 1.2}, r"reward_threshold=1.2"),
        ({"debounce_frames": 0}, r"debounce_frames=0"),
    ],
)
def test_bad_reward_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RewardConfig(**kwargs).validate()


def test_fuse():
    assert fuse([0.2, 0.8], "mean") == pytest.approx(0.5)
    # logit: the mean of the logits, so symmetric odds cancel and a camera at 0.5 halves the
    # other's logit instead of pulling its probability halfway to 0.5
    assert fuse([0.2, 0.8], "logit") == pytest.approx(0.5)
    assert fuse([0.9, 0.5], "logit") == pytest.approx(0.75)  # sigmoid(log(9) / 2) = 3 / 4
    assert fuse([0.9, 0.5], "mean") == pytest.approx(0.7)
    assert fuse([0.37], "logit") == 0.37
    assert 0.0 < fuse([1.0, 0.0, 1.0], "logit") < 1.0  # saturated cameras stay finite
    assert fuse([0.2, 0.8], "min") == 0.2 and fuse([0.2, 0.8], "max") == 0.8
    with pytest.raises(ConfigError, match="camera_fusion='median'"):
        fuse([0.1], "median")
    with pytest.raises(ValueError):
        fuse([], "mean")
