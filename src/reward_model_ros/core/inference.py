"""Batched scoring with micro-batches, on CPU or CUDA."""

from __future__ import annotations

import numpy as np
import torch

from reward_model_ros.core.model import ResNetRewardModel, RewardPrediction


class BatchScorer:
    """Scores uint8 batches, (N, 3, H, W) (or (N, V, 3, H, W) for a joint multi-view model), in
    micro-batches of at most `micro_batch_size` model inputs."""

    def __init__(self, model: ResNetRewardModel, micro_batch_size: int = 256) -> None:
        if micro_batch_size < 1:
            raise ValueError(f"micro_batch_size={micro_batch_size}: must be >= 1")
        self.model = model.eval()
        self.micro_batch_size = micro_batch_size

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Success probabilities, float32 (N,)."""
        return self.predict(images).probabilities

    def predict(self, images: np.ndarray) -> RewardPrediction:
        """Probabilities and raw logits, float32 (N,) each."""
        if images.ndim not in (4, 5):
            raise ValueError(f"expected (N, 3, H, W) or (N, V, 3, H, W) images, got shape {images.shape}")
        probs, logits = np.empty(len(images), np.float32), np.empty(len(images), np.float32)
        pin = self.model.device.type == "cuda"
        for start in range(0, len(images), self.micro_batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + self.micro_batch_size]))
            if pin:
                chunk = chunk.pin_memory()
            out = self.model.predict(chunk)
            probs[start : start + len(chunk)] = out.probabilities
            logits[start : start + len(chunk)] = out.logits
        return RewardPrediction(probs, logits)


def pick_device(requested: str) -> torch.device:
    """'auto' -> CUDA when available else CPU; 'cuda' without CUDA is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={requested!r} but CUDA is not available here; use device=cpu or auto")
    return torch.device(requested)
