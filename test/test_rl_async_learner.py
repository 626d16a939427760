"""rl.async_learner without ROS: the learner thread, parameter pushes, save and resume with stamps."""

from __future__ import annotations

import time

import numpy as np
import torch

from reward_model_ros.rl.async_learner import AsyncSAC, load_transitions
from reward_model_ros.rl.sac import SACConfig

CFG = SACConfig(learning_starts=8, batch_size=8, buffer_size=64, hidden=[16, 16], seed=3)


def fill(sac: AsyncSAC, n: int, demo: bool = False) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        obs, nxt = rng.normal(size=5), rng.normal(size=5)
        sac.add(obs, sac.act(obs), float(i), nxt, i % 7 == 0, next_stamp_ns=1_000 + i, demo=demo)


def test_learner_thread_updates_within_the_data_and_pushes_parameters():
    sac = AsyncSAC(5, 4, CFG, push_interval=4)
    before = {k: v.clone() for k, v in sac.actor.state_dict().items()}
    fill(sac, 20)
    fill(sac, 5, demo=True)
    sac.start()
    deadline = time.monotonic() + 30
    while sac.learner.num_updates < 18 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    sac.stop()
    # utd_ratio 1: one update per transition from learning_starts (8) on, no more, no catch-up
    assert sac.learner.num_updates == 25 - 8 + 1
    assert sac.pushes == 18 // 4  # every push_interval (4) updates
    after = sac.actor.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert sac.sizes() == (20, 5)


def test_save_and_resume_keep_buffers_stamps_and_counters(tmp_path):
    sac = AsyncSAC(5, 4, CFG)
    fill(sac, 12)
    fill(sac, 3, demo=True)
    sac.episodes = 2
    sac.save(tmp_path / "ckpt")
    assert AsyncSAC.saved_in(tmp_path / "ckpt")
    rows = load_transitions(tmp_path / "ckpt")
    assert rows["next_stamp_ns"].tolist() == [1_000 + i for i in range(12)]
    assert rows["rewards"].tolist() == [float(i) for i in range(12)]
    again = AsyncSAC(5, 4, CFG)
    again.resume(tmp_path / "ckpt")
    assert (again.env_steps, again.episodes, again.sizes()) == (15, 2, (12, 3))
    assert again.stamps[:12].tolist() == rows["next_stamp_ns"].tolist()
    assert torch.equal(again.buffer.obs[:12], sac.buffer.obs[:12])
    fill(again, 1)  # the ring goes on where it stopped
    assert again.stamps[12].item() == 1_000 and len(again.buffer) == 13
