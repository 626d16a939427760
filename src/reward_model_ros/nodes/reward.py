"""reward_node: camera frames in, success probability and reward out, for every frame.

Frames from one or more image topics are matched by time (several cameras), scored by the
success classifier in a worker thread, fused (logit/mean/min/max) and mapped to a reward; the
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
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.task import Future
from rclpy.time import Time
from reward_msgs.msg import EpisodeEvent, RewardStamped
from reward_msgs.srv import ComputeRewards
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32

from reward_model_ros.core.checkpoint import CheckpointError, decision_settings, load_checkpoint, untrained
from reward_model_ros.core.config import ARCHS, OPTIMIZE, PRECISIONS, RESIZE_MODES, ConfigError, ModelConfig
from reward_model_ros.core.debug import annotate, debug_writer
from reward_model_ros.core.images import ImageEncodingError, compressed_size
from reward_model_ros.core.inference import pick_device
from reward_model_ros.core.model import resolve_inference
from reward_model_ros.core.pipeline import (
    REWARD_KEYS,
    FrameSet,
    RewardPipeline,
    build_pipeline,
    invalid_score,
)
from reward_model_ros.core.reward import (
    COMBINE_MODES,
    DEFAULT_FUSION,
    FUSIONS,
    REWARD_MODES,
    RewardConfig,
    decide,
    model_reward,
)
from reward_model_ros.core.stats import Percentiles, RateWindow
from reward_model_ros.core.sync import SYNC_TOLERANCE_S, FrameSynchronizer
from reward_model_ros.core.validity import ValidityConfig, too_large
from reward_model_ros.nodes._run import spin_node, steady_clock
from reward_model_ros.nodes.params import (
    Param,
    ParameterError,
    at_least,
    declare_parameters,
    device_name,
    finite,
    in_range,
    non_empty,
    non_negative,
    one_of,
    positive,
    topic_name,
)
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.conversions import (
    array_to_image,
    frame_to_rgb,
    is_compressed_topic,
    stamp_to_nanoseconds,
)
from reward_model_ros.ros.diagnostics import OK, WARN, Diagnostics

NODE_NAME = "reward_classifier"


@dataclass
class _Frame:
    header: Any
    rgb: np.ndarray | None
    grey: bool
    reason: str | None
    """why the frame cannot be judged (checked in the subscription callback), or None"""


END_EVENTS = (EpisodeEvent.SUCCESS, EpisodeEvent.FAILURE, EpisodeEvent.TIMEOUT, EpisodeEvent.ABORT)
_DEFAULTS = RewardConfig()


def _threshold(v: float) -> str | None:
    return None if v == -1.0 or 0.0 <= v <= 1.0 else "must be -1 (the checkpoint's) or in [0, 1]"


PARAMETERS = (
    # --- inputs
    Param(
        "image_topics",
        ["image_raw"],
        "image topics to score (sensor_msgs/Image; a topic named <base>/compressed is "
        "sensor_msgs/CompressedImage, JPEG or PNG); several are fused",
        non_empty,
        read_only=True,
    ),
    Param(
        "image_transport",
        "raw",
        "raw | compressed: subscribe <topic>/compressed (sensor_msgs/CompressedImage, as "
        "image_transport names it) for every image topic that is not one already",
        one_of("raw", "compressed"),
        read_only=True,
    ),
    Param(
        "camera_names",
        [],
        "the checkpoint camera each image topic is (crop boxes, RewardStamped.camera_names); empty = "
        "the checkpoint's cameras in order (a model without recorded cameras: the resolved topic names)",
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
        SYNC_TOLERANCE_S,
        "seconds: frames of different cameras form a set when their stamps differ by at most this",
        positive,
        read_only=True,
    ),
    Param(
        "camera_fusion",
        "",
        "how per-camera probabilities become one: logit (the mean of their logits) | mean | min | "
        f"max; empty = the checkpoint's recommended ({DEFAULT_FUSION} without one)",
        one_of("", *FUSIONS),
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
        "auto",
        "auto (int8 on a CPU with VNNI when the checkpoint holds int8 calibration frames, else bf16 "
        "where the CPU has AVX-512 BF16/AMX or on CUDA, else fp32) | fp32 | bf16 | fp16 (autocast "
        "unless model.optimize is freeze) | int8 (CPU, frozen) for inference",
        one_of("auto", *PRECISIONS),
        read_only=True,
    ),
    Param(
        "model.optimize",
        "auto",
        "auto (freeze with int8 and bf16, else none) | none (eager) | freeze (frozen TorchScript; "
        "with bf16 the weights are cast once: 1.4x at one frame, 2.1x at two on a 2-core AVX-512 "
        "BF16 CPU)",
        one_of("auto", *OPTIMIZE),
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
    Param("model.device", "auto", "auto | cpu | cuda | cuda:N", device_name, read_only=True),
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
        "write model inputs as resnet_success|resnet_fail/{id:06d}_prob{p:.4f}.png here; empty = "
        "$DEBUG_IMAGE_SAVE_DIR if set, else off",
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
        "success when probability >= this; -1 = the checkpoint's recommended (`reward-model evaluate`), "
        "else its validation threshold",
        _threshold,
    ),
    Param("success_reward", _DEFAULTS.success_reward, "model reward on success", finite),
    Param("fail_reward", _DEFAULTS.fail_reward, "model reward on failure", finite),
    Param(
        "combine_mode",
        _DEFAULTS.combine_mode,
        "replace | add | weighted (with the env reward)",
        one_of(*COMBINE_MODES),
    ),
    Param(
        "reward_weight",
        _DEFAULTS.reward_weight,
        "weight of the model reward in combine_mode=weighted",
        finite,
    ),
    Param(
        "env_reward_weight",
        _DEFAULTS.env_reward_weight,
        "weight of the env reward in combine_mode=weighted",
        finite,
    ),
    Param(
        "debounce_frames",
        -1,
        "success only after this many consecutive frames above the threshold (1 = off); -1 = the "
        "checkpoint's recommended, else the debounce train chose on validation (off without one)",
        lambda v: None if v == -1 or v >= 1 else "must be -1 (the checkpoint's) or >= 1",
    ),
    # --- frame checks (core/validity.py): an invalid frame gets no success, and a flag
    *(
        Param(f"validity.{f.name}", f.default, doc, check, read_only=True)
        for f, doc, check in zip(
            fields(ValidityConfig),
            (
                "check every frame before scoring (false: score everything)",
                "near-uniform: luminance std (0-255) below this is a covered or blank camera",
                "over/under-exposed: more than this share of pixels clipped to white or black",
                "the aspect ratio may differ from the training frames' by this factor at most",
                "the pixel count may differ from the training frames' by this factor at most",
                "checkpoints without training sizes: width/height beyond this (either way) is refused",
                "accept greyscale frames (mono8, or R = G = B) for a model trained on colour",
                "frames with more pixels are refused before decoding",
            ),
            (
                None,
                non_negative,
                in_range(0.01, 1.0),
                at_least(1.0),
                at_least(1.0),
                at_least(1.0),
                None,
                at_least(1),
            ),
            strict=True,
        )
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


def _model_overrides(p: dict) -> dict:
    # auto is resolved by load_checkpoint, which knows whether the checkpoint can run in int8
    precision, optimize = p["model.precision"], p["model.optimize"]
    return {
        "arch": p["model.arch"] or None,
        "hidden_dim": p["model.hidden_dim"] or None,
        "image_size": p["model.image_size"] or None,
        "normalize": {"": None, "true": True, "false": False}[p["model.normalize"]],
        "precision": precision,
        "optimize": optimize,
        "resize_mode": p["model.resize_mode"] or None,
    }


def _crop_boxes(p: dict, topics: int) -> list[list[int] | None] | None:
    """model.crop_boxes (4 numbers per image topic, 0,0,0,0 = none) per topic; None = the checkpoint's."""
    boxes = p["model.crop_boxes"]
    if not boxes:
        return None
    if len(boxes) != 4 * topics:
        raise ParameterError(
            f"model.crop_boxes has {len(boxes)} numbers; it needs 4 per camera ({4 * topics} for "
            f"{topics} image topics), or none"
        )
    return [boxes[4 * i : 4 * i + 4] if any(boxes[4 * i : 4 * i + 4]) else None for i in range(topics)]


class RewardNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        p = declare_parameters(self, PARAMETERS, on_change=self._on_parameters)
        self.p = p
        self.topics = [
            t if p["image_transport"] == "raw" or is_compressed_topic(t) else t.rstrip("/") + "/compressed"
            for t in p["image_topics"]
        ]
        # default camera names: the topics as resolved (namespace and remaps applied)
        resolve = getattr(self, "resolve_topic_name", lambda t: t)
        self.resolved_topics = [resolve(t) for t in self.topics]
        ckpt = self._load_model(p)
        self._state = threading.Lock()  # guards mapper, pipeline, reward config, last result
        try:  # cameras and crop boxes, frame checks, decision settings, the reward mapping
            validity = ValidityConfig(**{f.name: p[f"validity.{f.name}"] for f in fields(ValidityConfig)})
            pipeline, settings, self.cameras = build_pipeline(
                ckpt,
                self.resolved_topics,
                p["camera_names"],
                _crop_boxes(p, len(self.topics)),
                validity.validate(),
                {k: p[k] for k in REWARD_KEYS},
                p["reward_threshold"],
                p["debounce_frames"],
                p["camera_fusion"],
                p["model.micro_batch_size"],
            )
        except ConfigError as exc:
            raise ParameterError(f"{NODE_NAME}: {exc}") from exc
        self.scorer = pipeline.scorer
        self.scorer.warm_up()
        self._use(pipeline, settings.source)
        self.writer = debug_writer(p["model.debug_save_dir"], p["model.debug_save_max_files"])

        reliable = qos_profiles.reliable()
        self.reward_pub = self.create_publisher(RewardStamped, "reward", reliable)
        # reliable, depth 1: what rviz2's Image display subscribes with by default
        self.debug_pub = self.create_publisher(
            Image,
            "~/debug_image",
            qos_profiles.DEBUG_IMAGE,
        )
        # own callback groups: while a batch request awaits its scoring thread, the default
        # group stays free for the camera subscriptions, and the wake-up can always fire
        self._service_group = MutuallyExclusiveCallbackGroup()
        self.create_service(
            ComputeRewards,
            "~/compute_rewards",
            self._on_compute_rewards,
            callback_group=self._service_group,
        )
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
        self._pending: tuple[int, list[_Frame]] | None = None
        self._stop = threading.Event()
        # resumes awaiting service calls when their scoring thread is done
        self._wake = self.create_guard_condition(lambda: None, callback_group=ReentrantCallbackGroup())
        self.sequence = 0  # frame sets received
        self.counts = {"received": 0, "scored": 0, "invalid": 0, "dropped_stale": 0, "service_images": 0}
        self.received = [0] * len(self.topics)
        self.rates = [RateWindow() for _ in self.topics]
        self.latency = Percentiles()
        self.inference = Percentiles()
        self.last_invalid = ""
        self._reported = (0, 0)
        self._last: tuple | None = None  # (header, score) of the latest frame set
        self._pending_qos: dict[int, str] = {}
        steady = steady_clock()
        for index, topic in enumerate(self.topics):
            self._subscribe(index, topic)
        if self._pending_qos:
            # steady: under use_sim_time a ROS-time timer would wait for /clock
            self._qos_timer = self.create_timer(0.5, self._resolve_auto_qos, clock=steady)
        self.create_timer(10.0, self._report_drops, clock=steady)
        self.diagnostics = Diagnostics(self, "reward", self._health)
        self._worker = threading.Thread(target=self._work, name="reward-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"scoring {', '.join(self.resolved_topics)} with {self.scorer.model_id} "
            f"on {self.scorer.checkpoint.model.device} "
            f"({self.scorer.checkpoint.config.arch}, {self.scorer.checkpoint.config.precision}, "
            f"temperature {self.scorer.checkpoint.temperature:.3f}); "
            f"cameras {dict(zip(self.resolved_topics, self.cameras, strict=True))}; "
            f"reward_mode={self.reward_cfg.reward_mode}; decision: {self.decision_source}; "
            f"frame checks {'on' if self.scorer.validity.enabled else 'OFF'}"
        )

    # --- set-up -------------------------------------------------------------------------
    def _load_model(self, p: dict):
        try:
            torch.set_num_threads(p["model.threads"] or max(1, min(4, (os.cpu_count() or 2) // 2)))
            overrides = _model_overrides(p)
            device = pick_device(p["model.device"])
            path = p["model.checkpoint_path"]
            if path:
                return load_checkpoint(path, overrides, device)
            if overrides["precision"] == "int8":
                raise ConfigError(
                    "model.precision=int8 needs a checkpoint with int8 calibration frames "
                    "(model.checkpoint_path; `reward-model quantize`); there is none: use auto"
                )
            overrides["precision"], overrides["optimize"] = resolve_inference(
                overrides["precision"], overrides["optimize"], device
            )
            cfg = ModelConfig(**{k: v for k, v in overrides.items() if v is not None})
            self.get_logger().warning(
                "no model.checkpoint_path: scoring with a freshly initialised model (model_id "
                f"untrained@{p['model.seed']}); its probabilities mean nothing"
            )
            return untrained(cfg, threshold=_DEFAULTS.reward_threshold, seed=p["model.seed"], device=device)
        except (CheckpointError, ConfigError, ValueError) as exc:
            raise ParameterError(str(exc)) from exc

    def _use(self, pipeline: RewardPipeline, source: str) -> None:
        self.pipeline, self.decision_source = pipeline, source
        self.reward_cfg, self.fusion = pipeline.cfg, pipeline.fusion
        self.mapper = pipeline.mapper()
        self.history = pipeline.history()  # model.frame_stack: the stream's earlier frames

    def _on_parameters(self, changes: dict) -> None:
        """A runtime change of the reward settings: a new mapping (the debounce starts over)."""
        self.p.update(changes)
        p = self.p
        if set(changes) & {"reward_threshold", "debounce_frames", "camera_fusion", *REWARD_KEYS}:
            settings = decision_settings(
                self.scorer.checkpoint, p["reward_threshold"], p["debounce_frames"], p["camera_fusion"]
            )
            cfg = RewardConfig(
                reward_threshold=settings.reward_threshold,
                debounce_frames=settings.debounce_frames,
                **{k: p[k] for k in REWARD_KEYS},
            )
            with self._state:
                self._use(RewardPipeline(self.scorer, cfg, settings.camera_fusion), settings.source)

    def _subscribe(self, index: int, topic: str, reliability: str | None = None) -> None:
        mode = reliability or self.p["image_qos"]
        if mode == "auto":
            self._pending_qos[index] = topic
            return
        qos = qos_profiles.images(mode, self.p["image_qos_depth"])
        kind = CompressedImage if is_compressed_topic(topic) else Image
        self.create_subscription(kind, topic, lambda msg, i=index: self._on_image(i, msg), qos)

    def _resolve_auto_qos(self) -> None:
        """image_qos=auto: subscribe once the camera's publishers are known, matching them."""
        for index, topic in list(self._pending_qos.items()):
            name = self.resolve_topic_name(topic) if hasattr(self, "resolve_topic_name") else topic
            infos = self.get_publishers_info_by_topic(name)
            if not infos:
                continue
            mode = qos_profiles.publishers_reliability(infos)
            self.get_logger().info(f"{name}: {len(infos)} publisher(s) found, subscribing {mode}")
            del self._pending_qos[index]
            self._subscribe(index, topic, mode)
        if not self._pending_qos:
            self._qos_timer.cancel()

    # --- streaming ----------------------------------------------------------------------
    def _frame(self, index: int, msg: Image | CompressedImage) -> _Frame:
        """Decode and check a frame in the subscription callback, before the hand-off: an
        invalid frame never displaces a valid one waiting for inference. The size cap is
        checked before decoding (a compressed frame's size is read from its header)."""
        v = self.scorer.validity
        size = compressed_size(msg.data) if isinstance(msg, CompressedImage) else (msg.height, msg.width)
        reason = too_large(*size, v) if size else None
        if reason:
            return _Frame(msg.header, None, False, reason)
        try:
            rgb, grey = frame_to_rgb(msg)
        except ImageEncodingError as exc:
            return _Frame(msg.header, None, False, f"bad frame: {exc}")
        reason = too_large(rgb.shape[0], rgb.shape[1], v) if size is None else None
        if reason:
            return _Frame(msg.header, None, False, reason)
        return _Frame(msg.header, rgb, grey, self.scorer.check(rgb, self.cameras[index], grey))

    def _on_image(self, index: int, msg: Image | CompressedImage) -> None:
        self.received[index] += 1
        self.rates[index].tick()
        frame = self._frame(index, msg)
        with self._cv:
            frames = self.sync.add(index, stamp_to_nanoseconds(msg.header.stamp), frame)
            if frames is None:
                return
            self.sequence += 1
            self.counts["received"] += 1
            sequence = self.sequence
            if not any(f.reason for f in frames):
                if self._pending is not None:
                    self.counts["dropped_stale"] += 1
                # every valid set enters the history, also one then dropped as stale
                past = self.history.push([f.rgb for f in frames], self.cameras)
                self._pending = (sequence, frames, past)
                self._cv.notify()
                return
        self._publish(sequence, frames, invalid_score([f.reason for f in frames], self.cameras))

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                self._cv.wait_for(lambda: self._pending is not None or self._stop.is_set(), timeout=0.5)
                pending, self._pending = self._pending, None
            if pending is None:
                continue
            try:
                sequence, frames, past = pending
                fs = FrameSet(
                    [f.rgb for f in frames],
                    self.cameras,
                    [f.grey for f in frames],
                    [None] * len(frames),
                    past,
                )
                try:
                    score = self.pipeline.score([fs])[0]
                except ConfigError as exc:  # e.g. a crop box outside the frame
                    score = invalid_score([str(exc)] * len(frames), self.cameras)
                self._publish(sequence, frames, score)
            except Exception as exc:  # keep scoring the next frames whatever happened to this one
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down (Ctrl-C): the context went away under a frame in flight
                self.get_logger().error(
                    f"scoring a frame failed: {type(exc).__name__}: {exc}",
                    throttle_duration_sec=self.p["log_throttle"],
                )

    def _publish(self, sequence: int, frames: list[_Frame], score) -> None:
        header = frames[0].header
        with self._state:
            result = self.pipeline.decide(score, self.mapper, self.env_reward)
            self._last = (header, score)
            out = self._reward_msg(header, score, result.success, result.reward, self.reward_cfg, sequence)
            self.counts["scored" if score.valid else "invalid"] += 1
        if not score.valid:
            self.last_invalid = score.invalid_reason
            self.get_logger().warning(
                f"invalid frame, no success: {score.invalid_reason} "
                f"({self.counts['invalid']} invalid so far)",
                throttle_duration_sec=self.p["log_throttle"],
            )
        else:
            self.inference.add(score.seconds)
        self.latency.add(out.total_latency)
        self.reward_pub.publish(out)
        rgb = frames[0].rgb
        if rgb is not None and self.p["debug_image"] and self.debug_pub.get_subscription_count() > 0:
            picture = annotate(
                rgb, score.probability, result.success, result.threshold, self.p["debug_image_width"]
            )
            self.debug_pub.publish(array_to_image(picture, "rgb8", header))
        if self.writer is not None and score.inputs is not None:
            self.writer.write(score.inputs, score.probability, result.success)

    def _reward_msg(self, header, score, success, reward, cfg, sequence, terminal=False) -> RewardStamped:
        age = self.get_clock().now() - Time.from_msg(header.stamp, clock_type=self.get_clock().clock_type)
        return RewardStamped(
            header=header,
            probability=float(score.probability),
            reward=float(reward),
            success=bool(success),
            threshold=float(cfg.reward_threshold),
            model_id=self.scorer.model_id,
            camera_names=self.cameras,
            camera_probabilities=[float(v) for v in score.camera_probabilities],
            inference_latency=float(score.seconds),
            total_latency=age.nanoseconds / 1e9,
            terminal=terminal,
            sequence=sequence,
            valid=bool(score.valid),
            invalid_reason=score.invalid_reason,
        )

    def _on_env_reward(self, msg: Float32) -> None:
        self.env_reward = float(msg.data)

    def _on_episode_event(self, event: EpisodeEvent) -> None:
        with self._state:
            if event.event == EpisodeEvent.START:
                self.mapper.reset()
                with self._cv:
                    self.history.reset()
                return
            if event.event not in END_EVENTS:
                return
            if self.reward_cfg.reward_mode == "terminal" and self._last is not None:
                header, score = self._last
                success, reward = self.mapper.terminal(self.env_reward)
                out = self._reward_msg(header, score, success, reward, self.reward_cfg, self.sequence, True)
                self.reward_pub.publish(out)
            self.mapper.reset()

    def _report_drops(self) -> None:
        now = (self.counts["dropped_stale"] + self.sync.stats.replaced, self.counts["invalid"])
        if now != self._reported:
            self.get_logger().warning(
                f"{now[0] - self._reported[0]} stale frames dropped (inference slower than the cameras, or "
                f"cameras out of sync by more than sync_tolerance) and {now[1] - self._reported[1]} invalid "
                f"frames in the last 10 s; {self.counts['scored']} scored of {self.counts['received']} "
                "received in total"
            )
            self._reported = now

    def _health(self):
        """/diagnostics: input rates, counters, latency percentiles, the model."""
        c = dict(self.counts)
        rates = [r.rate() for r in self.rates]
        lat = self.latency.summary()
        values = {
            "model_id": self.scorer.model_id,
            "device": str(self.scorer.checkpoint.model.device),
            "temperature": self.scorer.checkpoint.temperature,
            **{f"rate_hz {t}": r for t, r in zip(self.resolved_topics, rates, strict=True)},
            **{f"frames_received {t}": n for t, n in zip(self.resolved_topics, self.received, strict=True)},
            "sets_received": c["received"],
            "sets_scored": c["scored"],
            "sets_invalid": c["invalid"],
            "sets_dropped_stale": c["dropped_stale"],
            "frames_unmatched": self.sync.stats.replaced,
            "service_images": c["service_images"],
            **{f"latency_ms_{k}": v * 1000 for k, v in lat.items()},
            **{f"inference_ms_{k}": v * 1000 for k, v in self.inference.summary().items()},
            "threshold": self.reward_cfg.reward_threshold,
            "debounce_frames": self.reward_cfg.debounce_frames,
            "last_invalid_reason": self.last_invalid,
        }
        if c["received"] == 0:
            return WARN, "no frames received yet", values
        if min(rates) == 0:
            return WARN, "a camera stopped sending frames", values
        recent_invalid = self.counts["invalid"] - getattr(self, "_health_invalid", 0)
        self._health_invalid = self.counts["invalid"]
        if recent_invalid:
            return WARN, f"{recent_invalid} invalid frames in the last second: {self.last_invalid}", values
        if lat.get("p99", 0.0) > 0.5:
            return WARN, f"p99 latency {lat['p99'] * 1000:.0f} ms: inference slower than the cameras", values
        return OK, f"scoring {sum(rates):.1f} frames/s", values

    # --- batch service ------------------------------------------------------------------
    async def _on_compute_rewards(self, request, response):
        """Scored in a helper thread in micro-batches that yield to the stream's frames, while
        the executor keeps serving the camera subscriptions (a large request cannot starve the
        stream)."""
        done = Future()

        def work() -> None:
            try:
                done.set_result(self._compute_rewards(request, response))
            except Exception as exc:
                done.set_exception(exc)
            self._wake.trigger()

        threading.Thread(target=work, name="compute-rewards", daemon=True).start()
        return await done

    def _compute_rewards(self, request, response):
        n = len(request.images)
        names = list(request.camera_names)
        response.model_id = self.scorer.model_id
        errors = [""] * n
        if names and len(names) != n:
            errors = [
                f"camera_names has {len(names)} entries for {n} images: give one per image, or none"
            ] * n
        frames: list[tuple[int, np.ndarray, bool, str | None]] = []
        for i, msg in enumerate(request.images):
            if errors[i]:
                continue
            cam = names[i] if names else self.cameras[0]
            reason = too_large(msg.height, msg.width, self.scorer.validity)
            if reason:
                errors[i] = f"image {i}: {reason}"
                continue
            try:
                rgb, grey = frame_to_rgb(msg)
            except ImageEncodingError as exc:
                errors[i] = f"image {i}: {exc}"
                continue
            frames.append((i, rgb, grey, cam))
        probs = [0.0] * n
        start = time.perf_counter()
        if frames:
            # a frame-stacked checkpoint: each camera's images, in request order, are consecutive frames
            history = self.pipeline.history()
            past = [history.push([f[1]], [f[3]]) for f in frames]
            try:
                scored = self.scorer.score(
                    [f[1] for f in frames],
                    [f[3] for f in frames],
                    [f[2] for f in frames],
                    background=True,
                    past=[p[0] if p else [] for p in past],
                )
                for (i, *_), prob, why in zip(frames, scored.probabilities, scored.reasons, strict=True):
                    probs[i] = prob
                    errors[i] = f"image {i}: {why}" if why else ""
            except ConfigError as exc:
                for i, *_ in frames:
                    errors[i] = str(exc)
        self.counts["service_images"] += n
        with self._state:
            cfg = self.reward_cfg
        valid = [not e for e in errors]
        successes = [bool(v and decide(p, cfg.reward_threshold)) for p, v in zip(probs, valid, strict=True)]
        response.probabilities = [p if v else 0.0 for p, v in zip(probs, valid, strict=True)]
        response.rewards = [model_reward(s, cfg) for s in successes]
        response.successes = successes
        response.valid = valid
        response.errors = errors
        response.threshold = float(cfg.reward_threshold)
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
