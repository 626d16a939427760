"""reward_node: camera frames in, success probability and reward out, for every frame.

Frames from one or more image topics are matched by time (several cameras), scored by the
success classifier in a worker thread, fused (mean/min/max) and mapped to a reward; the
result goes out as `reward` (reward_msgs/RewardStamped, header copied from the frame).

Stale-frame policy: latest wins. The subscription callbacks only hand the newest
complete frame set to the worker; a set that is still waiting when a newer one arrives is
dropped (counted, logged every 10 s, and visible as a gap in RewardStamped.sequence), so
slow inference drops old frames instead of queueing them and the latency stays bounded.
"""

from __future__ import annotations

import os
import threading
import time

import torch
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from reward_msgs.msg import EpisodeEvent, RewardStamped
from reward_msgs.srv import ComputeRewards
from sensor_msgs.msg import Image
from std_msgs.msg import Float32

from reward_model_ros.core.checkpoint import CheckpointError, load_checkpoint, untrained
from reward_model_ros.core.config import ARCHS, PRECISIONS, RESIZE_MODES, ConfigError, ModelConfig
from reward_model_ros.core.debug import DebugImageWriter, annotate
from reward_model_ros.core.images import ImageEncodingError
from reward_model_ros.core.inference import pick_device
from reward_model_ros.core.reward import (
    COMBINE_MODES,
    REWARD_MODES,
    RewardConfig,
    RewardMapper,
    decide,
    fuse,
    model_reward,
)
from reward_model_ros.core.scoring import FrameScorer
from reward_model_ros.core.sync import FrameSynchronizer
from reward_model_ros.nodes._run import spin_node
from reward_model_ros.nodes.params import (
    Param,
    ParameterError,
    at_least,
    declare_parameters,
    in_range,
    non_empty,
    one_of,
    positive,
    topic_name,
)
from reward_model_ros.ros.conversions import array_to_image, image_to_rgb, stamp_to_nanoseconds

NODE_NAME = "reward_classifier"
END_EVENTS = (EpisodeEvent.SUCCESS, EpisodeEvent.FAILURE, EpisodeEvent.TIMEOUT, EpisodeEvent.ABORT)
_DEFAULTS = RewardConfig()


def _threshold(v: float) -> str | None:
    return None if v == -1.0 or 0.0 <= v <= 1.0 else "must be -1 (the checkpoint's) or in [0, 1]"


