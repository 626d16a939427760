"""An asynchronous SAC learner for an actor that lives elsewhere (the rl_trainer node), HIL-SERL style.

The actor adds transitions (`add`) and acts with its own copy of the policy (`act`); a learner
thread samples the online buffer and the demonstration buffer (RLPD's symmetric batches),
runs `SACLearner.update`, and pushes the actor's parameters to the actor's copy every
`push_interval` updates. Updates never outrun the data: `utd_ratio` updates per transition
stored from `learning_starts` on.

Every stored row also keeps the stamp (nanoseconds) of its next observation, so that a row
can be traced to the frame (and the reward message) it came from. On disk, under
`directory` (`save` / `resume`): the SAC checkpoint of `rl.sac.save_sac` (policy, optimizers,
generator, `replay_buffer/`), the demonstration buffer in `demo_buffer/`, the stamps in
`stamps.safetensors` and counters in `trainer.json`. No pickle.
"""

from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reward_model_ros.rl.buffer import META as BUFFER_META
from reward_model_ros.rl.buffer import ReplayBuffer, sample_symmetric
from reward_model_ros.rl.checkpoint import POLICY_META, read_json, read_tensors, write_json
from reward_model_ros.rl.sac import LoopState, SACConfig, SACLearner, resume_sac, save_sac

log = logging.getLogger(__name__)

DEMO_DIR = "demo_buffer"
STAMPS = "stamps.safetensors"
COUNTERS = "trainer.json"
COUNTERS_VERSION = 1


