"""Demonstrations from recorded episode bags, in the policy's observation and action space.

An episode bag (recorder_node, or `ros2 bag record`) that holds, per step, the camera frame,
the observation vector (`reward_msgs/ObservationVector`, e.g. maniskill_bridge's `state`)
and the action applied (`reward_msgs/PolicyAction` on `applied_action`, stamped like the
frame it led to) becomes transitions (obs_t, a_t, r_t, obs_t+1, done_t). The reward is the
learned one, decided exactly as in the RL loop (`LearnedRewardEnv.decide`: the same
pipeline, debounce, termination on the model's success), never the bag's ground truth.
Only successful episodes (their episode.json label) are used as demonstrations.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reward_model_ros.core.pipeline import FrameSet
from reward_model_ros.rl.buffer import ReplayBuffer

log = logging.getLogger(__name__)

ActionFn = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
"""(delta_position m, delta_rotation rad, gripper) -> the policy's normalised action"""


def _episode(bag: Path, image_topic: str | None, state_topic: str, action_topic: str) -> dict | None:
    from reward_model_ros.core.images import decode
    from reward_model_ros.core.stamps import stamp_ns
    from reward_model_ros.data.bags import open_checked

    frames: dict[int, np.ndarray] = {}
    states: dict[int, np.ndarray] = {}
    actions: dict[int, tuple] = {}
    with open_checked(bag) as (reader, check):
        if check.damaged:
            log.warning("%s: %s", bag, "; ".join(check.describe()))
        topics = {c.topic: c for c in reader.connections}
        image = image_topic or next(
            (t for t, c in topics.items() if c.msgtype == "sensor_msgs/msg/Image"), None
        )
        missing = [t for t in (image, state_topic, action_topic) if t not in topics]
        if missing:
            log.warning(
                "%s: no %s: not a demonstration (record the bridge's state and applied_action)", bag, missing
            )
            return None
        conns = [topics[image], topics[state_topic], topics[action_topic]]
        for conn, _t, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            t = stamp_ns(msg.header.stamp)
            if conn.topic == image:
                frames[t] = decode(msg.data, msg.height, msg.width, msg.encoding, msg.step)
            elif conn.topic == state_topic:
                states[t] = np.asarray(msg.data, np.float32)
            else:
                d, r = msg.delta_position, msg.delta_orientation
                actions[t] = (np.array([d.x, d.y, d.z]), np.array([r.x, r.y, r.z]), float(msg.gripper))
    stamps = sorted(set(frames) & set(states))
    return {"stamps": stamps, "frames": frames, "states": states, "actions": actions}


def demos_from_bags(
    paths: Sequence[Path],
    env,
    to_action: ActionFn,
    terminate_on_success: bool = True,
    image_topic: str | None = None,
    state_topic: str = "/state",
    action_topic: str = "/applied_action",
) -> tuple[ReplayBuffer, int]:
    """Transitions of the successful episode bags at or under `paths`, rewarded by `env`'s
    learned reward (a LearnedRewardEnv: its pipeline, cameras and decide()). Returns the
    buffer and the number of episodes used."""
    from reward_model_ros.data.bags import bag_dirs, read_episode_info

    episodes = []
    for bag in bag_dirs(paths):
        info = read_episode_info(bag) or {}
        if info.get("label") != "success":
            continue
        ep = _episode(bag, image_topic, state_topic, action_topic)
        if ep is not None and len(ep["stamps"]) >= 2:
            episodes.append(ep)
    if not episodes:
        raise ValueError(
            f"no successful episode bag with frames, {state_topic} and {action_topic} at or under "
            f"{', '.join(map(str, paths))}: record them from maniskill_bridge (collect_data.launch.py)"
        )
    total = sum(len(e["stamps"]) - 1 for e in episodes)
    buf = ReplayBuffer(total, env.obs_dim, env.act_dim, env.device)
    for ep in episodes:
        _add_episode(buf, ep, env, to_action, terminate_on_success)
    log.info("%d demonstration episodes, %d transitions", len(episodes), len(buf))
    return buf, len(episodes)


