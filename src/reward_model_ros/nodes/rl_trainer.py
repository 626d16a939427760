"""rl_trainer: off-policy SAC (RLPD / HIL-SERL form) on the ROS graph, with the learned reward.

Actor (its own thread): starts each episode through a ResetEpisode service (the bridge's
`~/reset`; the adapter's on a robot), then for step k = 0, 1, ... (from the episode's START)
publishes a PolicyAction (episode_index, step=k) for the observation of step k (`state`,
ObservationVector) and waits for the observation of step k+1 and for the RewardStamped whose
header stamp equals that observation's stamp: the reward is paired to its frame by the copied
stamp, never by arrival order. The transition (s_k, a_k, r_{k+1}, s_{k+1}, terminated) goes
to the replay buffer; terminated = the reward's success decision when terminate_on_success;
the episode is truncated after max_episode_steps.

Episode start (`episode_start`): `event` (simulation): step 0 is the observation stamped like
the START EpisodeEvent that the reset's server (maniskill_bridge) publishes, and the server
announces the episode's end too. `first_observation` (a robot: franka_adapter's `~/reset`
only moves the arm, and arm_observer publishes the observations at its own rate): step 0 is
the first observation received after the reset answered, step k+1 the first one received
after step k's action went out (older ones, which cannot show the action's effect, are not
used), and the trainer announces the episode itself: START (stamped like step 0, mode
"policy", `task`), then SUCCESS (terminate_on_success), TIMEOUT at max_episode_steps (label:
the reward model's decision on the last frame) or ABORT, as the recorder needs them. No
observation within `step_timeout` (a stale arm pose, a stopped camera) aborts the episode.
A checkpoint due between episodes is written while the reset runs.

Faults: no reward within `reward_timeout` s aborts the episode (an error log line and an
ABORT EpisodeEvent); the learner never gets a made-up reward, and the transitions before it
are kept. A RewardStamped with valid=false (a frame the classifier could not judge) is by
default treated the same way (`invalid_reward: abort`); `skip` keeps the episode going and
stores no transition for that step.

Learner (its own thread, rl.async_learner.AsyncSAC): SAC updates from the online buffer and
the demonstration buffer; the actor's copy of the policy is refreshed every
`param_push_interval` updates. A teleop topic (PolicyAction) overrides the policy while its
messages keep arriving (within `intervention_timeout`); those steps go into the demonstration
buffer. Checkpoints (policy, optimizers, buffers, stamps) go to `output_dir` every
`checkpoint_interval` s and at shutdown; a restart with the same output_dir resumes.
Ground truth (SuccessLabel, source simulation) feeds only the reward-hacking monitor.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.node import Node
from reward_msgs.msg import EpisodeEvent, ObservationVector, PolicyAction, RewardStamped, SuccessLabel
from reward_msgs.srv import ResetEpisode
from std_msgs.msg import Header

from reward_model_ros.core.stamps import NS_PER_S, stamp_ns
from reward_model_ros.nodes._run import Finished, spin_node
from reward_model_ros.nodes.params import (
    Param,
    ParameterError,
    at_least,
    declare_parameters,
    device_name,
    in_range,
    non_negative,
    one_of,
    optional_topic,
    positive,
    topic_name,
)
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.diagnostics import OK, WARN, Diagnostics

NODE_NAME = "rl_trainer"
ACT_DIMS = {"pd_ee_delta_pos": 4, "pd_ee_delta_pose": 7}
EPISODE_STARTS = ("event", "first_observation")
KEEP = 2000  # states / rewards / labels kept by stamp

PARAMETERS = (
    Param(
        "state_topic",
        "state",
        "reward_msgs/ObservationVector input (one per step)",
        topic_name,
        read_only=True,
    ),
    Param(
        "reward_topic", "reward", "reward_msgs/RewardStamped input (reward_node)", topic_name, read_only=True
    ),
    Param(
        "episode_event_topic",
        "episode/event",
        "reward_msgs/EpisodeEvent in and out",
        topic_name,
        read_only=True,
    ),
    Param("action_topic", "action", "reward_msgs/PolicyAction output", topic_name, read_only=True),
    Param(
        "ground_truth_topic",
        "success_label",
        "SuccessLabel (source simulation) for the reward-hacking monitor only; empty = none",
        optional_topic,
        read_only=True,
    ),
    Param(
        "teleop_topic",
        "",
        "PolicyAction from a person that overrides the policy (HIL-SERL interventions); empty = none",
        optional_topic,
        read_only=True,
    ),
    Param(
        "reset_service",
        "/maniskill_bridge/reset",
        "ResetEpisode service that starts an episode",
        read_only=True,
    ),
    Param(
        "episode_start",
        "event",
        "event (wait for the reset's START EpisodeEvent, as maniskill_bridge sends) | first_observation "
        "(a robot: the first observation after the reset is step 0; the trainer publishes START and the "
        "end events itself)",
        one_of(*EPISODE_STARTS),
        read_only=True,
    ),
    Param(
        "task", "", "task name in the EpisodeEvents the trainer publishes (episode_start first_observation)"
    ),
    Param(
        "control_mode",
        "pd_ee_delta_pos",
        "action space: pd_ee_delta_pos (3 position deltas + gripper) | pd_ee_delta_pose (+ 3 rotations)",
        one_of(*ACT_DIMS),
        read_only=True,
    ),
    Param(
        "position_scale", 0.1, "metres per step of a full-scale (1.0) policy action", positive, read_only=True
    ),
    Param("rotation_scale", 0.1, "radians per step of a full-scale policy action", positive, read_only=True),
    Param("frame_id", "world", "frame of the published deltas (empty: the receiver's base frame)"),
    Param("max_episode_steps", 100, "steps after which an episode is truncated", at_least(1)),
    Param("terminate_on_success", True, "the reward's success decision ends the episode (terminal)"),
    Param("reward_timeout", 5.0, "seconds to wait for a step's reward before aborting the episode", positive),
    Param(
        "step_timeout", 10.0, "seconds to wait for the next observation before aborting the episode", positive
    ),
    Param("reset_timeout", 60.0, "seconds to wait for a reset and the episode's first observation", positive),
    Param(
        "invalid_reward",
        "abort",
        "a RewardStamped with valid=false: abort (the episode, like a missing reward) | skip (store no "
        "transition for that step, go on)",
        one_of("abort", "skip"),
    ),
    Param(
        "intervention_timeout", 0.5, "teleop counts as active this long after its last message, s", positive
    ),
    Param(
        "total_steps", 0, "stop acting after this many transitions (0: never)", at_least(0), read_only=True
    ),
    Param(
        "exit_when_done",
        False,
        "exit (after the final checkpoint) when total_steps is reached",
        read_only=True,
    ),
    Param(
        "output_dir",
        "runs/rl_trainer",
        "checkpoint/ and tensorboard/ go here; resumes from it",
        read_only=True,
    ),
    Param("checkpoint_interval", 300.0, "seconds between checkpoints (0: only at shutdown)", non_negative),
    Param("param_push_interval", 50, "learner updates between pushes of the actor's parameters", at_least(1)),
    Param("learning_starts", 1000, "random actions until this many transitions", at_least(1), read_only=True),
    Param("batch_size", 256, "SAC batch size", at_least(1), read_only=True),
    Param("buffer_size", 1_000_000, "online replay buffer capacity", at_least(1), read_only=True),
    Param(
        "demo_bags",
        [],
        "episode bags (folders, or folders holding them) whose successful episodes seed the demonstration "
        "buffer at a fresh start: state, applied action (stamped like the frame it led to) and the "
        "RewardStamped recorded per frame",
        read_only=True,
        array_type="string",
    ),
    Param("demo_state_topic", "/state", "demo_bags: the ObservationVector topic", read_only=True),
    Param(
        "demo_action_topic",
        "/applied_action",
        "demo_bags: the PolicyAction topic, stamped like the frame it led to (maniskill_bridge)",
        read_only=True,
    ),
    Param("demo_reward_topic", "/reward", "demo_bags: the RewardStamped topic", read_only=True),
    Param(
        "demo_buffer_size",
        100_000,
        "demonstration (intervention) buffer capacity",
        at_least(1),
        read_only=True,
    ),
    Param(
        "demo_ratio",
        0.5,
        "share of each batch from the demonstration buffer (RLPD)",
        in_range(0.0, 1.0),
        read_only=True,
    ),
    Param(
        "utd_ratio",
        1.0,
        "critic updates per stored transition (upper bound)",
        in_range(0.0, 100.0),
        read_only=True,
    ),
    Param("critic_actor_ratio", 2, "critic updates per actor update", at_least(1), read_only=True),
    Param("gamma", 0.97, "discount", in_range(0.0, 1.0), read_only=True),
    Param("hidden", [256, 256], "hidden layer widths of actor and critics", read_only=True),
    Param("init_temperature", 0.01, "initial SAC temperature", positive, read_only=True),
    Param("seed", 1, "seed of the learner and of the random actions", at_least(0), read_only=True),
    Param("device", "cpu", "learner device: cpu | cuda | cuda:N", device_name, read_only=True),
    Param("log_interval", 10.0, "seconds between TensorBoard loss records", positive),
)


class RLTrainerNode(Node):
    def __init__(self, **node_kwargs) -> None:  # node_kwargs: rclpy Node's (context, parameter_overrides)
        super().__init__(NODE_NAME, **node_kwargs)
        self.p = p = declare_parameters(self, PARAMETERS, on_change=lambda changes: self.p.update(changes))
        self.act_dim = ACT_DIMS[p["control_mode"]]
        self.out = Path(p["output_dir"])
        self.ckpt_dir = self.out / "checkpoint"
        reliable = qos_profiles.reliable(100)
        self._cv = threading.Condition()
        self.states: OrderedDict[int, np.ndarray] = OrderedDict()
        self.arrivals: OrderedDict[int, float] = OrderedDict()  # stamp -> receipt time (monotonic)
        self.own_events: set[tuple] = set()  # what this node published: not "ended by others"
        self.robot = p["episode_start"] == "first_observation"
        self.rewards: OrderedDict[int, RewardStamped] = OrderedDict()
        self.gt: OrderedDict[int, bool] = OrderedDict()
        self.events: list[EpisodeEvent] = []
        self.teleop: tuple[float, PolicyAction] | None = None
        self.counts = dict.fromkeys(
            (
                "steps",
                "episodes",
                "aborted",
                "rewards_missing",
                "rewards_invalid",
                "observations_missing",
                "interventions",
            ),
            0,
        )
        self.sac = None  # built at the first observation (its size comes from there)
        self.logger = None
        self.monitor = None
        self.action_pub = self.create_publisher(PolicyAction, p["action_topic"], reliable)
        self.event_pub = self.create_publisher(EpisodeEvent, p["episode_event_topic"], reliable)
        self.create_subscription(ObservationVector, p["state_topic"], self._on_state, reliable)
        self.create_subscription(RewardStamped, p["reward_topic"], self._on_reward, reliable)
        self.create_subscription(EpisodeEvent, p["episode_event_topic"], self._on_event, reliable)
        if p["ground_truth_topic"]:
            self.create_subscription(SuccessLabel, p["ground_truth_topic"], self._on_label, reliable)
        if p["teleop_topic"]:
            self.create_subscription(PolicyAction, p["teleop_topic"], self._on_teleop, reliable)
        self.reset_client = self.create_client(ResetEpisode, p["reset_service"])
        self.diagnostics = Diagnostics(self, "rl trainer", self._health)
        self.finished = Finished(self)
        self._stop = threading.Event()
        self._last_save = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rl-actor", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"SAC on {p['state_topic']} with rewards from {p['reward_topic']} (paired by stamp); actions on "
            f"{p['action_topic']}; episodes via {p['reset_service']}; output in {self.out}"
        )

    # --- callbacks: store by stamp, wake the actor ------------------------------------------
    def _remember(self, table: OrderedDict, key: int, value) -> None:
        with self._cv:
            table[key] = value
            while len(table) > KEEP:
                table.popitem(last=False)
            self._cv.notify_all()

    def _on_state(self, msg: ObservationVector) -> None:
        t = stamp_ns(msg.header.stamp)
        with self._cv:
            self.arrivals[t] = time.monotonic()
            while len(self.arrivals) > KEEP:
                self.arrivals.popitem(last=False)
        self._remember(self.states, t, np.asarray(msg.data, np.float32))

    def _on_reward(self, msg: RewardStamped) -> None:
        if not msg.terminal:  # terminal-mode repeats carry the same stamp: the per-step one counts
            self._remember(self.rewards, stamp_ns(msg.header.stamp), msg)

    def _on_label(self, msg: SuccessLabel) -> None:
        if msg.source == SuccessLabel.SOURCE_SIMULATION:
            self._remember(self.gt, stamp_ns(msg.header.stamp), bool(msg.success))

    def _on_event(self, msg: EpisodeEvent) -> None:
        with self._cv:
            key = _event_key(msg)
            if key in self.own_events:  # our own, looped back
                self.own_events.discard(key)
                return
            self.events.append(msg)
            del self.events[:-100]
            self._cv.notify_all()

    def _on_teleop(self, msg: PolicyAction) -> None:
        with self._cv:
            self.teleop = (time.monotonic(), msg)

    def _wait(self, predicate, timeout: float):
        """predicate() (under the lock) once it is not None, or None after `timeout` / at shutdown."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self._stop.is_set():
                got = predicate()
                if got is not None:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cv.wait(min(left, 0.1))
        return None

    # --- the actor ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._resume()
            self._wait_for_inputs()
            self._build_before_the_first_episode()
            while not self._stop.is_set() and self.context.ok():
                if (
                    self.p["total_steps"]
                    and self.sac is not None
                    and self.sac.env_steps >= self.p["total_steps"]
                ):
                    self.get_logger().info(f"total_steps={self.p['total_steps']} reached")
                    self._save()
                    if self.p["exit_when_done"]:
                        self.finished.set()
                    return
                start = self._reset()  # a checkpoint that is due is written meanwhile
                if start is not None:
                    self._episode(*start)
        except Exception as exc:  # the actor must say why it stopped
            if self._stop.is_set() or not self.context.ok():
                return  # shutting down
            self.get_logger().error(f"actor stopped: {type(exc).__name__}: {exc}")
            raise

    def _build_before_the_first_episode(self) -> None:
        """Build the learner from an observation seen before the first reset (if one comes
        within 5 s): building it takes ~2 s, and inside the first episode a free-running
        bridge or robot would step on meanwhile (measured: the first episode's actions 2 s
        late, catching up over 20 steps, bench/rl_ros.py)."""
        if self.sac is not None:
            return
        with self._cv:
            self._cv.wait_for(lambda: bool(self.states) or self._stop.is_set(), timeout=5.0)
            obs = next(reversed(self.states.values()), None)
        if obs is not None:
            self._ensure_learner(obs.shape[0])

    def _wait_for_inputs(self) -> None:
        """Before the first episode: until the observation and reward topics have publishers
        (and a moment for DDS to match them), so that the first episode's frames are not lost."""
        topics = [self.resolve_topic_name(self.p[k]) for k in ("state_topic", "reward_topic")]
        last_log = time.monotonic()
        while not self._stop.is_set():
            waiting = [t for t in topics if self.count_publishers(t) == 0]
            if not waiting:
                self._stop.wait(1.0)
                return
            if time.monotonic() - last_log > 10.0:
                last_log = time.monotonic()
                self.get_logger().info(f"waiting for publishers on {', '.join(waiting)}")
            self._stop.wait(0.1)

    def _reset(self) -> tuple[int, int, np.ndarray] | None:
        """Reset through the service; (episode, stamp of its first observation, observation)."""
        timeout = self.p["reset_timeout"]
        deadline = time.monotonic() + timeout
        while not self.reset_client.wait_for_service(timeout_sec=0.5):
            if self._stop.is_set():
                return None
            if time.monotonic() > deadline:
                self.get_logger().warning(f"no reset service {self.p['reset_service']} within {timeout:g} s")
                return None
        done = threading.Event()
        answered_at: list[float] = []
        future = self.reset_client.call_async(ResetEpisode.Request())
        future.add_done_callback(lambda _: (answered_at.append(time.monotonic()), done.set()))
        self._maybe_save()  # while the arm (or the simulation) resets, not while it waits for actions
        while not done.wait(0.1):
            if self._stop.is_set() or not self.context.ok():
                return None
            if time.monotonic() > deadline:
                self.get_logger().warning(f"{self.p['reset_service']} did not answer within {timeout:g} s")
                return None
        if future.result() is None:
            return None
        answer = future.result()
        if not answer.accepted:
            self.get_logger().warning(f"reset refused: {answer.message}")
            time.sleep(1.0)
            return None
        episode = int(answer.episode_index)
        if self.robot:
            return self._start_at_first_observation(episode, answered_at[0], timeout)

        def first():
            for e in reversed(self.events):
                if e.event == EpisodeEvent.START and e.episode_index == episode:
                    t0 = stamp_ns(e.header.stamp)
                    return (t0, self.states[t0]) if t0 in self.states else None
            return None

        got = self._wait(first, timeout)
        if got is None:
            self.get_logger().error(
                f"episode {episode}: no START event and first observation within {timeout:g} s"
            )
            return None
        self._ensure_learner(got[1].shape[0])
        return episode, got[0], got[1]

    def _start_at_first_observation(
        self, episode: int, answered_at: float, timeout: float
    ) -> tuple[int, int, np.ndarray] | None:
        """episode_start first_observation: step 0 is the first observation received after the
        reset answered; announce the episode (START, stamped like it)."""
        got = self._wait(lambda: self._first_after(-1, answered_at), timeout)
        if got is None:
            self.get_logger().error(
                f"episode {episode}: no observation on {self.p['state_topic']} within reset_timeout="
                f"{timeout:g} s after the reset: is arm_observer running, with camera frames and a fresh "
                "arm pose?"
            )
            return None
        t0 = got
        obs = self.states[t0]
        self._ensure_learner(obs.shape[0])
        self._publish_event(
            EpisodeEvent(
                header=_header(t0),
                event=EpisodeEvent.START,
                episode_index=episode,
                task=self.p["task"],
                mode="policy",
                step=0,
                message="the first observation after the reset",
            )
        )
        return episode, t0, obs

    def _first_after(self, stamp: int, received_after: float | None = None) -> int | None:
        """(under the lock) the oldest observation stamped after `stamp` (and, unless None,
        received after `received_after`, monotonic), or None."""
        later = [
            t
            for t in self.states
            if t > stamp and (received_after is None or self.arrivals.get(t, -1.0) > received_after)
        ]
        return min(later) if later else None

    def _publish_event(self, msg: EpisodeEvent) -> None:
        with self._cv:
            self.own_events.add(_event_key(msg))
            if len(self.own_events) > 100:
                self.own_events.pop()
        self.event_pub.publish(msg)

    def _resume(self) -> None:
        """Continue at once from a checkpoint in output_dir (its size says the observation size)."""
        from reward_model_ros.rl.async_learner import AsyncSAC
        from reward_model_ros.rl.checkpoint import read_policy_meta

        if AsyncSAC.saved_in(self.ckpt_dir):
            self._ensure_learner(int(read_policy_meta(self.ckpt_dir)["obs_dim"]))

    def _ensure_learner(self, obs_dim: int) -> None:
        if self.sac is not None:
            if obs_dim != self.sac.learner.obs_dim:
                raise ParameterError(f"observation size changed from {self.sac.learner.obs_dim} to {obs_dim}")
            return
        from reward_model_ros.rl.async_learner import AsyncSAC
        from reward_model_ros.rl.logger import RunLogger
        from reward_model_ros.rl.monitor import RewardHackingMonitor
        from reward_model_ros.rl.sac import SACConfig

        p = self.p
        cfg = SACConfig(
            learning_starts=p["learning_starts"],
            batch_size=p["batch_size"],
            buffer_size=p["buffer_size"],
            gamma=p["gamma"],
            utd_ratio=p["utd_ratio"],
            critic_actor_ratio=p["critic_actor_ratio"],
            hidden=list(p["hidden"]),
            demo_ratio=p["demo_ratio"],
            init_temperature=p["init_temperature"],
            seed=p["seed"],
            device=p["device"],
        )
        sac = AsyncSAC(obs_dim, self.act_dim, cfg, p["param_push_interval"], p["demo_buffer_size"])
        if AsyncSAC.saved_in(self.ckpt_dir):
            sac.resume(self.ckpt_dir)
            self.get_logger().info(
                f"resumed from {self.ckpt_dir}: {sac.env_steps} transitions, "
                f"{sac.learner.num_updates} updates"
            )
        elif p["demo_bags"]:
            self._seed_from_bags(sac)
        self.logger = RunLogger(self.out / "tensorboard")
        if p["ground_truth_topic"]:
            self.monitor = RewardHackingMonitor(self.out / "disagreements")
            self.logger.on_episodes.append(self._monitor_episodes)
        self.sac = sac
        self._last_log = time.monotonic()
        sac.start()

    def _seed_from_bags(self, sac) -> None:
        """The successful episode bags of `demo_bags` into the demonstration buffer, with the
        rewards recorded beside their frames (a fresh start only: a resumed run has them)."""
        from reward_model_ros.data.bags import BagError
        from reward_model_ros.rl.demos import recorded_transitions

        p = self.p
        try:
            rows, episodes = recorded_transitions(
                [Path(b) for b in p["demo_bags"]],
                self._normalised,
                p["terminate_on_success"],
                p["demo_state_topic"],
                p["demo_action_topic"],
                p["demo_reward_topic"],
            )
        except BagError as exc:
            raise ParameterError(f"demo_bags: {exc}") from exc
        size = sac.learner.obs_dim
        fits = [r for r in rows if r[0].shape[0] == size and r[3].shape[0] == size]
        if len(fits) < len(rows):
            self.get_logger().error(
                f"demo_bags: {len(rows) - len(fits)} transitions left out: their observations have "
                f"{rows[0][0].shape[0]} values, the live ones {size} (bags of another task or robot?)"
            )
        for obs, action, reward, nxt, done, stamp in fits:
            sac.add(obs, action, reward, nxt, done, stamp, demo=True)
        rows = fits
        log = self.get_logger().info if rows else self.get_logger().warning
        log(f"demo_bags: {len(rows)} transitions from {episodes} successful episode(s) into the demo buffer")

    def _monitor_episodes(self, episodes: list[dict], step: int) -> None:
        """RunLogger hook: the episodes with ground truth go to the reward-hacking monitor."""
        known = [e for e in episodes if "gt_success" in e]
        if known:
            self.logger.scalars(self.monitor.on_episodes(known, step), step)

    def _action(self, obs: np.ndarray) -> tuple[np.ndarray, bool]:
        """The normalised action for `obs`, and whether a person gave it."""
        with self._cv:
            teleop = self.teleop
        if teleop is not None and time.monotonic() - teleop[0] <= self.p["intervention_timeout"]:
            m = teleop[1]
            d, o = m.delta_position, m.delta_orientation
            a = self._normalised(np.array([d.x, d.y, d.z]), np.array([o.x, o.y, o.z]), m.gripper)
            if np.all(np.isfinite(a)):
                return a, True
        return self.sac.act(obs), False

    def _normalised(self, dp: np.ndarray, drot: np.ndarray, gripper: float) -> np.ndarray:
        """A PolicyAction's deltas (m, rad) as the policy's action in [-1, 1]."""
        parts = [dp / self.p["position_scale"]]
        if self.act_dim == 7:
            parts.append(drot / self.p["rotation_scale"])
        return np.clip(np.concatenate([*parts, [gripper]]), -1.0, 1.0).astype(np.float32)

    def _publish_action(self, episode: int, step: int, a: np.ndarray) -> None:
        msg = PolicyAction(episode_index=episode, step=step)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.p["frame_id"]
        dp = a[:3] * self.p["position_scale"]
        msg.delta_position.x, msg.delta_position.y, msg.delta_position.z = (float(v) for v in dp)
        if self.act_dim == 7:
            dr = a[3:6] * self.p["rotation_scale"]
            msg.delta_orientation.x, msg.delta_orientation.y, msg.delta_orientation.z = (float(v) for v in dr)
        msg.gripper = float(a[-1])
        self.action_pub.publish(msg)

    def _ended_by_others(self, episode: int) -> EpisodeEvent | None:
        for e in reversed(self.events):
            if e.episode_index == episode and e.event != EpisodeEvent.START:
                return e
        return None

    def _episode(self, episode: int, stamp: int, obs: np.ndarray) -> None:
        p = self.p
        k, ret, model_success, length = 0, 0.0, False, 0
        stamps = [stamp]
        end = "truncated"
        last_success = False  # the model's decision on the latest judged frame
        while True:
            if self._stop.is_set():  # shutting down (Ctrl-C): not a missing input, not a timeout
                end = "stopped"
                break
            action, human = self._action(obs)
            self.counts["interventions"] += human
            self._publish_action(episode, k, action)
            acted_at = time.monotonic() if self.robot else None

            def next_state(after=stamp, acted_at=acted_at):
                t = self._first_after(after, acted_at)
                if t is not None:
                    return ("state", t)
                other = self._ended_by_others(episode)
                return ("event", other) if other is not None else None

            got = self._wait(next_state, p["step_timeout"])
            if got is None and self._stop.is_set():
                end = "stopped"
                break
            if got is None and self.robot:
                self.counts["observations_missing"] += 1
                self._abort(
                    episode,
                    k + 1,
                    f"no observation for step {k + 1} within step_timeout={p['step_timeout']:g} s: is "
                    "arm_observer publishing (a stale arm pose or a stopped camera stops it)?",
                )
                end = "aborted"
                break
            if got is None or got[0] == "event":
                why = (
                    f"the episode ended elsewhere: {got[1].message or got[1].event}"
                    if got
                    else f"no observation for step {k + 1} within step_timeout={p['step_timeout']:g} s"
                )
                self.get_logger().warning(f"episode {episode}: {why}")
                end = "elsewhere"
                break
            next_stamp = got[1]
            next_obs = self.states[next_stamp]
            reward = self._wait(lambda t=next_stamp: self.rewards.get(t), p["reward_timeout"])
            if reward is None and self._stop.is_set():
                end = "stopped"
                break
            if reward is None:
                self.counts["rewards_missing"] += 1
                self._abort(
                    episode,
                    k + 1,
                    f"no reward for the frame of step {k + 1} (stamp {next_stamp} ns) within reward_timeout="
                    f"{p['reward_timeout']:g} s: is reward_node running (dead or late)?",
                )
                end = "aborted"
                break
            if not reward.valid:
                self.counts["rewards_invalid"] += 1
                if p["invalid_reward"] == "abort":
                    self._abort(
                        episode,
                        k + 1,
                        f"the frame of step {k + 1} could not be judged: {reward.invalid_reason}",
                    )
                    end = "aborted"
                    break
                terminated = False
            else:
                terminated = bool(p["terminate_on_success"] and reward.success)
                self.sac.add(obs, action, float(reward.reward), next_obs, terminated, next_stamp, demo=human)
                self.counts["steps"] += 1
                ret += float(reward.reward)
                length += 1
                model_success = model_success or bool(reward.success)
                last_success = bool(reward.success)
            stamps.append(next_stamp)
            k, stamp, obs = k + 1, next_stamp, next_obs
            if terminated:
                end = "success"
                self._publish_event(
                    EpisodeEvent(
                        header=reward.header,
                        event=EpisodeEvent.SUCCESS,
                        episode_index=episode,
                        mode="policy",
                        label=EpisodeEvent.LABEL_SUCCESS,
                        step=k,
                        message="the reward model's success decision ended the episode",
                    )
                )
                break
            if k >= p["max_episode_steps"]:
                if self.robot:
                    self._publish_event(
                        EpisodeEvent(
                            header=_header(stamp),
                            event=EpisodeEvent.TIMEOUT,
                            episode_index=episode,
                            task=p["task"],
                            mode="policy",
                            label=EpisodeEvent.LABEL_SUCCESS if last_success else EpisodeEvent.LABEL_FAILURE,
                            step=k,
                            message=f"max_episode_steps={p['max_episode_steps']} reached; label: the reward "
                            "model's decision on the last frame",
                        )
                    )
                break
        self._end(episode, stamps, ret, length, model_success, end)

    def _abort(self, episode: int, step: int, why: str) -> None:
        self.counts["aborted"] += 1
        self.get_logger().error(f"episode {episode} aborted at step {step}: {why}")
        msg = EpisodeEvent(
            event=EpisodeEvent.ABORT, episode_index=episode, mode="policy", step=step, message=why
        )
        if self.robot:
            msg.task = self.p["task"]
        msg.header.stamp = self.get_clock().now().to_msg()
        self._publish_event(msg)

    def _end(self, episode: int, stamps: list[int], ret: float, length: int, success: bool, end: str) -> None:
        self.counts["episodes"] += 1
        self.sac.episodes += 1
        record = {"return": ret, "length": length, "success": success}
        with self._cv:
            gt = [self.gt[t] for t in stamps if t in self.gt]
            # the previous episodes' observations and rewards are no longer needed
            for table in (self.states, self.rewards, self.gt, self.arrivals):
                for t in [t for t in table if t <= stamps[-1]]:
                    del table[t]
            self.events = [e for e in self.events if e.episode_index != episode]
        if self.monitor is not None and gt:
            record["gt_success"] = any(gt)
        if end not in ("aborted", "stopped") and length:  # a stopped episode's return is partial
            self.logger.episodes([record], self.sac.env_steps)
        now = time.monotonic()
        if now - self._last_log >= self.p["log_interval"]:
            self._last_log = now
            self.logger.scalars(self.sac.metrics, self.sac.env_steps)
            self.logger.scalar("charts/updates", self.sac.learner.num_updates, self.sac.env_steps)
        self.get_logger().info(
            f"episode {episode} ({end}): {length} transitions, return {ret:.3f}, model success {success}"
            + (f", ground truth {any(gt)}" if gt else "")
        )

    # --- checkpoints, health, shutdown ---------------------------------------------------------
    def _maybe_save(self) -> None:
        interval = self.p["checkpoint_interval"]
        if interval > 0 and time.monotonic() - self._last_save >= interval:
            self._save()

    def _save(self) -> None:
        if self.sac is None:
            return
        self._last_save = time.monotonic()
        self.sac.save(self.ckpt_dir)
        self.get_logger().info(
            f"checkpoint {self.ckpt_dir}: {self.sac.env_steps} transitions, "
            f"{self.sac.learner.num_updates} updates"
        )

    def _health(self):
        values = dict(self.counts)
        if self.sac is not None:
            online, demos = self.sac.sizes()
            values |= {"updates": self.sac.learner.num_updates, "buffer": online, "demo_buffer": demos}
            values["parameter_pushes"] = self.sac.pushes
        if (
            self.counts["rewards_missing"]
            or self.counts["rewards_invalid"]
            or self.counts["observations_missing"]
        ):
            return (
                WARN,
                f"{self.counts['rewards_missing']} rewards missing, {self.counts['observations_missing']} "
                f"observations missing, {self.counts['aborted']} aborted",
                values,
            )
        return OK, f"{self.counts['steps']} steps, {self.counts['episodes']} episodes", values

    def destroy_node(self) -> None:
        self._stop.set()
        if hasattr(self, "_thread"):
            self._thread.join(timeout=15)
        if getattr(self, "sac", None) is not None:
            self.sac.stop()
            self._save()
            self.logger.close()
        super().destroy_node()


def _event_key(msg: EpisodeEvent) -> tuple:
    return (msg.event, msg.episode_index, stamp_ns(msg.header.stamp), msg.step)


def _header(t: int) -> Header:
    return Header(stamp=Time(sec=t // NS_PER_S, nanosec=t % NS_PER_S))


def main(args: list[str] | None = None) -> int:
    return spin_node(RLTrainerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
