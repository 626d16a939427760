"""From frame sets to rewards: the one path reward_node and the RL reward share.

A *frame set* is one frame per camera, matched in time. `RewardPipeline.score` checks every
frame (core.validity), scores the valid ones of all sets in one batched forward pass, and
fuses each set's probabilities; `RewardPipeline.decide` maps a set's score to the decision
and reward with a per-stream `RewardMapper` (debounce, reward_mode, combine_mode). A set
with an invalid frame is never a success: its probability is 0, its reward is what a
failure gets, the debounce starts over, and the reason is carried along.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reward_model_ros.core.cameras import serve_cameras
from reward_model_ros.core.checkpoint import DecisionSettings, decision_settings
from reward_model_ros.core.reward import DEFAULT_FUSION, RewardConfig, RewardMapper, fuse
from reward_model_ros.core.scoring import FrameScorer
from reward_model_ros.core.validity import ValidityConfig


@dataclass
class FrameSet:
    frames: list[np.ndarray]
    """(H, W, 3) RGB uint8, one per camera"""
    cameras: list[str]
    """the checkpoint camera of each frame"""
    greyscale: list[bool] = field(default_factory=list)
    """per frame: converted from a mono encoding"""
    reasons: list[str | None] | None = None
    """validity already checked by the caller ('' = valid, a reason = invalid, None = check here)"""
    past: list[list[np.ndarray]] | None = None
    """per camera, its earlier frames, newest first (FrameHistory): what a frame-stacked
    checkpoint (model.frame_stack > 1) takes besides the frame; None = none (the frame stands in)"""


class FrameHistory:
    """A stream's (or an env's) last frames per camera, for frame-stacked checkpoints
    (model.frame_stack k > 1): `push` gives a set's k - 1 earlier frames per camera and keeps
    the set. Push every valid set as it arrives, also those dropped as stale, so that "the frame
    before" is the camera's previous frame as in the training episodes; `reset` at each
    episode start (the first frame then stands in for the missing ones, as in training)."""

    def __init__(self, frame_stack: int) -> None:
        self.keep = max(0, frame_stack - 1)
        self._frames: dict[str, list[np.ndarray]] = {}

    def push(self, frames: Sequence[np.ndarray], cameras: Sequence[str]) -> list[list[np.ndarray]] | None:
        if not self.keep:
            return None
        past = [list(self._frames.get(c, [])) for c in cameras]
        for f, c in zip(frames, cameras, strict=True):
            self._frames[c] = [f, *self._frames.get(c, [])][: self.keep]
        return past

    def reset(self) -> None:
        self._frames.clear()


@dataclass
class SetScore:
    probability: float
    """fused; 0.0 when the set is invalid"""
    camera_probabilities: list[float]
    valid: bool
    invalid_reason: str
    """'' when valid; else '<camera>: <why>' for the first invalid frame"""
    seconds: float
    """checks + preprocessing + inference, for this set's share of the batch"""
    inputs: np.ndarray | None = None
    """the model input of the set's first camera (debug images), when valid"""


@dataclass
class RewardResult:
    score: SetScore
    success: bool
    reward: float
    threshold: float


def invalid_score(reasons: Sequence[str | None], cameras: Sequence[str]) -> SetScore:
    """The score of a set rejected before scoring."""
    why = next(f"{c}: {r}" for c, r in zip(cameras, reasons, strict=True) if r)
    return SetScore(0.0, [0.0] * len(cameras), False, why, 0.0)