def _add_episode(buf: ReplayBuffer, ep: dict, env, to_action: ActionFn, terminate_on_success: bool) -> None:
    mapper, history = env.pipeline.mapper(), env.pipeline.history()
    stamps = ep["stamps"]
    if stamps:
        history.push([ep["frames"][stamps[0]]], env.cameras[:1])
    for k, (t0, t1) in enumerate(itertools.pairwise(stamps)):
        past = history.push([ep["frames"][t1]], env.cameras[:1])
        applied = ep["actions"].get(t1)
        if applied is None:
            continue  # a step whose action was not recorded
        score = env.pipeline.score([FrameSet([ep["frames"][t1]], env.cameras[:1], past=past)])[0]
        _success, reward, terminated, truncated = env.decide(mapper, score, k + 1, None)
        obs = torch.as_tensor(ep["states"][t0]).reshape(1, -1)
        nxt = torch.as_tensor(ep["states"][t1]).reshape(1, -1)
        action = torch.as_tensor(to_action(*applied), dtype=torch.float32).reshape(1, -1)
        buf.add(obs, action, torch.tensor([reward]), nxt, torch.tensor([terminated and terminate_on_success]))
        if terminated or truncated:
            break


def recorded_transitions(
    paths: Sequence[Path],
    to_action: ActionFn,
    terminate_on_success: bool = True,
    state_topic: str = "/state",
    action_topic: str = "/applied_action",
    reward_topic: str = "/reward",
) -> tuple[list[tuple[np.ndarray, np.ndarray, float, np.ndarray, bool, int]], int]:
    """Transitions of the successful episode bags at or under `paths` with the rewards that
    reward_node published while they were recorded (RewardStamped, matched to the frame by
    stamp, as rl_trainer pairs them live): (obs, action, reward, next_obs, terminated,
    next_stamp_ns) rows, and the number of episodes used. For rl_trainer, which has no
    classifier of its own; `demos_from_bags` re-scores the frames instead. A step whose
    action, next observation or valid reward is missing is left out."""
    from reward_model_ros.core.stamps import stamp_ns
    from reward_model_ros.data.bags import bag_dirs, open_checked, read_episode_info

    rows, used = [], 0
    for bag in bag_dirs(paths):
        if (read_episode_info(bag) or {}).get("label") != "success":
            continue
        states: dict[int, np.ndarray] = {}
        actions: dict[int, np.ndarray] = {}
        rewards: dict[int, Any] = {}
        with open_checked(bag) as (reader, check):
            if check.damaged:
                log.warning("%s: %s", bag, "; ".join(check.describe()))
            conns = [c for c in reader.connections if c.topic in (state_topic, action_topic, reward_topic)]
            if {c.topic for c in conns} != {state_topic, action_topic, reward_topic}:
                log.warning("%s: needs %s, %s and %s: skipped", bag, state_topic, action_topic, reward_topic)
                continue
            for conn, _t, raw in reader.messages(connections=conns):
                msg = reader.deserialize(raw, conn.msgtype)
                t = stamp_ns(msg.header.stamp)
                if conn.topic == state_topic:
                    states[t] = np.asarray(msg.data, np.float32)
                elif conn.topic == action_topic:
                    d, r = msg.delta_position, msg.delta_orientation
                    actions[t] = to_action(np.array([d.x, d.y, d.z]), np.array([r.x, r.y, r.z]), msg.gripper)
                elif not msg.terminal:
                    rewards[t] = msg
        before = len(rows)
        for t0, t1 in itertools.pairwise(sorted(states)):
            reward = rewards.get(t1)
            if t1 not in actions or reward is None or not reward.valid:
                continue
            done = bool(terminate_on_success and reward.success)
            rows.append((states[t0], actions[t1], float(reward.reward), states[t1], done, t1))
            if done:
                break
        used += len(rows) > before
    return rows, used
