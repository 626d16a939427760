"""TensorBoard scalars, a tqdm bar and an in-memory history for the RL training loops.

Tags: `charts/` (episodes, learning rate), `losses/`, `reward/` (the reward signal and how it
agrees with ground truth: monitoring only), `time/`, `eval/`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

EpisodeHook = Callable[[list[dict[str, Any]], int], None]
"""(episodes that ended, env step) -> None; e.g. a reward-hacking monitor"""
NOT_LOGGED = ("env_index",)


def _num(v: Any) -> float:
    return float(v.item()) if torch.is_tensor(v) else float(v)


def summarize_episodes(episodes: list[dict[str, Any]]) -> dict[str, float]:
    """Means over episodes: charts/episodic_return, episodic_length, success_rate (the reward
    model's), gt_success_rate, and charts/<key> for every other numeric key."""
    if not episodes:
        return {}
    out = {
        "charts/episodic_return": _mean(ep["return"] for ep in episodes),
        "charts/episodic_length": _mean(ep["length"] for ep in episodes),
        "charts/success_rate": _mean(ep["success"] for ep in episodes),
    }
    if all("gt_success" in ep for ep in episodes):
        out["charts/gt_success_rate"] = _mean(ep["gt_success"] for ep in episodes)
        out["reward/model_gt_agreement"] = _mean(
            bool(ep["success"]) == bool(ep["gt_success"]) for ep in episodes
        )
    skip = {"return", "length", "success", "gt_success", *NOT_LOGGED}
    extra = sorted({k for ep in episodes for k, v in ep.items() if k not in skip and _is_number(v)})
    for k in extra:
        out[f"charts/{k}"] = _mean(ep[k] for ep in episodes if k in ep and _is_number(ep[k]))
    return out


def _is_number(v: Any) -> bool:
    if torch.is_tensor(v):
        return v.numel() == 1
    return isinstance(v, int | float | bool) and not (isinstance(v, float) and math.isnan(v))


def _mean(values: Iterable[Any]) -> float:
    vals = [_num(v) for v in values]
    return sum(vals) / len(vals)


class RunLogger:
    """Logs to TensorBoard under `log_dir` (none when empty), shows a tqdm bar over `total_steps`
    when `progress`, and keeps `history`: one dict {"step", tag: value, ...} per logging call."""

    def __init__(self, log_dir: str | Path | None = None, progress: bool = False, total_steps: int = 0):
        self.writer = None
        if log_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir))
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, unit="step", dynamic_ncols=True)
        self.history: list[dict[str, float]] = []
        self.on_episodes: list[EpisodeHook] = []
        """called with (episodes, step) for every batch of finished episodes"""
        self._last_step = 0

    def scalar(self, tag: str, value: Any, step: int) -> None:
        self.scalars({tag: value}, step)

    def scalars(self, values: dict[str, Any], step: int) -> None:
        """Log several tags at one step (one history record)."""
        if not values:
            return
        record = {tag: _num(v) for tag, v in values.items()}
        if self.writer is not None:
            for tag, v in record.items():
                self.writer.add_scalar(tag, v, step)
        self.history.append({"step": step, **record})

    def episodes(self, episodes: list[dict[str, Any]], step: int) -> dict[str, float]:
        """Log the means over the episodes that ended at `step`, call the hooks; returns the means."""
        if not episodes:
            return {}
        summary = summarize_episodes(episodes)
        self.scalars(summary, step)
        for hook in self.on_episodes:
            hook(episodes, step)
        if self.bar is not None:
            self.bar.set_postfix(
                ret=f"{summary['charts/episodic_return']:.2f}",
                success=f"{summary['charts/success_rate']:.2f}",
            )
        return summary

    def progress(self, step: int) -> None:
        """Move the bar to `step`."""
        if self.bar is not None:
            self.bar.update(max(0, step - self._last_step))
        self._last_step = step

    def start_at(self, step: int) -> None:
        """Start the bar at `step` (a resumed run)."""
        if self.bar is not None:
            self.bar.reset(total=self.bar.total)
            self.bar.update(step)
        self._last_step = step

    def curve(self, tag: str) -> list[tuple[int, float]]:
        """(step, value) pairs of one tag from the history."""
        return [(int(r["step"]), r[tag]) for r in self.history if tag in r]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.bar is not None:
            self.bar.close()
