"""A small synthetic, separable dataset in `reward-model process` format (for training tests)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def make_dataset(root: Path, episodes: int = 8, frames: int = 12, size: int = 48, seed: int = 0) -> Path:
    """Episodes alternate success/failure; a success episode's last half is positive.
    Positive frames show a green disc, negative ones a red disc, on a noisy background;
    every fourth episode per label goes to validation."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(episodes):
        success = e % 2 == 0
        key = f"ep{e:03d}"
        split = "val" if (e // 2) % 4 == 3 else "train"
        for i in range(frames):
            label = int(success and i >= frames // 2)
            rel = _disc_frame(root, rng, key, i, size, (0, 200, 0) if label else (200, 0, 0))
            rows.append(
                {
                    "episode": key,
                    "frame": i,
                    "stamp_ns": i * 50_000_000,
                    "label": label,
                    "episode_label": int(success),
                    "split": split,
                    "images": {"camera": rel},
                }
            )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


MODE_COLOURS = {"red": (200, 0, 0), "blue": (0, 0, 200), "dark": (30, 30, 30)}  # RGB of a failure disc


def make_mode_dataset(
    root: Path,
    modes: tuple[str, ...] = ("red", "blue"),
    per_outcome: int = 3,
    frames: int = 8,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Like make_dataset, with failure modes: `per_outcome` success episodes (mode "success",
    the last half green) and as many failure episodes of each mode (a disc of the mode's
    colour, see MODE_COLOURS); the last episode of each goes to validation."""
    rng = np.random.default_rng(seed)
    rows = []
    for mode in ("success", *modes):
        for e in range(per_outcome):
            key = f"{mode}{e:02d}"
            for i in range(frames):
                label = int(mode == "success" and i >= frames // 2)
                colour = (0, 200, 0) if label else MODE_COLOURS.get(mode, (120, 120, 120))
                rel = _disc_frame(root, rng, key, i, size, colour)
                rows.append(
                    {
                        "episode": key,
                        "frame": i,
                        "stamp_ns": i * 50_000_000,
                        "label": label,
                        "episode_label": int(mode == "success"),
                        "split": "val" if e == per_outcome - 1 else "train",
                        "images": {"camera": rel},
                        "seed": seed * 1000 + e,
                        "mode": mode,
                    }
                )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def make_two_view_dataset(
    root: Path, per_outcome: int = 4, frames: int = 6, size: int = 32, seed: int = 0
) -> Path:
    """Two cameras, `front` and `side`, where only the relation between the views tells the
    outcome: a success sample shows discs of the same colour in both views (modes `green`,
    `red`), a failure sample different colours (`front_green`, `side_green`). Every colour is
    as often success as failure in each view, so a model judging each view alone cannot do
    better than chance, whatever the fusion; a joint one can. The last episode of each mode
    goes to validation."""
    rng = np.random.default_rng(seed)
    green, red = (0, 200, 0), (200, 0, 0)
    views = {
        "green": (green, green),
        "red": (red, red),
        "front_green": (green, red),
        "side_green": (red, green),
    }
    success = {"green", "red"}
    rows = []
    for mode, (front, side) in views.items():
        for e in range(per_outcome):
            key = f"{mode}{e:02d}"
            for i in range(frames):
                images = {}
                for cam, colour in (("front", front), ("side", side)):
                    rel = _disc_frame(root, rng, f"{key}_{cam}", i, size, colour)
                    images[cam] = rel
                rows.append(
                    {
                        "episode": key,
                        "frame": i,
                        "stamp_ns": i * 50_000_000,
                        "label": int(mode in success),
                        "episode_label": int(mode in success),
                        "split": "val" if e == per_outcome - 1 else "train",
                        "images": images,
                        "seed": seed * 1000 + e,
                        "mode": mode,
                    }
                )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def make_motion_dataset(
    root: Path, episodes: int = 16, frames: int = 12, size: int = 32, seed: int = 0
) -> Path:
    """Only motion tells the outcome: every frame shows the same grey disc on the episode's
    fixed background. The disc jumps to a new place every frame, except in a success episode's
    second half, where it stops: a frame is a success when its disc is where the frame before
    had it. Any single frame is a disc somewhere, so a model judging frames alone cannot beat
    chance; one that sees the frame before can. Every fourth episode per outcome goes to
    validation."""
    rng = np.random.default_rng(seed)
    rows = []
    yy, xx = np.mgrid[:size, :size]
    for e in range(episodes):
        success = e % 2 == 0
        key = f"ep{e:03d}"
        background = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        (root / "images" / key).mkdir(parents=True, exist_ok=True)
        centre = rng.integers(6, size - 6, 2)
        for i in range(frames):
            still = success and i > frames // 2
            if not still:
                centre = rng.integers(6, size - 6, 2)
            img = background.copy()
            img[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= 25] = (200, 200, 200)
            rel = f"images/{key}/{i:06d}.png"
            cv2.imwrite(str(root / rel), img)
            rows.append(
                {
                    "episode": key,
                    "frame": i,
                    "stamp_ns": i * 50_000_000,
                    "label": int(still),
                    "episode_label": int(success),
                    "split": "val" if (e // 2) % 4 == 3 else "train",
                    "images": {"camera": rel},
                }
            )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


# `reward-model train` overrides for tests: a one-step, 32x32 resnet10 on the CPU
TINY_TRAIN = [
    "model.arch=resnet10",
    "model.image_size=[3,32,32]",
    "model.hidden_dim=16",
    "actor.global_batch_size=16",
    "actor.micro_batch_size=16",
    "runner.max_steps=1",
    "runner.save_interval=0",
    "runner.progress=false",
    "runner.precision=fp32",
    "device=cpu",
]


def tiny_train_config(out: Path, *overrides: str):
    """The shipped training config with TINY_TRAIN and `overrides`, writing under `out`."""
    from reward_model_ros.core.overrides import apply_overrides
    from reward_model_ros.paths import share_dir
    from reward_model_ros.training.train import TrainConfig

    return apply_overrides(
        TrainConfig(),
        [*TINY_TRAIN, f"runner.output_dir={out}", f"runner.logger.log_path={out / 'logs'}", *overrides],
        [share_dir() / "config" / "train_reward.yaml"],
    )


def _disc_frame(root: Path, rng: np.random.Generator, key: str, i: int, size: int, colour) -> str:
    """A noisy size x size frame with a disc of `colour` (RGB) at a random place, written as
    images/<key>/<i>_camera.png under `root`; returns that relative path."""
    img = rng.integers(40, 90, (size, size, 3), np.uint8)
    cx, cy = (int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
    cv2.circle(img, (cx, cy), size // 6, colour, -1)
    rel = f"images/{key}/{i:06d}_camera.png"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return rel
