"""Score camera frames with a checkpoint: decode -> preprocess -> batched model -> probabilities.

Thread-safe: the reward node scores streamed frames in a worker thread and batch
requests in its service callback, through one `FrameScorer`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from reward_model_ros.core.checkpoint import Checkpoint
from reward_model_ros.core.inference import BatchScorer
from reward_model_ros.core.preprocess import Preprocessor


@dataclass
class ScoredSet:
    probabilities: list[float]
    """one per frame, in the order given"""
    inputs: np.ndarray
    """the model inputs, (N, 3, H, W) uint8 (for debug images)"""
    seconds: float
    """preprocessing + inference time"""


class FrameScorer:
    def __init__(self, checkpoint: Checkpoint, micro_batch_size: int = 256) -> None:
        self.checkpoint = checkpoint
        self.preprocess = Preprocessor(checkpoint.config)
        self.scorer = BatchScorer(checkpoint.model, micro_batch_size)
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.checkpoint.model_id

    def score(self, frames: list[np.ndarray], cameras: list[str | None] | None = None) -> ScoredSet:
        """Probabilities for RGB frames (H, W, 3) uint8 of any size."""
        start = time.perf_counter()
        inputs = self.preprocess.batch(frames, cameras)
        with self._lock:
            probs = self.scorer(inputs)
        return ScoredSet([float(p) for p in probs], inputs, time.perf_counter() - start)

    def warm_up(self) -> None:
        """One forward pass so the first real frame does not pay for lazy initialisation."""
        _, h, w = self.checkpoint.config.image_size
        for _ in range(3):  # oneDNN picks and caches its kernels over the first calls
            self.score([np.zeros((h, w, 3), np.uint8)])
