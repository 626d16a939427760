"""Training examples from a dataset built by `reward-model process`: one example per camera
image of a sample, preprocessed exactly as reward_node does, augmented for training."""

from __future__ import annotations

import functools
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from reward_model_ros.core.config import ModelConfig
from reward_model_ros.core.preprocess import Preprocessor


@dataclass
class Example:
    path: Path
    label: int
    episode: str
    frame: int
    camera: str
    stamp_ns: int = 0
    views: tuple[tuple[Path, str], ...] = ()
    """a joint multi-view example: (path, camera) of every view in the model's camera order
    (path and camera are then the first view's)"""
    past: tuple[tuple[Path, ...], ...] = ()
    """model.frame_stack > 1: per view (one entry for a single-view example), the paths of that
    camera's frame_stack - 1 frames before this one, newest first"""


def earlier_rows(rows: list[dict], frame_stack: int, where: object = "the dataset") -> list[list[dict]]:
    """Per row, the frame_stack - 1 rows of its episode before it, newest first; at the
    episode's start its first row stands in for the missing ones, as reward_node's stream
    history does.

    :raises ValueError: an episode with frames missing between its first and last (a dataset
        built with fail_success_ratio > 0 keeps a sample of the frames): a stacked model needs
        every frame.
    """
    if frame_stack <= 1:
        return [[] for _ in rows]
    by_ep: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        by_ep[r["episode"]][int(r["frame"])] = r
    for ep, frames in by_ep.items():
        if len(frames) != max(frames) - min(frames) + 1:
            raise ValueError(
                f"{where}: episode {ep} has {len(frames)} of the frames {min(frames)}..{max(frames)}; "
                f"model.frame_stack={frame_stack} needs each frame's predecessors, and a dataset built "
                "with fail_success_ratio > 0 or a set of mined frames keeps only some: rebuild it with "
                "`reward-model process` and fail_success_ratio 0, or train with model.frame_stack=1"
            )
    out = []
    for r in rows:
        frames, f = by_ep[r["episode"]], int(r["frame"])
        first = min(frames)
        out.append([frames[max(first, f - j)] for j in range(1, frame_stack)])
    return out


def examples_from(
    rows: list[dict],
    root: Path,
    joint_cameras: list[str] | None = None,
    frame_stack: int = 1,
    context: list[dict] | None = None,
) -> list[Example]:
    """One example per camera image of each sample, or, with `joint_cameras` (a joint
    multi-view model's camera_names), one per sample holding all its views in that order.
    With `frame_stack` > 1 each example also holds its camera's earlier frames, looked up in
    `context` (all the split's rows, default `rows`: a sampled subset still finds them)."""
    past_of: dict[tuple[str, int], list[dict]] = {}
    if frame_stack > 1:
        ctx = context if context is not None else rows
        past_of = {
            (r["episode"], int(r["frame"])): e
            for r, e in zip(ctx, earlier_rows(ctx, frame_stack, root), strict=True)
        }

    def past(r: dict, cams: list[str]) -> tuple[tuple[Path, ...], ...]:
        if frame_stack <= 1:
            return ()
        earlier = past_of[(r["episode"], int(r["frame"]))]
        return tuple(tuple(root / e["images"][c] for e in earlier) for c in cams)

    def example(r: dict, cam: str, views: tuple = (), cams: list[str] | None = None) -> Example:
        path = root / r["images"][cam]
        return Example(
            path,
            int(r["label"]),
            r["episode"],
            int(r["frame"]),
            cam,
            int(r.get("stamp_ns", 0)),
            views,
            past(r, cams or [cam]),
        )

    if joint_cameras:
        return [
            example(
                r, joint_cameras[0], tuple((root / r["images"][c], c) for c in joint_cameras), joint_cameras
            )
            for r in rows
        ]
    return [example(r, cam) for r in rows for cam in r["images"]]


def dataset_cameras(rows: list[dict], where: Path | str = "the dataset") -> list[str]:
    """The dataset's camera names, in its order (the reference camera first); every sample
    must have the same cameras."""
    if not rows:
        return []
    cameras = list(rows[0]["images"])
    for r in rows:
        if list(r["images"]) != cameras:
            raise ValueError(
                f"{where}: sample {r['episode']}#{r['frame']} has cameras {list(r['images'])}, the first "
                f"sample {cameras}: rebuild the dataset with `reward-model process`"
            )
    return cameras