class AsyncSAC:
    """SAC learner + replay buffers + the actor's policy copy, safe to use from two threads."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        cfg: SACConfig,
        push_interval: int = 50,
        demo_capacity: int = 100_000,
    ) -> None:
        self.cfg, self.push_interval = cfg, max(1, push_interval)
        self.learner = SACLearner(obs_dim, act_dim, cfg, cfg.device or "cpu")
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim, act_dim)
        self.demos = ReplayBuffer(demo_capacity, obs_dim, act_dim)
        self.stamps = torch.zeros(cfg.buffer_size, dtype=torch.int64)
        self.demo_stamps = torch.zeros(demo_capacity, dtype=torch.int64)
        self.env_steps = 0
        """transitions added (online and demo), including those of earlier runs"""
        self.episodes = 0
        self.pushes = 0
        self.metrics: dict[str, float] = {}
        self._data_lock = threading.Lock()  # buffers, stamps, counters
        self._learn_lock = threading.Lock()  # the learner's networks and optimizers
        self._actor_lock = threading.Lock()  # the actor's copy
        self.actor = copy.deepcopy(self.learner.actor).requires_grad_(False).cpu()
        self.actor_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.rng = np.random.default_rng(cfg.seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the actor's side ------------------------------------------------------------------
    def act(self, obs: np.ndarray) -> np.ndarray:
        """An action in [-1, 1]^act_dim: uniform random until learning_starts transitions, then
        a sample of the actor's copy of the policy (the parameters last pushed)."""
        if self.env_steps < self.cfg.learning_starts:
            return self.rng.uniform(-1.0, 1.0, self.learner.act_dim).astype(np.float32)
        with self._actor_lock, torch.no_grad():
            a = self.actor.act(torch.as_tensor(obs, dtype=torch.float32)[None], False, self.actor_gen)
        return a[0].numpy().astype(np.float32)

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        next_stamp_ns: int,
        demo: bool = False,
    ) -> None:
        """Store one transition (into the demonstration buffer when `demo`: a human's step)."""

        def t(x: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x, np.float32))[None]

        buf, stamps = (self.demos, self.demo_stamps) if demo else (self.buffer, self.stamps)
        with self._data_lock:
            row = buf.position
            buf.add(t(obs), t(action), t([reward])[0], t(next_obs), torch.tensor([bool(terminated)]))
            stamps[row] = int(next_stamp_ns)
            self.env_steps += 1

    def sizes(self) -> tuple[int, int]:
        with self._data_lock:
            return len(self.buffer), len(self.demos)

    # --- the learner thread ----------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._learn, name="sac-learner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _wanted_updates(self) -> int:
        """utd_ratio updates per transition stored from learning_starts on, as rl.sac's loop
        does: none to catch up for the transitions before it (a burst of hundreds of updates
        there would stall the actor for seconds)."""
        with self._data_lock:
            steps = self.env_steps
        if steps < self.cfg.learning_starts:
            return 0
        return int(self.cfg.utd_ratio * (steps - self.cfg.learning_starts + 1))

    def _learn(self) -> None:
        while not self._stop.is_set():
            if self.learner.num_updates >= self._wanted_updates():
                self._stop.wait(0.01)
                continue
            with self._data_lock:
                batch = sample_symmetric(
                    self.buffer, self.demos, self.cfg.batch_size, self.learner.gen, self.cfg.demo_ratio
                )
                demo_rows = (
                    round(self.cfg.batch_size * self.cfg.demo_ratio)
                    if len(self.demos) and len(self.buffer)
                    else 0
                )
            with self._learn_lock:
                metrics = self.learner.update(batch.to(self.learner.device), demo_rows)
                n = self.learner.num_updates
                if n % self.push_interval == 0:
                    self.push()
            if n % 100 == 0:
                self.metrics = {k: float(v) for k, v in metrics.items()}

    def push(self) -> None:
        """Copy the learner's actor into the actor's copy (called with _learn_lock held or idle)."""
        state = {k: v.detach().cpu().clone() for k, v in self.learner.actor.state_dict().items()}
        with self._actor_lock:
            self.actor.load_state_dict(state)
        self.pushes += 1

    # --- persistence -----------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        with self._learn_lock, self._data_lock:
            save_sac(
                directory, self.learner, self.buffer, LoopState(step=self.env_steps, metrics=self.metrics)
            )
            self.demos.save(directory / DEMO_DIR)
            from safetensors.torch import save_file

            tmp = directory / (STAMPS + ".tmp")
            save_file(
                {
                    "online_next_stamp_ns": self.stamps[: len(self.buffer)].contiguous(),
                    "demo_next_stamp_ns": self.demo_stamps[: len(self.demos)].contiguous(),
                },
                str(tmp),
            )
            tmp.replace(directory / STAMPS)
            counters = {"format_version": COUNTERS_VERSION, "env_steps": self.env_steps}
            counters |= {"episodes": self.episodes, "updates": self.learner.num_updates}
            write_json(directory / COUNTERS, counters)
        return directory

    @staticmethod
    def saved_in(directory: str | Path) -> bool:
        return (Path(directory) / POLICY_META).is_file() and (Path(directory) / COUNTERS).is_file()

    def resume(self, directory: str | Path) -> None:
        """Continue from `save(directory)`: networks, optimizers, both buffers, stamps, counters."""
        directory = Path(directory)
        with self._learn_lock, self._data_lock:
            _, buffer = resume_sac(directory, self.learner)
            if buffer is not None:
                self.buffer = buffer
            if (directory / DEMO_DIR / BUFFER_META).is_file():
                self.demos = ReplayBuffer.load(directory / DEMO_DIR)
            stamps = read_tensors(directory / STAMPS)
            self.stamps = torch.zeros(self.buffer.capacity, dtype=torch.int64)
            self.demo_stamps = torch.zeros(self.demos.capacity, dtype=torch.int64)
            self.stamps[: len(self.buffer)] = stamps["online_next_stamp_ns"]
            self.demo_stamps[: len(self.demos)] = stamps["demo_next_stamp_ns"]
            counters = read_json(directory / COUNTERS, COUNTERS_VERSION, what="an rl_trainer output")
            self.env_steps, self.episodes = int(counters["env_steps"]), int(counters["episodes"])
        self.push()


def load_transitions(directory: str | Path, demo: bool = False) -> dict[str, np.ndarray]:
    """The transitions saved by `AsyncSAC.save` (the online buffer, or the demonstration buffer
    when `demo`) with their next-observation stamps, for tests and offline inspection: obs,
    actions, rewards, next_obs, dones, next_stamp_ns."""
    directory = Path(directory)
    buf = ReplayBuffer.load(directory / (DEMO_DIR if demo else "replay_buffer"))
    stamps = read_tensors(directory / STAMPS)["demo_next_stamp_ns" if demo else "online_next_stamp_ns"]
    n = len(buf)
    out = {f: getattr(buf, f)[:n].numpy() for f in ("obs", "actions", "rewards", "next_obs", "dones")}
    out["next_stamp_ns"] = stamps.numpy()
    return out
