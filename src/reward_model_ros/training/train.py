"""`reward-model train`: the success classifier from a dataset built by `reward-model process`.

Configuration: `config/train_reward.yaml` (the defaults below) + key=value overrides, with
the seed's key names (data.*, actor.*, runner.*, model.*). Class-balanced sampling,
augmentation, bf16 autocast where the hardware has it, CUDA when present, deterministic
for a seed. Validation every `runner.val_check_interval` optimizer steps, periodic
checkpoints every `runner.save_interval`, early stopping on validation loss, `best_model`
by `runner.best_metric`, resume from `last/`. TensorBoard logs under
`runner.logger.log_path`. Multi-process with torchrun (DDP; gloo on the CPU, nccl on GPUs).

Outputs under `runner.output_dir`: `best_model/` (a checkpoint reward_node loads, with int8
calibration frames, the temperature fitted on validation data when it lowers the validation
ECE (training/temperature.py), and the threshold and debounce chosen on the validation
episodes as reward_node will score them (metrics.validation_decision)),
`checkpoints/step_NNNNNN/`, `last/` (checkpoint plus training_state.safetensors/json for
`runner.resume`), `train_config.yaml`, `history.json`.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from reward_model_ros.core.checkpoint import load_checkpoint, save_checkpoint
from reward_model_ros.core.config import ConfigError, ModelConfig
from reward_model_ros.core.model import ResNetRewardModel, cpu_has_bf16
from reward_model_ros.core.overrides import to_plain
from reward_model_ros.data.dataset import read_manifest
from reward_model_ros.training import metrics as M
from reward_model_ros.training.data import (
    Augment,
    FrameDataset,
    dataset_cameras,
    episode_modes,
    examples_from,
    exclude_modes,
    frame_info,
    mode_counts,
    sample_rows,
)
from reward_model_ros.training.hard_negatives import MINED_KEY, mined_sources

MINED_FRAMES = ("false_positives", "all")  # data.mined_frames

BEST_METRICS = {  # name -> True when higher is better
    "val/loss": False,
    "val/accuracy": True,
    "val/balanced_accuracy": True,
    "val/auroc": True,
    "val/f1": True,
}


@dataclass
class TrainData:
    num_samples_per_episode: int = 0
    """training frames sampled per episode (0 = all)"""
    fail_success_ratio: float = 0.0
    """negative training frames kept per positive (0 = all; sampling is class-balanced anyway)"""
    debug_save_dir: str = ""
    """if set, a grid of augmented training inputs per class is saved there"""
    balance: bool = True
    """class-balanced sampling (with replacement): no data is discarded"""
    augment: bool = True
    """random shift and colour jitter on training inputs"""
    shift: int = 8
    """augmentation: maximum shift in pixels (of the model input)"""
    color_jitter: float = 0.2
    """augmentation: brightness, contrast and saturation change up to +-this fraction"""
    hflip: float = 0.0
    """augmentation: probability of mirroring a training input left to right (all views of a joint
    example alike); only for tasks whose success is mirror-symmetric in the image, e.g. a goal
    on the camera's centre line (0 = never)"""
    cache: bool = True
    """keep preprocessed inputs in memory (3*H*W bytes per image)"""
    num_workers: int = 0
    """DataLoader worker processes (0 = load in the training process)"""
    exclude_modes: list[str] = field(default_factory=list)
    """episodes whose manifest `mode` is one of these are left out of training and validation"""
    hard_negative_weight: float = 1.0
    """sampling weight of mined frames (rows with model_probability: `reward-model hard-negatives`,
    an RL run's disagreements/) against the other frames of their class"""
    mined_frames: str = "false_positives"
    """which mined frames are trained on: false_positives (those ground truth calls failures) | all
    (the missed successes too: on PushCube an RL policy's missed successes were mostly the arm
    hiding the cube, and trained as successes they taught the reward that a hidden cube is one:
    243 of 537 RL episodes paid for nothing, against 2 of 443 with false_positives)"""