def sample_rows(rows: list[dict], per_episode: int, ratio: float, seed: int) -> list[dict]:
    """data.num_samples_per_episode and data.fail_success_ratio applied to the training rows."""
    rng = random.Random(seed)
    if per_episode > 0:
        by_ep: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            by_ep[r["episode"]].append(r)
        rows = [
            r for ep in by_ep.values() for r in (rng.sample(ep, per_episode) if len(ep) > per_episode else ep)
        ]
    if ratio > 0:
        pos = [r for r in rows if r["label"] == 1]
        neg = [r for r in rows if r["label"] == 0]
        want = round(ratio * len(pos))
        if pos and len(neg) > want:
            neg = rng.sample(neg, want)
        rows = pos + neg
    return sorted(rows, key=lambda r: (r["episode"], r["frame"]))


def episode_modes(rows: list[dict]) -> dict[str, str]:
    """episode -> its manifest `mode` ('' where the dataset records none)."""
    return {r["episode"]: str(r.get("mode", "")) for r in rows}


def mode_counts(episodes: dict[str, dict[str, str]]) -> dict[str, int]:
    """Episodes per mode over the parts of `episodes` ({part: {episode: mode}})."""
    counts: dict[str, int] = defaultdict(int)
    for part in episodes.values():
        for mode in part.values():
            counts[mode] += 1
    return dict(sorted(counts.items()))


def exclude_modes(rows: list[dict], modes: list[str], where: object = "the dataset") -> list[dict]:
    """`rows` without the episodes whose manifest `mode` is one of `modes` (data.exclude_modes).

    :raises ValueError: a named mode that no episode has; the message lists the modes there are.
    """
    if not modes:
        return rows
    present = {str(r.get("mode", "")) for r in rows}
    unknown = [m for m in modes if m not in present]
    if unknown:
        known = ", ".join(sorted(m for m in present if m)) or "none (the manifest has no `mode` field)"
        raise ValueError(
            f"data.exclude_modes: no episode of {where} has mode {', '.join(map(repr, unknown))}; "
            f"its modes are: {known}"
        )
    drop = set(modes)
    return [r for r in rows if str(r.get("mode", "")) not in drop]


def load_frame(path: Path) -> tuple[np.ndarray, bool]:
    """(RGB uint8 frame, whether the file is greyscale). 16-bit files are refused rather than
    silently cut to 8 bits (a depth image is no camera frame the model knows).

    :raises FileNotFoundError: missing or undecodable file. :raises ValueError: 16-bit or
        float images.
    """
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path} (missing or corrupt): rebuild the dataset")
    if img.dtype != np.uint8:
        raise ValueError(
            f"{path} is a {img.dtype} image ({'depth?' if img.ndim == 2 else 'high bit depth'}): the model "
            "takes 8-bit colour frames; convert it to 8 bits per channel first"
        )
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), True
    code = cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(img, code), False


def load_rgb(path: Path) -> np.ndarray:
    return load_frame(path)[0]


class PastFrames:
    """The earlier frames a frame-stacked checkpoint (model.frame_stack k > 1) takes with each
    dataset frame, for scoring a split as reward_node's stream would: `of(i, camera)` gives
    row i's camera frames before it, newest first ([] for k = 1). `frame` reads a file through
    the same small cache, so a frame read as itself is not read again as its successor's past."""

    def __init__(self, rows: list[dict], root: Path, frame_stack: int) -> None:
        self.root = root
        self.earlier = earlier_rows(rows, frame_stack, root)
        self.frame = functools.lru_cache(maxsize=64)(load_frame)
        """(RGB, greyscale) of an image file, as load_frame, cached"""

    def of(self, i: int, camera: str) -> list[np.ndarray]:
        return [self.frame(self.root / r["images"][camera])[0] for r in self.earlier[i]]


