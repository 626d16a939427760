"""Score camera frames with a checkpoint: validity checks -> preprocess -> batched model.

One `FrameScorer` serves every user of a checkpoint (reward_node's stream and batch
service, `evaluate`, `predict`, the RL reward), so they all check, crop, resize and score
alike. Thread-safe, with priorities: the stream's frames (foreground) go first; a batch
request (background) is scored in micro-batches and yields the model to waiting stream
frames between them, so a large service call cannot starve the camera stream.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from reward_model_ros.core.checkpoint import Checkpoint
from reward_model_ros.core.config import ConfigError
from reward_model_ros.core.inference import BatchScorer
from reward_model_ros.core.preprocess import Preprocessor
from reward_model_ros.core.validity import ValidityConfig, check_frame

NONFINITE = "the model returned a non-finite probability for this frame"


@dataclass
class ScoredSet:
    probabilities: list[float]
    """one per frame, in the order given; always finite: 0.0 where the frame is invalid"""
    valid: list[bool]
    """False where the frame failed a validity check (or the model output was not finite)"""
    reasons: list[str]
    """why a frame is invalid ('' for valid ones)"""
    inputs: np.ndarray
    """the model inputs of the valid frames, (V, 3, H, W) uint8 (for debug images)"""
    seconds: float
    """checks + preprocessing + inference time"""
    logits: list[float] = field(default_factory=list)
    """raw logits (before calibration's temperature), one per frame; 0.0 where invalid"""

    @property
    def all_valid(self) -> bool:
        return all(self.valid)


class _PriorityLock:
    """One model user at a time; foreground holders go before waiting background ones."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._busy = False
        self._foreground_waiting = 0

    @contextlib.contextmanager
    def hold(self, foreground: bool) -> Iterator[None]:
        with self._cv:
            self._foreground_waiting += foreground
            self._cv.wait_for(lambda: not self._busy and (foreground or self._foreground_waiting == 0))
            self._foreground_waiting -= foreground
            self._busy = True
        try:
            yield
        finally:
            with self._cv:
                self._busy = False
                self._cv.notify_all()


class FrameScorer:
    def __init__(
        self,
        checkpoint: Checkpoint,
        micro_batch_size: int = 256,
        validity: ValidityConfig | None = None,
        background_chunk: int = 16,
        background_budget_s: float = 0.02,
    ) -> None:
        self.checkpoint = checkpoint
        self.preprocess = Preprocessor(checkpoint.config)
        self.scorer = BatchScorer(checkpoint.model, micro_batch_size)
        self.validity = (validity or ValidityConfig()).validate()
        # a background (batch service) chunk holds the model for at most ~background_budget_s,
        # so a streamed frame waits no longer than that: chunks are sized from the measured
        # time per image, between 1 and background_chunk images
        self.background_chunk = max(1, background_chunk)
        self.background_budget_s = background_budget_s
        self._seconds_per_image: float | None = None
        training = checkpoint.training or {}
        self.trained_sizes: dict[str, list[int]] = dict(training.get("frame_sizes") or {})
        self.trained_colour: bool = bool(training.get("colour", True))
        self._lock = _PriorityLock()
        self.views = checkpoint.config.views
        """frames per model input: a joint multi-view checkpoint's camera count, else 1"""
        self.frame_stack = checkpoint.config.frame_stack
        """frames of each camera per input: this one and frame_stack - 1 before it (`past`)"""

    @property
    def model_id(self) -> str:
        return self.checkpoint.model_id

    def check(self, rgb: np.ndarray, camera: str | None = None, greyscale_source: bool = False) -> str | None:
        """Why this frame cannot be judged, or None (see core.validity)."""
        return check_frame(
            rgb, self.validity, self.trained_sizes.get(camera or ""), greyscale_source, self.trained_colour
        )

    def score(
        self,
        frames: Sequence[np.ndarray],
        cameras: Sequence[str | None] | None = None,
        greyscale: Sequence[bool] | None = None,
        background: bool = False,
        reasons: Sequence[str | None] | None = None,
        past: Sequence[Sequence[np.ndarray]] | None = None,
    ) -> ScoredSet:
        """Probabilities for RGB frames (H, W, 3) uint8 of any size. `greyscale`: per frame,
        converted from a mono encoding. `reasons`: checks already run by the caller (None =
        run them here). `background`: a batch request that yields to the stream.

        A frame-stacked checkpoint (`frame_stack` k > 1) also takes, per frame, that camera's
        earlier frames, newest first (`past`, from the stream's FrameHistory or the dataset's
        episode): the earliest given stands in for missing ones, the frame itself for none,
        as at an episode's start in training.

        A joint multi-view checkpoint (`views` > 1) judges frame sets: the frames come in
        consecutive groups of `views`, one frame of each checkpoint camera per group in any
        order; every frame of a group gets the group's probability, and a group with an
        invalid frame is invalid as a whole.

        :raises ConfigError: frames that do not form whole sets of a joint model's cameras.
        """
        start = time.perf_counter()
        n = len(frames)
        cameras = list(cameras) if cameras is not None else [None] * n
        greyscale = list(greyscale) if greyscale is not None else [False] * n
        if reasons is None:
            reasons = [self.check(f, c, g) for f, c, g in zip(frames, cameras, greyscale, strict=True)]
        why = [r or "" for r in reasons]
        groups = self._groups(cameras)
        for g in groups:  # one invalid frame makes its whole set unjudgeable
            bad = next((i for i in g if why[i]), None)
            if bad is not None:
                for i in g:
                    why[i] = why[i] or f"the set's {cameras[bad]} frame is invalid: {why[bad]}"
        keep = [i for i in range(n) if not why[i]]
        probs, logits = [0.0] * n, [0.0] * n
        inputs = np.zeros((0, 3, self.preprocess.height, self.preprocess.width), np.uint8)
        if keep:
            inputs = self.preprocess.batch([frames[i] for i in keep], [cameras[i] for i in keep])
            valid_groups = [g for g in groups if not why[g[0]]]
            at = {i: k for k, i in enumerate(keep)}
            batch = inputs if self.frame_stack == 1 else self._stacked(inputs, keep, cameras, past)
            if self.views > 1:  # (sets, V, 3, H, W) in the checkpoint's camera order
                order = self.checkpoint.config.camera_names
                batch = np.stack(
                    [
                        batch[[at[i] for i in sorted(g, key=lambda i: order.index(cameras[i]))]]
                        for g in valid_groups
                    ]
                )
            out = []
            s = 0
            while s < len(batch):
                step = self._chunk() if background else len(batch)
                with self._lock.hold(foreground=not background):
                    t = time.perf_counter()
                    out.append(self.scorer.predict(batch[s : s + step]))
                    self._timed(time.perf_counter() - t, len(out[-1].probabilities) * self.views)
                s += step
            set_probs = np.concatenate([o.probabilities for o in out])
            set_logits = np.concatenate([o.logits for o in out])
            for g, p, z in zip(valid_groups, set_probs, set_logits, strict=True):
                for i in g:
                    if math.isfinite(float(p)):
                        probs[i], logits[i] = float(p), float(z)
                    else:
                        why[i] = NONFINITE
        return ScoredSet(probs, [not r for r in why], why, inputs, time.perf_counter() - start, logits)

    def _stacked(
        self,
        inputs: np.ndarray,
        keep: list[int],
        cameras: list[str | None],
        past: Sequence[Sequence[np.ndarray]] | None,
    ) -> np.ndarray:
        """(N, 3k, H, W): each kept frame's input with its k - 1 earlier frames' behind it."""
        k = self.frame_stack
        earlier: list[np.ndarray] = []  # (k - 1) inputs per kept frame, newest first
        for j, i in enumerate(keep):
            given = list(past[i]) if past is not None and past[i] is not None else []
            if given:
                pre = self.preprocess.batch(given[: k - 1], [cameras[i]] * min(len(given), k - 1))
                pre = [*pre, *[pre[-1]] * (k - 1 - len(pre))]
            else:
                pre = [inputs[j]] * (k - 1)
            earlier += pre
        back = np.stack(earlier).reshape(len(keep), (k - 1) * 3, *inputs.shape[-2:])
        return np.concatenate([inputs, back], axis=1)

    def _groups(self, cameras: list[str | None]) -> list[list[int]]:
        """Frame indices per model input: one frame each, or a joint model's sets."""
        v = self.views
        if v == 1:
            return [[i] for i in range(len(cameras))]
        known = list(self.checkpoint.config.camera_names)
        groups = [list(range(s, min(s + v, len(cameras)))) for s in range(0, len(cameras), v)]
        for g in groups:
            if sorted(str(cameras[i]) for i in g) != sorted(known):
                raise ConfigError(
                    f"this checkpoint judges the frames of its cameras {known} together "
                    f"(model.multi_view=joint): frames come in sets of one frame per camera, but a set "
                    f"has cameras {[cameras[i] for i in g]}; give every camera a frame (reward_node: "
                    "one image topic per camera; the batch service: images in sets, camera_names set)"
                )
        return groups

    def _chunk(self) -> int:
        if self._seconds_per_image is None:
            return max(1, min(4, self.background_chunk) // self.views)
        fits = int(self.background_budget_s / self._seconds_per_image) // self.views
        return max(1, min(self.background_chunk, fits))

    def _timed(self, seconds: float, images: int) -> None:
        per = seconds / max(1, images)
        old = self._seconds_per_image
        self._seconds_per_image = per if old is None else 0.8 * old + 0.2 * per

    def warm_up(self) -> None:
        """One forward pass so the first real frame does not pay for lazy initialisation."""
        _, h, w = self.checkpoint.config.image_size
        c = self.checkpoint.config.in_channels
        for _ in range(3):  # oneDNN picks and caches its kernels over the first calls
            with self._lock.hold(foreground=True):
                self.scorer(np.zeros((1, c, h, w) if self.views == 1 else (1, self.views, c, h, w), np.uint8))