PARAMETERS = (
    # --- inputs
    Param(
        "image_topics",
        ["image_raw"],
        "image topics to score (sensor_msgs/Image); several are fused",
        non_empty,
        read_only=True,
    ),
    Param(
        "camera_names",
        [],
        "one name per image topic (crop boxes, RewardStamped.camera_names); empty = the resolved topic names",
        read_only=True,
        array_type="string",
    ),
    Param(
        "image_qos",
        "auto",
        "auto (match the camera's publisher once it appears) | reliable | best_effort",
        one_of("auto", "reliable", "best_effort"),
        read_only=True,
    ),
    Param("image_qos_depth", 5, "history depth of the image subscriptions", in_range(1, 100), read_only=True),
    Param(
        "sync_tolerance",
        0.05,
        "seconds: frames of different cameras form a set when their stamps differ by at most this",
        positive,
        read_only=True,
    ),
    Param(
        "camera_fusion",
        "mean",
        "how per-camera probabilities become one: mean | min | max",
        one_of("mean", "min", "max"),
    ),
    Param(
        "episode_event_topic",
        "episode/event",
        "reward_msgs/EpisodeEvent topic: START resets the "
        "debounce; an end event triggers the terminal reward",
        topic_name,
        read_only=True,
    ),
    Param(
        "env_reward_topic",
        "",
        "std_msgs/Float32 topic with the environment's own reward (latest "
        "value) for combine_mode add/weighted; empty = none (counts as 0)",
        read_only=True,
    ),
    # --- model
    Param(
        "model.checkpoint_path",
        "",
        "checkpoint directory (model.safetensors + config.json); empty = "
        "a freshly initialised model whose outputs mean nothing (tests, demos)",
        read_only=True,
    ),
    Param(
        "model.arch",
        "",
        "must match the checkpoint; empty = the checkpoint's (resnet18 untrained)",
        one_of("", *ARCHS),
        read_only=True,
    ),
    Param(
        "model.hidden_dim", 0, "must match the checkpoint; 0 = the checkpoint's", at_least(0), read_only=True
    ),
    Param(
        "model.image_size",
        [],
        "[3, H, W], must match the checkpoint; empty = the checkpoint's",
        read_only=True,
        array_type="integer",
    ),
    Param(
        "model.normalize",
        "",
        "true | false, must match the checkpoint; empty = the checkpoint's",
        one_of("", "true", "false"),
        read_only=True,
    ),
    Param(
        "model.precision",
        "fp32",
        "fp32 | bf16 | fp16 (autocast) for inference",
        one_of(*PRECISIONS),
        read_only=True,
    ),
    Param(
        "model.resize_mode",
        "",
        "center_crop | stretch; empty = the checkpoint's",
        one_of("", *RESIZE_MODES),
        read_only=True,
    ),
    Param(
        "model.crop_boxes",
        [],
        "[x0, y0, x1, y1] pixels per camera, flattened in image_topics order; "
        "0,0,0,0 = no crop for that camera; empty = the checkpoint's",
        read_only=True,
        array_type="integer",
    ),
    Param("model.device", "auto", "auto | cpu | cuda | cuda:N", read_only=True),
    Param(
        "model.micro_batch_size",
        256,
        "largest batch per forward pass (the service)",
        in_range(1, 65536),
        read_only=True,
    ),
    Param(
        "model.threads",
        0,
        "CPU threads for inference; 0 = auto: half the cores, 1 to 4 (the rest stay free for "
        "the camera drivers and DDS; measured: lower p99 latency on 2 cores)",
        at_least(0),
        read_only=True,
    ),
    Param(
        "model.seed", 0, "seed of the freshly initialised model when no checkpoint is given", read_only=True
    ),
    Param(
        "model.debug_save_dir",
        "",
        "write model inputs as resnet_success|resnet_fail/{id:06d}_prob{p:.4f}.png here; empty = off",
        read_only=True,
    ),
    Param(
        "model.debug_save_max_files",
        1000,
        "stop writing debug PNGs after this many",
        at_least(0),
        read_only=True,
    ),
    # --- reward (RLinf's vocabulary)
    Param("reward_mode", _DEFAULTS.reward_mode, "per_step | terminal", one_of(*REWARD_MODES)),
    Param(
        "reward_threshold",
        -1.0,
        "success when probability >= this; -1 = the checkpoint's recommended threshold",
        _threshold,
    ),
    Param("success_reward", _DEFAULTS.success_reward, "model reward on success"),
    Param("fail_reward", _DEFAULTS.fail_reward, "model reward on failure"),
    Param(
        "combine_mode",
        _DEFAULTS.combine_mode,
        "replace | add | weighted (with the env reward)",
        one_of(*COMBINE_MODES),
    ),
    Param("reward_weight", _DEFAULTS.reward_weight, "weight of the model reward in combine_mode=weighted"),
    Param(
        "env_reward_weight", _DEFAULTS.env_reward_weight, "weight of the env reward in combine_mode=weighted"
    ),
    Param(
        "debounce_frames",
        _DEFAULTS.debounce_frames,
        "success only after this many consecutive frames above the threshold (1 = off)",
        at_least(1),
    ),
    # --- debug
    Param("debug_image", True, "publish ~/debug_image (annotated frame) while someone subscribes"),
    Param(
        "debug_image_width",
        640,
        "width of ~/debug_image at most (shrunk keeping the aspect)",
        in_range(64, 4096),
    ),
    Param("log_throttle", 5.0, "seconds between repeated warnings (bad frames, dropped frames)", positive),
)

_REWARD_KEYS = (
    "reward_mode",
    "success_reward",
    "fail_reward",
    "combine_mode",
    "reward_weight",
    "env_reward_weight",
    "debounce_frames",
)