def frame_info(rows: list[dict], root: Path, samples: int = 20) -> dict:
    """Frame sizes per camera and whether the frames are colour, from the first samples:
    stored in the checkpoint so that frames unlike the training data can be refused."""
    sizes: dict[str, list[int]] = {}
    colour = False
    for r in rows[:samples]:
        for cam, rel in r["images"].items():
            rgb, grey = load_frame(root / rel)
            sizes.setdefault(cam, [int(rgb.shape[0]), int(rgb.shape[1])])
            colour |= not grey and not (
                np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
            )
    return {"frame_sizes": sizes, "colour": colour}


class Augment:
    """Random shift (replicate-pad then crop back), colour jitter and, optionally, a horizontal
    flip, on uint8 CHW tensors."""

    def __init__(self, shift: int, jitter: float, hflip: float = 0.0) -> None:
        self.shift, self.jitter, self.hflip = shift, jitter, hflip

    def flips(self, gen: torch.Generator) -> bool:
        """Whether to mirror this example (one draw per example, all its views alike); no draw
        when flipping is off, so that the other augmentations stay as they were."""
        return self.hflip > 0 and float(torch.rand(1, generator=gen)) < self.hflip

    def __call__(self, img: torch.Tensor, gen: torch.Generator, flip: bool = False) -> torch.Tensor:
        """`img`: (3k, H, W), k stacked frames of one camera (model.frame_stack), all shifted and
        jittered alike so that only the scene's motion tells them apart."""
        c, h, w = img.shape
        x = img.float()
        if flip:
            x = x.flip(-1)
        if self.shift > 0:
            s = self.shift
            padded = torch.nn.functional.pad(x[None], (s, s, s, s), mode="replicate")[0]
            dy, dx = (int(v) for v in torch.randint(0, 2 * s + 1, (2,), generator=gen))
            x = padded[:, dy : dy + h, dx : dx + w]
        if self.jitter > 0:
            j = self.jitter
            b, con, sat = (1.0 + (torch.rand(3, generator=gen) * 2 - 1) * j).tolist()
            x = x.reshape(c // 3, 3, h, w) * b
            mean = x.mean()
            x = (x - mean) * con + mean
            gray = x.mean(dim=1, keepdim=True)
            x = ((x - gray) * sat + gray).reshape(c, h, w)
        return x.clamp_(0, 255).to(torch.uint8)


class FrameDataset(Dataset):
    def __init__(
        self,
        examples: list[Example],
        model_cfg: ModelConfig,
        augment: Augment | None = None,
        cache: bool = True,
        seed: int = 0,
    ) -> None:
        self.examples = examples
        self.pre = Preprocessor(model_cfg)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.examples)

    def image(self, i: int) -> np.ndarray:
        """The preprocessed input of example i: (3, H, W) uint8, or (V, 3, H, W) for a joint
        multi-view example."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        ex = self.examples[i]
        views = ex.views or ((ex.path, ex.camera),)
        stacked = []
        for v, (path, cam) in enumerate(views):
            frames = [path, *(ex.past[v] if ex.past else ())]  # newest first: (3k, H, W)
            stacked.append(np.concatenate([self.pre(load_rgb(f), cam) for f in frames]))
        img = np.stack(stacked) if ex.views else stacked[0]
        if self._cache is not None:
            self._cache[i] = img
        return img

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = torch.from_numpy(self.image(i))
        if self.augment is not None:
            # a generator per (seed, epoch, example): the same augmentation for a given run;
            # each view of a joint example is shifted and jittered on its own, as its camera would be
            gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
            flip = self.augment.flips(gen)
            img = (
                torch.stack([self.augment(v, gen, flip) for v in img])
                if img.ndim == 4
                else self.augment(img, gen, flip)
            )
        return img, torch.tensor(float(self.examples[i].label))

    def labels(self) -> np.ndarray:
        return np.array([e.label for e in self.examples], int)


def is_training_data(ckpt, data: Path, split: str) -> bool:
    """Whether split `split` of `data` holds frames the checkpoint was trained on."""
    trained_on = ckpt.training.get("data") or []
    trained_on = [trained_on] if isinstance(trained_on, str) else trained_on
    return split in ("train", "all") and data.resolve() in {Path(d).resolve() for d in trained_on}