@dataclass
class Optim:
    lr: float = 3e-4
    """AdamW learning rate"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    lr_schedule: str = "constant"
    """constant | cosine (from lr at the first step towards 0 at the last)"""


LR_SCHEDULES = ("cosine", "constant")


def scheduled_lr(optim: Optim, step: int, max_steps: int) -> float:
    """The learning rate of optimizer step `step` (0-based) of `max_steps`."""
    if optim.lr_schedule == "constant" or max_steps < 1:
        return optim.lr
    return optim.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, max_steps) / max_steps))


@dataclass
class Actor:
    global_batch_size: int = 256
    """images per optimizer step, over all processes"""
    micro_batch_size: int = 32
    """images per forward/backward pass; gradients accumulate up to the global batch"""
    optim: Optim = field(default_factory=Optim)


@dataclass
class EarlyStop:
    patience: int = 5
    """validations without a lower validation loss before training stops (0 = never stop early)"""
    min_delta: float = 0.0
    """improvement smaller than this does not count"""


@dataclass
class Logger:
    log_path: str = "runs/train/logs"
    """TensorBoard event files go here"""


@dataclass
class Runner:
    max_epochs: int = 10
    """passes over the training set (an epoch is as many samples as training images)"""
    max_steps: int = 0
    """stop after this many optimizer steps (0 = no limit)"""
    val_check_interval: int = 50
    """optimizer steps between validations (also at the end of each epoch)"""
    save_interval: int = 200
    """optimizer steps between periodic checkpoints (0 = none)"""
    early_stop: EarlyStop = field(default_factory=EarlyStop)
    logger: Logger = field(default_factory=Logger)
    output_dir: str = "runs/train"
    """checkpoints and history go here"""
    threshold_rule: str = "half"
    """how the decision on validation places the threshold: half (0.5 on the calibrated
    probabilities, where class-balanced training put the boundary; the best held-out accuracy on
    current checkpoints of both tasks, and the rejection of unseen failures) | balanced (the best
    balanced accuracy on validation's frames: follows a few onset frames of 10 episodes) |
    half_floor (balanced, never below 0.5); docs/data_and_training.md"""
    best_metric: str = "val/loss"
    """picks best_model: val/loss (lower is better), val/accuracy, val/balanced_accuracy, val/auroc, val/f1"""
    resume: str = ""
    """a last/ directory of an earlier run to continue from"""
    precision: str = "auto"
    """training autocast: auto (bf16 where the CPU has AVX-512 BF16/AMX or on CUDA) | fp32 | bf16"""
    progress: bool = True
    """show a progress bar with the live metrics"""
    ema_decay: float = 0.0
    """weight averaging: validation, best_model and last/ use an exponential moving average of the
    weights and BatchNorm statistics, updated every optimizer step with this decay (warmed up as
    min(decay, (1 + n) / (10 + n)) over the first n steps); it damps the step-to-step swings of
    validation accuracy; 0 = off (the raw weights)"""
    int8_calibration_frames: int = 64
    """training inputs stored in best_model for int8 inference (model.precision int8, picked by
    auto on CPUs with VNNI): half successes, half failures, spread over the data; 0 = none"""


@dataclass
class TrainConfig:
    data: TrainData = field(default_factory=TrainData)
    actor: Actor = field(default_factory=Actor)
    runner: Runner = field(default_factory=Runner)
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    """seed of initialisation, sampling and augmentation"""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N"""


class TrainError(ValueError):
    """A configuration or dataset the trainer cannot work with; says what to change."""


def _model_config(cfg) -> ModelConfig:
    return ModelConfig.from_dict(to_plain(cfg.model))


def adamw(params, lr: float, weight_decay: float, device: torch.device | str) -> torch.optim.AdamW:
    """AdamW with its fused kernel where torch has one (CPU, CUDA): one pass over all parameters
    instead of a chain of per-tensor operations. ResNet-18 training in bf16 on 2 CPU cores:
    1.05x images/s (`bench/train_throughput.py --optimizers fused foreach`); same update rule."""
    fused = torch.device(device).type in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


class Trainer:
    def __init__(self, cfg, data_dir: Path | list[Path], log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        # several datasets: e.g. the recorded one plus frames an RL run's monitor kept (its
        # disagreements/), which train the classifier on the policy's own mistakes
        self.data_dirs = [Path(d) for d in (data_dir if isinstance(data_dir, list | tuple) else [data_dir])]
        self.data_dir = self.data_dirs[0]
        self.log = log
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.main = self.rank == 0
        self._check()
        self._seed(cfg.seed + self.rank)
        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
            dist.init_process_group(backend)
        self.device = self._device()
        self.model_cfg = _model_config(cfg)
        self.amp = self._amp_dtype()
        self.out = Path(cfg.runner.output_dir)

    # --- set-up -------------------------------------------------------------------------
    def _check(self) -> None:
        a, r = self.cfg.actor, self.cfg.runner
        per_step = a.micro_batch_size * self.world
        if a.micro_batch_size < 1 or a.global_batch_size < per_step or a.global_batch_size % per_step:
            raise TrainError(
                f"actor.global_batch_size={a.global_batch_size} must be a multiple of actor.micro_batch_size "
                f"({a.micro_batch_size}) x processes ({self.world})"
            )
        if r.best_metric not in BEST_METRICS:
            raise TrainError(f"runner.best_metric={r.best_metric!r}: choose one of {', '.join(BEST_METRICS)}")
        if a.optim.lr_schedule not in LR_SCHEDULES:
            raise TrainError(
                f"actor.optim.lr_schedule={a.optim.lr_schedule!r}: choose {' or '.join(LR_SCHEDULES)}"
            )
        if r.precision not in ("auto", "fp32", "bf16"):
            raise TrainError(f"runner.precision={r.precision!r}: choose auto, fp32 or bf16")
        if r.val_check_interval < 1:
            raise TrainError("runner.val_check_interval must be >= 1")
        if not 0.0 <= r.ema_decay < 1.0:
            raise TrainError(
                f"runner.ema_decay={r.ema_decay} must be in [0, 1): e.g. 0.99 (about the last 100 steps), "
                "0 = off"
            )
        if r.int8_calibration_frames < 0:
            raise TrainError("runner.int8_calibration_frames must be >= 0 (0 = store none)")
        if r.threshold_rule not in M.THRESHOLD_RULES:
            raise TrainError(
                f"runner.threshold_rule={r.threshold_rule!r}: choose one of {', '.join(M.THRESHOLD_RULES)} "
                "(how the validation decision places the threshold)"
            )
        if not 0.0 <= self.cfg.data.hflip <= 1.0:
            raise TrainError(f"data.hflip={self.cfg.data.hflip} is a probability: choose 0 (off) to 1")
        if self.cfg.data.mined_frames not in MINED_FRAMES:
            raise TrainError(
                f"data.mined_frames={self.cfg.data.mined_frames!r}: choose one of {', '.join(MINED_FRAMES)} "
                "(which mined frames are trained on)"
            )
        if not self.cfg.data.hard_negative_weight > 0:
            raise TrainError(
                f"data.hard_negative_weight={self.cfg.data.hard_negative_weight} must be > 0 (1 = as often "
                "as the other frames of their class)"
            )

    def _seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _device(self) -> torch.device:
        from reward_model_ros.core.inference import pick_device

        dev = pick_device(self.cfg.device)
        if dev.type == "cuda" and self.world > 1:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        return dev

    def _amp_dtype(self) -> torch.dtype | None:
        p = self.cfg.runner.precision
        if p == "fp32":
            return None
        if p == "bf16":
            return torch.bfloat16
        if self.device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        return torch.bfloat16 if cpu_has_bf16() else None

    def _datasets(self) -> tuple[FrameDataset, FrameDataset]:
        try:
            rows = self._rows()
        except ValueError as exc:
            raise TrainError(str(exc)) from exc
        missing = [rel for r in rows for rel in r["images"].values() if not (self.data_dir / rel).is_file()]
        if missing:
            raise TrainError(
                f"{self.data_dir}: {len(missing)} image file(s) named in manifest.jsonl are missing, e.g. "
                f"{missing[:3]}: rebuild the dataset (`reward-model process`) or restore the files"
            )
        train = [r for r in rows if r["split"] == "train"]
        val = [r for r in rows if r["split"] == "val"]
        if not train:
            raise TrainError(f"{self.data_dir}: no training samples (split 'train')")
        if not val:
            raise TrainError(
                f"{self.data_dir}: no validation samples; rebuild with data.val_fraction > 0 and at least "
                "two episodes per label"
            )
        try:
            cameras = dataset_cameras(rows, self.data_dir)
        except ValueError as exc:
            raise TrainError(str(exc)) from exc
        self.model_cfg = self._with_cameras(cameras)
        self.frames_seen = frame_info(rows, self.data_dir)
        d = self.cfg.data
        self.episodes_used = {s: episode_modes(part) for s, part in (("train", train), ("val", val))}
        # mined frames (hard negatives, an RL run's disagreements) are kept whole and weighted
        all_mined = [r for r in train if MINED_KEY in r]
        mined = [r for r in all_mined if d.mined_frames == "all" or r["label"] == 0]
        if all_mined:
            left_out = len(all_mined) - len(mined)
            self.log(
                f"mined frames: {len(mined)} trained on (weight {d.hard_negative_weight:g}), "
                f"{sum(r['label'] == 0 for r in mined)} of them false positives"
                + (
                    f"; {left_out} missed successes left out (data.mined_frames={d.mined_frames})"
                    if left_out
                    else ""
                )
            )
        rest = [r for r in train if MINED_KEY not in r]
        context = train  # every training frame: a sampled frame's predecessors (model.frame_stack)
        train = sample_rows(rest, d.num_samples_per_episode, d.fail_success_ratio, self.cfg.seed) + mined
        joint = list(self.model_cfg.camera_names) if self.model_cfg.views > 1 else None
        k = self.model_cfg.frame_stack
        per_row = [d.hard_negative_weight if MINED_KEY in r else 1.0 for r in train]  # per example:
        self.train_weights = np.array(  # one per sample for a joint model, else one per camera image
            per_row if joint else [w for w, r in zip(per_row, train, strict=True) for _ in r["images"]]
        )
        if len({r["label"] for r in train}) < 2:
            raise TrainError(f"{self.data_dir}: the training split has one class only; record both outcomes")
        augment = Augment(d.shift, d.color_jitter, d.hflip) if d.augment else None
        tr = FrameDataset(
            examples_from(train, self.data_dir, joint, k, context),
            self.model_cfg,
            augment,
            d.cache,
            self.cfg.seed,
        )
        va = FrameDataset(examples_from(val, self.data_dir, joint, k), self.model_cfg, None, d.cache)
        self.val_rows = sorted(val, key=lambda r: (r["episode"], r["frame"]))
        return tr, va

    def _rows(self) -> list[dict]:
        """The samples of every dataset, image paths made absolute; episodes of the second and
        later datasets prefixed with their folder name (keys stay unique)."""
        rows = []
        val_episodes: dict[str, set[str]] = {}
        for k, d in enumerate(self.data_dirs):
            manifest = read_manifest(d)
            val_episodes[str(d.resolve())] = {r["episode"] for r in manifest if r["split"] == "val"}
            for r in manifest:
                r["images"] = {cam: str((d / rel).resolve()) for cam, rel in r["images"].items()}
                if k:
                    r["episode"] = f"{d.name}:{r['episode']}"
                rows.append(r)
        self.mined_from = mined_sources(self.data_dirs)
        for src in self.mined_from:  # mined from a validation split this run validates on
            leaked = sorted(val_episodes.get(src["data"], set()) & set(src["episodes"]))
            if leaked and self.main:
                self.log(
                    f"warning: {src['via']} holds frames mined from {len(leaked)} validation episode(s) of "
                    f"{src['data']} (e.g. {leaked[:3]}): validation figures and the threshold of this run "
                    "are optimistic; mine on a separate mining set"
                )
        return exclude_modes(rows, list(self.cfg.data.exclude_modes), ", ".join(map(str, self.data_dirs)))

    def _with_cameras(self, cameras: list[str]) -> ModelConfig:
        """The model config with the dataset's camera names (the contract the checkpoint carries
        to reward_node); crop boxes must name those cameras."""
        given = list(self.model_cfg.camera_names)
        if given and given != cameras:
            raise TrainError(
                f"model.camera_names={given} but the dataset {self.data_dir} has cameras {cameras}: "
                "remove model.camera_names (the dataset's are used)"
            )
        try:
            return ModelConfig.from_dict({**self.model_cfg.to_dict(), "camera_names": cameras})
        except ConfigError as exc:
            raise TrainError(f"{exc} (the dataset {self.data_dir} has cameras {cameras})") from exc

    def _loader(
        self, ds: FrameDataset, epoch: int, per_rank: int, weights: np.ndarray | None = None
    ) -> DataLoader:
        """`per_rank` samples for this process (drawn with replacement when that is more
        than the data); `weights`: per example, relative within its class
        (data.hard_negative_weight)."""
        labels = ds.labels()
        gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch * 10 + self.rank)
        w = np.ones(len(labels)) if weights is None else np.asarray(weights, float)
        if self.cfg.data.balance:
            # every class gets the same share; within a class, the example weights
            weights = w / np.bincount(labels, weights=w, minlength=2)[labels]
            sampler = WeightedRandomSampler(weights.tolist(), per_rank, replacement=True, generator=gen)
        elif np.any(w != 1.0):
            sampler = WeightedRandomSampler(w.tolist(), per_rank, replacement=True, generator=gen)
        else:
            total = per_rank * self.world
            repeats = -(-total // len(ds))
            perm = torch.cat([torch.randperm(len(ds), generator=gen) for _ in range(repeats)])[:total]
            sampler = perm[self.rank :: self.world].tolist()
        ds.epoch = epoch
        return DataLoader(
            ds,
            batch_size=self.cfg.actor.micro_batch_size,
            sampler=sampler,
            num_workers=self.cfg.data.num_workers,
            drop_last=True,
        )

    # --- the loop -----------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        train_ds, val_ds = self._datasets()
        model = ResNetRewardModel(self.model_cfg).to(self.device)
        opt = adamw(
            model.trainable_parameters(), cfg.actor.optim.lr, cfg.actor.optim.weight_decay, self.device
        )
        state = {
            "step": 0,
            "epoch": 0,
            "best": None,
            "best_step": 0,
            "bad_validations": 0,
            "best_val_loss": math.inf,
        }
        ema = averaged_model(model, cfg.runner.ema_decay)
        if cfg.runner.resume:
            state = self._resume(Path(cfg.runner.resume), model, opt, ema)
        judged = model if ema is None else ema.module  # what validation scores and best_model holds
        net = model
        if self.world > 1:
            net = torch.nn.parallel.DistributedDataParallel(model)
        accum = cfg.actor.global_batch_size // (cfg.actor.micro_batch_size * self.world)
        steps_per_epoch = max(1, len(train_ds) // cfg.actor.global_batch_size)
        max_steps = cfg.runner.max_epochs * steps_per_epoch
        if cfg.runner.max_steps:
            max_steps = min(max_steps, cfg.runner.max_steps)
        writer = self._writer()
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._save_config()
            (self.out / "episodes.json").write_text(json.dumps(self.episodes_used, indent=1) + "\n")
            self._debug_grid(train_ds)
            v = self.model_cfg.views
            unit = (
                "images"
                if v == 1
                else f"{v}-view sets (joint model over {list(self.model_cfg.camera_names)})"
            )
            self.log(
                f"training {self.model_cfg.arch} on {len(train_ds)} {unit} "
                f"({int(train_ds.labels().sum())} success), validating on {len(val_ds)}; "
                f"{steps_per_epoch} steps/epoch, up to {max_steps} steps; batch "
                f"{cfg.actor.global_batch_size} = {cfg.actor.micro_batch_size} x {accum} x {self.world} "
                f"process(es); {self.device}, autocast {self.amp or 'fp32'}"
            )
        bar = self._bar(max_steps, state["step"])
        self.started = time.monotonic()
        history: list[dict] = []
        loss_fn = torch.nn.BCEWithLogitsLoss()
        stop = state["step"] >= max_steps
        images_done, t_last = 0, time.monotonic()
        val_metrics: dict[str, float] = {}
        while not stop:
            epoch = state["epoch"]
            # at least the epoch's steps x accumulation x micro-batch: a dataset smaller than
            # one global batch still makes an optimizer step per epoch
            per_rank = max(len(train_ds) // self.world, steps_per_epoch * accum * cfg.actor.micro_batch_size)
            loader = self._loader(train_ds, epoch, per_rank, self.train_weights)
            net.train()
            opt.zero_grad(set_to_none=True)
            micro, running = 0, []
            for images, labels in loader:
                images = images.to(self.device, non_blocking=True)
                labels = labels.to(self.device)
                with self._autocast():
                    logits = net(images)
                loss = loss_fn(logits.float(), labels)
                (loss / accum).backward()
                running.append(float(loss.detach()))
                micro += 1
                images_done += len(images) * self.world
                if micro % accum:
                    continue
                for group in opt.param_groups:  # from the step count: a resumed run continues it
                    group["lr"] = scheduled_lr(cfg.actor.optim, state["step"], max_steps)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update_parameters(model)
                state["step"] += 1
                step = state["step"]
                now = time.monotonic()
                train_loss = float(np.mean(running))
                running = []
                if self.main and writer:
                    writer.add_scalar("train/loss", train_loss, step)
                    writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
                    writer.add_scalar("train/images_per_s", images_done / max(now - t_last, 1e-9), step)
                images_done, t_last = 0, now
                end_of_epoch = micro >= accum * steps_per_epoch
                if step % cfg.runner.val_check_interval == 0 or end_of_epoch or step >= max_steps:
                    val_metrics = self.validate(judged, val_ds)
                    stop = self._after_validation(
                        judged, opt, state, val_metrics, writer, history, train_loss
                    )
                if self.main and cfg.runner.save_interval and step % cfg.runner.save_interval == 0:
                    self._save(judged, self.out / "checkpoints" / f"step_{step:06d}", val_metrics, state)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{train_loss:.3f}",
                        val_loss=f"{val_metrics.get('loss', float('nan')):.3f}",
                        val_acc=f"{val_metrics.get('accuracy', float('nan')):.3f}",
                    )
                if stop or step >= max_steps or end_of_epoch:
                    break
            state["epoch"] = epoch + 1
            if state["step"] >= max_steps or state["epoch"] >= cfg.runner.max_epochs:
                stop = True
        if bar is not None:
            bar.close()
        calibration = None
        if self.main:
            self._save(judged, self.out / "last", val_metrics, state, opt=opt, raw=model if ema else None)
            (self.out / "history.json").write_text(json.dumps(history, indent=2) + "\n")
            # in the order reward_node will score: int8 quantizes from the stored frames, the
            # temperature is fitted on what that model gives, the decision on what it publishes
            self._int8_frames(train_ds)
            calibration = self._calibrate(val_ds)
            self._decide()
        if writer:
            writer.close()
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        return {
            "state": state,
            "history": history,
            "best_model": str(self.out / "best_model"),
            "calibration": calibration,
        }

    def _autocast(self):
        import contextlib

        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    @torch.no_grad()
    def predict(self, model: ResNetRewardModel, ds: FrameDataset) -> np.ndarray:
        model.eval()
        out = []
        bs = max(self.cfg.actor.micro_batch_size, 64)
        for start in range(0, len(ds), bs):
            batch = torch.from_numpy(np.stack([ds.image(i) for i in range(start, min(len(ds), start + bs))]))
            with self._autocast():
                logits = model(batch.to(self.device))
            out.append(torch.sigmoid(logits.float()).cpu().numpy())
        model.train()
        return np.concatenate(out) if out else np.zeros(0)

    def validate(self, model: ResNetRewardModel, ds: FrameDataset) -> dict[str, float]:
        probs = self.predict(model, ds)
        labels = ds.labels()
        threshold = M.best_accuracy_threshold(labels, probs)
        m = M.binary_metrics(labels, probs, 0.5)
        m["loss"] = m.pop("log_loss")
        m["threshold"] = threshold
        m["accuracy_at_threshold"] = M.binary_metrics(labels, probs, threshold)["accuracy"]
        return m

    def _calibrate(self, val_ds: FrameDataset) -> dict[str, Any] | None:
        """Fit the temperature of best_model on the validation frames and store it there (see
        training/temperature.py). Training's own validation stays on raw probabilities."""
        from reward_model_ros.core.checkpoint import CheckpointError, store_calibration
        from reward_model_ros.training.temperature import TemperatureError, describe, fit_calibration

        best = self.out / "best_model"
        if not (best / "config.json").is_file():
            return None
        names = ", ".join(str(d) for d in self.data_dirs)
        try:
            model = load_checkpoint(best, device=self.device).model  # as reward_node will score
            bs = max(self.cfg.actor.micro_batch_size, 64)
            logits = [
                model.predict(np.stack([val_ds.image(i) for i in range(s, min(len(val_ds), s + bs))])).logits
                for s in range(0, len(val_ds), bs)
            ]
            cal = fit_calibration(
                np.concatenate(logits), val_ds.labels(), f"{names} val, {len(val_ds)} frames"
            )
            store_calibration(best, cal)
        except (CheckpointError, TemperatureError) as exc:
            self.log(f"calibration skipped, {best} keeps temperature 1: {exc}")
            return None
        self.log(describe(cal))
        return cal

    def _decide(self) -> dict[str, Any] | None:
        """Choose best_model's threshold and debounce on the validation episodes, scored as
        reward_node will score them (its precision, e.g. int8, and the fitted temperature; the
        threshold chosen during training was on the training-time model's probabilities), and
        store them (metrics.validation_decision)."""
        from reward_model_ros.core.checkpoint import CheckpointError, store_validation_decision
        from reward_model_ros.training.evaluate import DEBOUNCES, DECISION_DEBOUNCES, score_rows

        best = self.out / "best_model"
        rows = getattr(self, "val_rows", [])
        if not (best / "config.json").is_file() or not rows:
            return None
        try:
            ckpt = load_checkpoint(best, device=self.device)
            probs, _ = score_rows(ckpt, rows, Path("/"))  # image paths are absolute
        except CheckpointError as exc:
            self.log(f"decision on validation skipped, {best} keeps its training threshold: {exc}")
            return None
        labels = np.array([r["label"] for r in rows], int)
        episodes = M.episodes_of(rows, labels, probs)
        threshold, debounce, why = M.validation_decision(
            labels, probs, episodes, DECISION_DEBOUNCES, self.cfg.runner.threshold_rule
        )
        outcomes = M.episode_outcomes(episodes, threshold, debounce)
        details = {
            "frames": len(rows),
            "episodes": len(episodes),
            "failure_episodes_judged_successful": sum(o.label == 0 and o.judged_success for o in outcomes),
            "accuracy": M.binary_metrics(labels, probs, threshold)["accuracy"],
            "scored_as": ckpt.config.precision,
            "temperature": ckpt.temperature,
            "training_threshold": ckpt.threshold,  # on the training-time model, mapped to T
            "reason": why,
            # what keeps `evaluate`'s later recommendations safe on these failure episodes too
            "failure_bounds": {
                "temperature": ckpt.temperature,
                "by_debounce": {str(d): p for d, p in M.failure_run_bounds(episodes, DEBOUNCES).items()},
            },
        }
        store_validation_decision(best, threshold, debounce, details)
        self.log(
            f"decision on {len(episodes)} validation episodes, scored as served ({ckpt.config.precision}, "
            f"T {ckpt.temperature:.3f}): threshold {threshold:.2f}, debounce {debounce} ({why}); "
            f"frame accuracy {details['accuracy']:.4f}"
        )
        return details

    def _int8_frames(self, train_ds: FrameDataset) -> None:
        """Store a few training inputs in best_model for model.precision=int8 (core/quantize.py)."""
        from reward_model_ros.core.checkpoint import store_int8_frames
        from reward_model_ros.core.quantize import FRAMES_FILE
        from reward_model_ros.training.int8 import calibration_inputs

        best, n = self.out / "best_model", self.cfg.runner.int8_calibration_frames
        if n <= 0 or not (best / "config.json").is_file() or not len(train_ds):
            return
        frames = calibration_inputs(train_ds, n)
        names = ", ".join(str(d) for d in self.data_dirs)
        store_int8_frames(best, frames, f"{names} train, {len(frames)} inputs")
        self.log(f"int8 calibration: {len(frames)} training inputs stored in {best / FRAMES_FILE}")

    def _after_validation(self, model, opt, state, m, writer, history, train_loss) -> bool:
        r = self.cfg.runner
        step = state["step"]
        if self.main and writer:
            for k in (
                "loss",
                "accuracy",
                "balanced_accuracy",
                "precision",
                "recall",
                "false_positive_rate",
                "auroc",
                "f1",
            ):
                if m.get(k) == m.get(k):  # skip nan
                    writer.add_scalar(f"val/{k}", m[k], step)
            writer.flush()
        history.append(
            {
                "step": step,
                "epoch": state["epoch"],
                "elapsed_s": round(time.monotonic() - self.started, 2),
                "train_loss": train_loss,
                "lr": opt.param_groups[0]["lr"],
                **{f"val/{k}": v for k, v in m.items()},
            }
        )
        name = r.best_metric
        value = m[name.split("/", 1)[1]]
        higher = BEST_METRICS[name]
        better = state["best"] is None or (value > state["best"] if higher else value < state["best"])
        if better:
            state["best"], state["best_step"] = value, step
            if self.main:
                self._save(model, self.out / "best_model", m, state)
        if m["loss"] < state["best_val_loss"] - r.early_stop.min_delta:
            state["best_val_loss"], state["bad_validations"] = m["loss"], 0
        else:
            state["bad_validations"] += 1
        if r.early_stop.patience and state["bad_validations"] >= r.early_stop.patience:
            if self.main:
                self.log(
                    f"early stop at step {step}: validation loss has not improved for "
                    f"{state['bad_validations']} validations (best {state['best_val_loss']:.4f})"
                )
            return True
        return False

    # --- files --------------------------------------------------------------------------
    def _writer(self):
        if not self.main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(self.cfg.runner.logger.log_path)

    def _bar(self, total: int, initial: int):
        if not (self.main and self.cfg.runner.progress):
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def _save_config(self) -> None:
        from omegaconf import OmegaConf

        (self.out / "train_config.yaml").write_text(OmegaConf.to_yaml(self.cfg))

    def _save(self, model, directory: Path, m: dict, state: dict, opt=None, raw=None) -> None:
        """`model` is what users load (the averaged weights when runner.ema_decay > 0); `raw`, the
        weights being optimised, goes to last/ beside the optimizer state so that resume continues
        both."""
        training = {
            "data": str(self.data_dir.resolve())
            if len(self.data_dirs) == 1
            else [str(d.resolve()) for d in self.data_dirs],
            "step": state["step"],
            "epoch": state["epoch"],
            "validation": {k: v for k, v in m.items() if isinstance(v, (int, float)) and v == v},
            "seed": self.cfg.seed,
            "exclude_modes": list(self.cfg.data.exclude_modes),
            "modes": mode_counts(getattr(self, "episodes_used", {})),
            # frames mined from these episodes were trained on: evaluate refuses them
            **({"mined_from": self.mined_from} if getattr(self, "mined_from", None) else {}),
            # what reward_node's validity checks compare incoming frames with
            **getattr(self, "frames_seen", {}),
        }
        save_checkpoint(directory, model, float(m.get("threshold", 0.5)), training)
        if opt is not None:
            save_training_state(directory, opt, state, raw)

    def _resume(self, directory: Path, model, opt, ema=None) -> dict:
        ckpt = load_checkpoint(directory)
        if ckpt.config.arch != self.model_cfg.arch or ckpt.config.hidden_dim != self.model_cfg.hidden_dim:
            raise TrainError(
                f"runner.resume={directory}: a {ckpt.config.arch} checkpoint, but model.arch is "
                f"{self.model_cfg.arch}"
            )
        raw = directory / RAW_WEIGHTS
        if (ema is None) != (not raw.is_file()):
            raise TrainError(
                f"runner.resume={directory}: that run was trained with"
                f"{'out' if not raw.is_file() else ''} weight averaging; resume it with the same "
                f"runner.ema_decay (now {self.cfg.runner.ema_decay})"
            )
        if ema is None:
            model.load_state_dict(ckpt.model.state_dict())
        else:
            from safetensors.torch import load_file

            model.load_state_dict(load_file(str(raw)))
            ema.module.load_state_dict(ckpt.model.state_dict())
        state = load_training_state(directory, opt)
        if ema is not None:
            ema.n_averaged.fill_(int(state["step"]))
        if self.main:
            self.log(f"resumed from {directory} at step {state['step']} (epoch {state['epoch']})")
        return state

    def _debug_grid(self, ds: FrameDataset) -> None:
        if not self.cfg.data.debug_save_dir:
            return
        import cv2

        out = Path(self.cfg.data.debug_save_dir)
        out.mkdir(parents=True, exist_ok=True)
        labels = ds.labels()
        for label, name in ((1, "success"), (0, "failure")):
            idx = np.flatnonzero(labels == label)[:16]
            # (V, 3, H, W) or (3, H, W): a joint example's views are stacked top to bottom in its tile
            chw = [ds[i][0].numpy()[..., :3, :, :] for i in idx]  # the newest of stacked frames
            tiles = [np.vstack(x.reshape(-1, *x.shape[-3:]).transpose(0, 2, 3, 1)) for x in chw]
            if tiles:
                grid = np.hstack(tiles)
                cv2.imwrite(str(out / f"train_inputs_{name}.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


RAW_WEIGHTS = "raw_weights.safetensors"  # last/: the optimised weights when best_model holds their average


def ema_decay_at(decay: float, n: int) -> float:
    """The averaging decay after `n` updates: short at the start, so that the average is not
    dominated by the random initialisation, then `decay`."""
    return min(decay, (1.0 + n) / (10.0 + n))


def averaged_model(model: torch.nn.Module, decay: float):
    """torch's AveragedModel as an exponential moving average of parameters and buffers (the
    BatchNorm statistics), or None when decay is 0."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel

    def ema(avg: torch.Tensor, new: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = ema_decay_at(decay, int(n))
        return avg * d + new * (1.0 - d)

    return AveragedModel(model, avg_fn=ema, use_buffers=True)


def save_training_state(directory: Path, opt: torch.optim.Optimizer, state: dict, raw=None) -> None:
    """Optimizer tensors in safetensors, the rest in JSON (never pickle); `raw`: the optimised
    weights, when the checkpoint beside them holds their average."""
    from safetensors.torch import save_file

    if raw is not None:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in raw.state_dict().items()},
            str(directory / RAW_WEIGHTS),
        )

    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, s in sd["state"].items():
        for k, v in s.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, str(directory / "training_state.safetensors"))
    meta = {"param_groups": sd["param_groups"], "scalars": scalars, "state": {k: v for k, v in state.items()}}
    (directory / "training_state.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_training_state(directory: Path, opt: torch.optim.Optimizer) -> dict:
    from safetensors.torch import load_file

    path = directory / "training_state.json"
    if not path.is_file():
        raise TrainError(f"{directory} has no training_state.json: resume from a run's last/ directory")
    meta = json.loads(path.read_text())
    tensors = load_file(str(directory / "training_state.safetensors"))
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta["state"]


def train(cfg, data_dir: Path | list[Path], log: Callable[[str], None] = print) -> dict[str, Any]:
    return Trainer(cfg, data_dir, log).fit()