def _model_overrides(p: dict, cameras: list[str]) -> dict:
    boxes = p["model.crop_boxes"]
    if boxes and len(boxes) != 4 * len(cameras):
        raise ParameterError(
            f"model.crop_boxes has {len(boxes)} numbers; it needs 4 per camera ({4 * len(cameras)} for "
            f"{len(cameras)} image topics), or none"
        )
    crops = {
        cam: boxes[4 * i : 4 * i + 4]
        for i, cam in enumerate(cameras)
        if boxes and any(boxes[4 * i : 4 * i + 4])
    }
    return {
        "arch": p["model.arch"] or None,
        "hidden_dim": p["model.hidden_dim"] or None,
        "image_size": p["model.image_size"] or None,
        "normalize": {"": None, "true": True, "false": False}[p["model.normalize"]],
        "precision": p["model.precision"],
        "resize_mode": p["model.resize_mode"] or None,
        "crop_boxes": crops if boxes else None,
    }


class RewardNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        p = declare_parameters(self, PARAMETERS, on_change=self._on_parameters)
        self.p = p
        self.topics = list(p["image_topics"])
        # default camera names: the topics as resolved (namespace and remaps applied)
        resolve = getattr(self, "resolve_topic_name", lambda t: t)
        self.resolved_topics = [resolve(t) for t in self.topics]
        self.cameras = list(p["camera_names"]) or list(self.resolved_topics)
        if len(self.cameras) != len(self.topics):
            raise ParameterError(
                f"camera_names has {len(self.cameras)} entries for {len(self.topics)} image_topics: give one "
                "name per topic, or none"
            )
        self.scorer = FrameScorer(self._load_model(p), p["model.micro_batch_size"])
        self.scorer.warm_up()
        self._state = threading.Lock()  # guards mapper, reward config, last result
        self.reward_cfg = self._reward_config(p)
        self.mapper = RewardMapper(self.reward_cfg)
        self.writer = (
            DebugImageWriter(p["model.debug_save_dir"], p["model.debug_save_max_files"])
            if p["model.debug_save_dir"]
            else None
        )

        reliable = QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
        )
        self.reward_pub = self.create_publisher(RewardStamped, "reward", reliable)
        # reliable, depth 1: what rviz2's Image display subscribes with by default
        self.debug_pub = self.create_publisher(
            Image,
            "~/debug_image",
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST),
        )
        self.create_service(ComputeRewards, "~/compute_rewards", self._on_compute_rewards)
        self.create_subscription(EpisodeEvent, p["episode_event_topic"], self._on_episode_event, reliable)
        self.env_reward: float | None = None
        if p["env_reward_topic"]:
            self.create_subscription(Float32, p["env_reward_topic"], self._on_env_reward, reliable)
        elif self.reward_cfg.combine_mode != "replace":
            self.get_logger().warning(
                f"combine_mode={self.reward_cfg.combine_mode} but no env_reward_topic: "
                "the env reward counts as 0"
            )

        self.sync = FrameSynchronizer(len(self.topics), int(p["sync_tolerance"] * 1e9))
        self._cv = threading.Condition()
        self._pending: list[Image] | None = None
        self._stop = threading.Event()
        self.sequence = 0
        self.dropped_stale = 0
        self.bad_frames = 0
        self._reported = (0, 0)
        self._last: tuple | None = None  # (header, scored, probability) of the latest frame set
        self._pending_qos: dict[int, str] = {}
        steady = RosClock(clock_type=ClockType.STEADY_TIME)
        for index, topic in enumerate(self.topics):
            self._subscribe(index, topic)
        if self._pending_qos:
            # steady: under use_sim_time a ROS-time timer would wait for /clock
            self._qos_timer = self.create_timer(0.5, self._resolve_auto_qos, clock=steady)
        self.create_timer(10.0, self._report_drops, clock=steady)
        self._worker = threading.Thread(target=self._work, name="reward-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"scoring {', '.join(self.resolved_topics)} with {self.scorer.model_id} "
            f"on {self.scorer.checkpoint.model.device} "
            f"({self.scorer.checkpoint.config.arch}, {self.scorer.checkpoint.config.precision}); "
            f"reward_mode={self.reward_cfg.reward_mode} threshold={self.reward_cfg.reward_threshold:.3f}"
        )

    # --- set-up -------------------------------------------------------------------------
    def _load_model(self, p: dict):
        try:
            torch.set_num_threads(p["model.threads"] or max(1, min(4, (os.cpu_count() or 2) // 2)))
            overrides = _model_overrides(p, self.cameras)
            device = pick_device(p["model.device"])
            path = p["model.checkpoint_path"]
            if path:
                return load_checkpoint(path, overrides, device)
            cfg = ModelConfig(**{k: v for k, v in overrides.items() if v is not None})
            self.get_logger().warning(
                "no model.checkpoint_path: scoring with a freshly initialised model (model_id "
                f"untrained@{p['model.seed']}); its probabilities mean nothing"
            )
            return untrained(cfg, threshold=_DEFAULTS.reward_threshold, seed=p["model.seed"], device=device)
        except (CheckpointError, ConfigError, ValueError) as exc:
            raise ParameterError(str(exc)) from exc

    def _reward_config(self, p: dict) -> RewardConfig:
        threshold = p["reward_threshold"]
        if threshold == -1.0:
            threshold = self.scorer.checkpoint.threshold
        return RewardConfig(reward_threshold=threshold, **{k: p[k] for k in _REWARD_KEYS}).validate()

    def _on_parameters(self, changes: dict) -> None:
        self.p.update(changes)
        if set(changes) & {"reward_threshold", *_REWARD_KEYS}:
            with self._state:
                self.reward_cfg = self._reward_config(self.p)
                self.mapper = RewardMapper(self.reward_cfg)

    def _subscribe(self, index: int, topic: str, reliability: str | None = None) -> None:
        mode = reliability or self.p["image_qos"]
        if mode == "auto":
            self._pending_qos[index] = topic
            return
        qos = QoSProfile(
            depth=self.p["image_qos_depth"],
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE if mode == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        )
        self.create_subscription(Image, topic, lambda msg, i=index: self._on_image(i, msg), qos)

    def _resolve_auto_qos(self) -> None:
        """image_qos=auto: subscribe once the camera's publishers are known, matching them."""
        for index, topic in list(self._pending_qos.items()):
            name = self.resolve_topic_name(topic) if hasattr(self, "resolve_topic_name") else topic
            infos = self.get_publishers_info_by_topic(name)
            if not infos:
                continue
            all_reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
            mode = "reliable" if all_reliable else "best_effort"
            self.get_logger().info(f"{name}: {len(infos)} publisher(s) found, subscribing {mode}")
            del self._pending_qos[index]
            self._subscribe(index, topic, mode)
        if not self._pending_qos:
            self._qos_timer.cancel()

    # --- streaming ----------------------------------------------------------------------
    def _on_image(self, index: int, msg: Image) -> None:
        with self._cv:
            frames = self.sync.add(index, stamp_to_nanoseconds(msg.header.stamp), msg)
            if frames is None:
                return
            if self._pending is not None:
                self.dropped_stale += 1
            self._pending = frames
            self._cv.notify()

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                self._cv.wait_for(lambda: self._pending is not None or self._stop.is_set(), timeout=0.5)
                frames, self._pending = self._pending, None
            if frames is None:
                continue
            try:
                self._process(frames)
            except Exception as exc:  # keep scoring the next frames whatever happened to this one
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down (Ctrl-C): the context went away under a frame in flight
                self.get_logger().error(
                    f"scoring a frame failed: {type(exc).__name__}: {exc}",
                    throttle_duration_sec=self.p["log_throttle"],
                )

    def _process(self, frames: list[Image]) -> None:
        rgbs = []
        for topic, msg in zip(self.resolved_topics, frames, strict=True):
            try:
                rgbs.append(image_to_rgb(msg))
            except ImageEncodingError as exc:
                self.bad_frames += 1
                self.get_logger().warning(
                    f"dropped a frame from {topic}: {exc} ({self.bad_frames} bad frames so far)",
                    throttle_duration_sec=self.p["log_throttle"],
                )
                return
        try:
            scored = self.scorer.score(rgbs, self.cameras)
        except ConfigError as exc:  # e.g. a crop box outside the frame
            self.bad_frames += 1
            self.get_logger().error(str(exc), throttle_duration_sec=self.p["log_throttle"])
            return
        probability = fuse(scored.probabilities, self.p["camera_fusion"])
        with self._state:
            success, reward = self.mapper.step(probability, self.env_reward)
            cfg = self.reward_cfg
            self.sequence += 1
            self._last = (frames[0].header, scored, probability)
            out = self._reward_msg(frames[0].header, scored, probability, success, reward, cfg)
        self.reward_pub.publish(out)
        if self.p["debug_image"] and self.debug_pub.get_subscription_count() > 0:
            picture = annotate(
                rgbs[0], probability, success, cfg.reward_threshold, self.p["debug_image_width"]
            )
            self.debug_pub.publish(array_to_image(picture, "rgb8", frames[0].header))
        if self.writer is not None:
            self.writer.write(scored.inputs[0], probability, success)

    def _reward_msg(self, header, scored, probability, success, reward, cfg, terminal=False) -> RewardStamped:
        age = self.get_clock().now() - Time.from_msg(header.stamp, clock_type=self.get_clock().clock_type)
        return RewardStamped(
            header=header,
            probability=float(probability),
            reward=float(reward),
            success=bool(success),
            threshold=float(cfg.reward_threshold),
            model_id=self.scorer.model_id,
            camera_names=self.cameras,
            camera_probabilities=scored.probabilities,
            inference_latency=float(scored.seconds),
            total_latency=age.nanoseconds / 1e9,
            terminal=terminal,
            sequence=self.sequence,
        )

    def _on_env_reward(self, msg: Float32) -> None:
        self.env_reward = float(msg.data)

    def _on_episode_event(self, event: EpisodeEvent) -> None:
        with self._state:
            if event.event == EpisodeEvent.START:
                self.mapper.reset()
                return
            if event.event not in END_EVENTS:
                return
            if self.reward_cfg.reward_mode == "terminal" and self._last is not None:
                header, scored, probability = self._last
                success, reward = self.mapper.terminal(self.env_reward)
                out = self._reward_msg(header, scored, probability, success, reward, self.reward_cfg, True)
                self.reward_pub.publish(out)
            self.mapper.reset()

    def _report_drops(self) -> None:
        now = (self.dropped_stale + self.sync.stats.replaced, self.bad_frames)
        if now != self._reported:
            self.get_logger().warning(
                f"{now[0] - self._reported[0]} stale frames dropped (inference slower than the cameras, or "
                f"cameras out of sync by more than sync_tolerance) and {now[1] - self._reported[1]} bad "
                f"frames in the last 10 s; {self.sequence} scored in total"
            )
            self._reported = now

    # --- batch service ------------------------------------------------------------------
    def _on_compute_rewards(self, request, response):
        n = len(request.images)
        names = list(request.camera_names)
        if names and len(names) != n:
            error = f"camera_names has {len(names)} entries for {n} images: give one per image, or none"
            response.probabilities = [float("nan")] * n
            response.rewards = [0.0] * n
            response.successes = [False] * n
            response.valid = [False] * n
            response.errors = [error] * n
            response.model_id = self.scorer.model_id
            return response
        rgbs, errors = [], [""] * n
        for i, msg in enumerate(request.images):
            try:
                rgbs.append((i, image_to_rgb(msg)))
            except ImageEncodingError as exc:
                errors[i] = f"image {i}: {exc}"
        probs = [float("nan")] * n
        start = time.perf_counter()
        if rgbs:
            cams = [names[i] if names else None for i, _ in rgbs]
            try:
                scored = self.scorer.score([rgb for _, rgb in rgbs], cams)
                for (i, _), prob in zip(rgbs, scored.probabilities, strict=True):
                    probs[i] = prob
            except ConfigError as exc:
                for i, _ in rgbs:
                    errors[i] = str(exc)
        with self._state:
            cfg = self.reward_cfg
        valid = [not e for e in errors]
        successes = [bool(v and decide(p, cfg.reward_threshold)) for p, v in zip(probs, valid, strict=True)]
        response.probabilities = probs
        response.rewards = [model_reward(s, cfg) if v else 0.0 for s, v in zip(successes, valid, strict=True)]
        response.successes = successes
        response.valid = valid
        response.errors = errors
        response.threshold = float(cfg.reward_threshold)
        response.model_id = self.scorer.model_id
        response.inference_latency = time.perf_counter() - start
        return response

    def destroy_node(self) -> None:
        # also called by rclpy's shutdown on a node whose __init__ failed half-way
        if hasattr(self, "_worker"):
            self._stop.set()
            with self._cv:
                self._cv.notify()
            self._worker.join(timeout=5)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(RewardNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