class RewardPipeline:
    def __init__(self, scorer: FrameScorer, cfg: RewardConfig, fusion: str = DEFAULT_FUSION) -> None:
        self.scorer = scorer
        self.cfg = cfg.validate()
        self.fusion = fusion
        fuse([0.0], fusion)  # refuses an unknown fusion now, not at the first frame

    def check(self, frame: np.ndarray, camera: str, greyscale: bool = False) -> str | None:
        return self.scorer.check(frame, camera, greyscale)

    def mapper(self) -> RewardMapper:
        """The per-stream (per-env) decision state; reset it at every episode start."""
        return RewardMapper(self.cfg)

    def history(self) -> FrameHistory:
        """The per-stream (per-env) frame history of a frame-stacked checkpoint (a no-op for
        frame_stack 1, and for the oracle baseline's pipeline, which has no scorer); reset it at
        every episode start."""
        return FrameHistory(self.scorer.frame_stack if self.scorer is not None else 1)

    def score(self, sets: Sequence[FrameSet], background: bool = False) -> list[SetScore]:
        """All frames of all sets in one batched pass (invalid ones skipped)."""
        frames, cameras, grey, reasons, past = [], [], [], [], []
        for s in sets:
            n = len(s.frames)
            frames += s.frames
            cameras += s.cameras
            grey += s.greyscale or [False] * n
            reasons += s.reasons if s.reasons is not None else [None] * n
            past += s.past if s.past is not None else [[]] * n
        checked = [
            r if r is not None else self.scorer.check(f, c, g)
            for f, c, g, r in zip(frames, cameras, grey, reasons, strict=True)
        ]
        scored = self.scorer.score(frames, cameras, grey, background=background, reasons=checked, past=past)
        inputs = iter(scored.inputs)
        out = []
        i = 0
        for s in sets:
            n = len(s.frames)
            probs, why = scored.probabilities[i : i + n], scored.reasons[i : i + n]
            first_input = None
            for j in range(n):
                if not why[j]:
                    x = next(inputs)
                    first_input = x if j == 0 else first_input
            share = scored.seconds * n / max(1, len(frames))
            if any(why):
                bad = invalid_score(why, s.cameras)
                bad.seconds = share
                out.append(bad)
            else:
                out.append(SetScore(fuse(probs, self.fusion), list(probs), True, "", share, first_input))
            i += n
        return out

    def decide(self, score: SetScore, mapper: RewardMapper, env_reward: float | None = None) -> RewardResult:
        """The decision and reward for the stream's next set (an invalid set: no success)."""
        success, reward = mapper.step(score.probability if score.valid else None, env_reward)
        return RewardResult(score, success, reward, mapper.cfg.reward_threshold)


REWARD_KEYS = (
    "reward_mode",
    "success_reward",
    "fail_reward",
    "combine_mode",
    "reward_weight",
    "env_reward_weight",
)


def build_pipeline(
    ckpt: Any,
    inputs: Sequence[str],
    camera_names: Sequence[str] = (),
    crop_boxes: Sequence[Sequence[int] | None] | None = None,
    validity: ValidityConfig | None = None,
    reward: dict[str, Any] | None = None,
    threshold: float = -1.0,
    debounce: int = -1,
    fusion: str = "",
    micro_batch_size: int = 256,
) -> tuple[RewardPipeline, DecisionSettings, list[str]]:
    """Everything between a loaded checkpoint and rewards, as reward_node and the RL reward
    both build it: the camera of each input (and crop boxes), the scorer with its frame
    checks, the decision settings (explicit values, else the checkpoint's recommendation),
    and the reward mapping (`reward`: the REWARD_KEYS of RLinf's vocabulary).

    :raises ConfigError: cameras that match nothing, bad settings.
    """
    cameras = serve_cameras(ckpt, inputs, camera_names, crop_boxes)
    scorer = FrameScorer(ckpt, micro_batch_size, validity)
    settings = decision_settings(ckpt, threshold, debounce, fusion)
    keys = {k: v for k, v in (reward or {}).items() if k in REWARD_KEYS}
    cfg = RewardConfig(
        reward_threshold=settings.reward_threshold, debounce_frames=settings.debounce_frames, **keys
    )
    return RewardPipeline(scorer, cfg, settings.camera_fusion), settings, cameras
