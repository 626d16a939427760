"""Reward-hacking monitor: the model's success beside ground truth, on the policy's own episodes.

RLinf's troubleshooting names the failure: "success rate 0 but the reward rises" (成功率为 0
但奖励增加): the policy has found frames the classifier mistakes for success. Per episode
the monitor logs, under `reward/`, the agreement of the model's decision with ground truth,
the false-positive rate (model success, ground truth failure), the false-negative rate, the
mean model reward and the ground-truth success rate, over a sliding window of episodes; it
warns when the model's success rate runs ahead of ground truth. It also keeps the frames where
the per-frame decision and ground truth disagree (capped), as a dataset in the `reward-model
process` format (`manifest.jsonl` + `images/`, labelled with ground truth), so that the
classifier can be retrained on the policy's own mistakes:

    reward-model train --data runs/demo/dataset --data runs/rl/<run>/disagreements

Ground truth is used here only to watch the learner, never to teach it.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)


class RewardHackingMonitor:
    def __init__(
        self,
        save_dir: str | Path | None = None,
        max_frames: int = 2000,
        window: int = 50,
        warn_gap: float = 0.1,
        cameras: list[str] | None = None,
        every_nth: int = 1,
        warn_false_positive_rate: float = 0.1,
    ) -> None:
        """`save_dir`: where disagreeing frames go (None: not saved); `max_frames`: cap;
        `window`: episodes the rates are computed over; `warn_gap`: warn when the model's
        success rate exceeds ground truth's by more than this; `warn_false_positive_rate`:
        warn when more than this share of the episodes the model judged successful were not
        (a policy that found the classifier's blind spot can keep the gap small while its
        false negatives fall); `every_nth`: keep one of every n disagreeing frames of an
        episode (consecutive frames are near-identical)."""
        self.save_dir = Path(save_dir) if save_dir else None
        self.max_frames, self.warn_gap, self.every_nth = max_frames, warn_gap, max(1, every_nth)
        self.warn_false_positive_rate = warn_false_positive_rate
        self.cameras = cameras or ["camera"]
        self.recent: deque[dict[str, Any]] = deque(maxlen=window)
        self.saved = 0
        self.episode_count = 0
        self._frame_index: dict[int, int] = {}
        self._run: dict[int, int] = {}
        self._episode_id: dict[int, int] = {}
        self._warned_at = -(10**9)
        self.totals = {"episodes": 0, "false_positive": 0, "false_negative": 0, "agree": 0}
        if self.save_dir is not None:
            (self.save_dir / "images").mkdir(parents=True, exist_ok=True)

    # --- per frame (LearnedRewardEnv calls these) -------------------------------------
    def end_episode(self, env: int) -> None:
        """A sub-env's episode ended: the next frames belong to a new episode."""
        self._episode_id[env] = self._episode_id.get(env, 0) + 1
        self._frame_index[env] = 0
        self._run[env] = 0

    def on_frame(self, env: int, frames: list[np.ndarray], probability: float, model: bool, gt: bool) -> None:
        """`model`: the frame's own decision (probability >= threshold, before any debounce)."""
        index = self._frame_index.get(env, 0)
        self._frame_index[env] = index + 1
        if model == gt or self.save_dir is None or self.saved >= self.max_frames:
            self._run[env] = 0
            return
        run = self._run.get(env, 0)
        self._run[env] = run + 1
        if run % self.every_nth:
            return
        episode = f"rl_env{env:03d}_ep{self._episode_id.get(env, 0):06d}"
        images = {}
        for cam, rgb in zip(self.cameras, frames, strict=True):
            rel = f"images/{episode}/{index:06d}_{cam}.png"
            (self.save_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(self.save_dir / rel), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            images[cam] = rel
        row = {
            "episode": episode,
            "frame": index,
            "stamp_ns": index,
            "label": int(gt),
            "episode_label": int(gt),
            "split": "train",
            "images": images,
            "mode": "rl_false_positive" if model else "rl_false_negative",
            "model_probability": float(probability),
        }
        with (self.save_dir / "manifest.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.saved += 1
        if self.saved == self.max_frames:
            log.info("reward monitor: saved %d disagreeing frames (the cap) in %s", self.saved, self.save_dir)

    # --- per episode (RunLogger's on_episodes hook) -----------------------------------
    def on_episodes(self, episodes: list[dict[str, Any]], step: int) -> dict[str, float]:
        for ep in episodes:
            model, gt = bool(ep["success"]), bool(ep["gt_success"])
            self.recent.append({"model": model, "gt": gt, "return": float(ep["return"])})
            self.totals["episodes"] += 1
            self.totals["false_positive"] += model and not gt
            self.totals["false_negative"] += gt and not model
            self.totals["agree"] += model == gt
        stats = self.stats()
        gap = stats.get("reward/model_minus_gt_success", 0.0)
        fp_rate = stats.get("reward/false_positive_rate", 0.0)
        enough = len(self.recent) >= min(10, self.recent.maxlen or 10)
        quiet = self.totals["episodes"] - self._warned_at >= (self.recent.maxlen or 10)  # once per window
        if enough and quiet and (gap > self.warn_gap or fp_rate > self.warn_false_positive_rate):
            self._warned_at = self.totals["episodes"]
            log.warning(
                "reward hacking suspected at step %d: over the last %d episodes the model judged %.0f%% "
                "successful but ground truth says %.0f%% (false positives %.0f%%); the disagreeing frames "
                "are in %s",
                step,
                len(self.recent),
                100 * stats["reward/model_success_rate"],
                100 * stats["reward/gt_success_rate"],
                100 * stats["reward/false_positive_rate"],
                self.save_dir or "(not saved: set a save_dir)",
            )
        return stats

    def stats(self) -> dict[str, float]:
        if not self.recent:
            return {}
        r = list(self.recent)
        n = len(r)
        model = sum(e["model"] for e in r) / n
        gt = sum(e["gt"] for e in r) / n
        fp = sum(e["model"] and not e["gt"] for e in r)
        fn = sum(e["gt"] and not e["model"] for e in r)
        judged = sum(e["model"] for e in r)
        real = sum(e["gt"] for e in r)
        return {
            "reward/model_success_rate": model,
            "reward/gt_success_rate": gt,
            "reward/model_minus_gt_success": model - gt,
            "reward/agreement": sum(e["model"] == e["gt"] for e in r) / n,
            "reward/false_positive_rate": fp / judged if judged else 0.0,
            "reward/false_negative_rate": fn / real if real else 0.0,
            "reward/mean_episode_reward": sum(e["return"] for e in r) / n,
            "reward/disagreeing_frames_saved": float(self.saved),
        }
