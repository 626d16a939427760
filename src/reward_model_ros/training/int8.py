"""`reward-model quantize CHECKPOINT --data D`: store int8 calibration frames in a checkpoint
(core/quantize.py) and measure what int8 changes against fp32 on the dataset's validation
frames. `reward-model train` stores the frames itself; this is for older checkpoints, or to
calibrate on other data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reward_model_ros.core import quantize
from reward_model_ros.core.checkpoint import load_checkpoint, store_int8_frames
from reward_model_ros.data.dataset import read_manifest
from reward_model_ros.training import metrics as M
from reward_model_ros.training.data import FrameDataset, examples_from
from reward_model_ros.training.temperature import sigmoid, split_logits


def calibration_inputs(ds: FrameDataset, count: int) -> np.ndarray:
    """`count` model inputs of `ds` (half successes, half failures, spread over it), as the
    scorer feeds the model: (count, 3, H, W) uint8, or (count, V, 3, H, W) for a joint one."""
    return np.stack([ds.image(i) for i in quantize.pick(len(ds), ds.labels(), count)])


def quantize_checkpoint(
    checkpoint: Path,
    data: Path,
    split: str = "train",
    frames: int = quantize.DEFAULT_FRAMES,
    check: str = "val",
) -> dict[str, Any]:
    """Store `frames` calibration inputs from `split` of `data` in `checkpoint`, then score the
    `check` split in fp32 and int8 (empty: skip). Returns the int8 entry plus `comparison`
    (frames, max |dp|, accuracy of both at the checkpoint's threshold, AUROC of both).

    :raises QuantizeError: no samples in the split, or a machine without int8.
    """
    checkpoint, data = Path(checkpoint), Path(data)
    if not quantize.int8_available():
        raise quantize.QuantizeError(
            f"this torch has no {quantize.ENGINE!r} quantized engine: int8 cannot run here"
        )
    if frames < 1:
        raise quantize.QuantizeError(
            f"--frames {frames}: store at least one calibration input (64 is the default)"
        )
    rows = read_manifest(data)
    picked = [r for r in rows if split == "all" or r["split"] == split]
    if not picked:
        splits = sorted({r["split"] for r in rows})
        raise quantize.QuantizeError(
            f"{data}: no samples in split {split!r} (it has {splits}); choose --split"
        )
    ckpt = load_checkpoint(checkpoint, {"precision": "fp32", "optimize": "none"})
    joint = list(ckpt.config.camera_names) if ckpt.config.views > 1 else None
    ds = FrameDataset(
        examples_from(picked, data, joint, ckpt.config.frame_stack), ckpt.config, None, cache=False
    )
    inputs = calibration_inputs(ds, frames)
    entry = store_int8_frames(checkpoint, inputs, f"{data} {split}, {len(inputs)} inputs")
    out: dict[str, Any] = dict(entry)
    check_rows = [r for r in rows if r["split"] == check] if check else []
    if check_rows:
        int8 = load_checkpoint(checkpoint, {"precision": "int8", "optimize": "freeze"})
        ref, labels, _ = split_logits(ckpt, check_rows, data)
        got, _, _ = split_logits(int8, check_rows, data)
        p_ref, p_got = sigmoid(ref / ckpt.model.temperature), sigmoid(got / int8.model.temperature)
        t = ckpt.threshold
        m_ref, m_got = M.binary_metrics(labels, p_ref, t), M.binary_metrics(labels, p_got, t)
        out["comparison"] = {
            "split": check,
            "frames": len(labels),
            "max_prob_diff": float(np.abs(p_ref - p_got).max()) if len(labels) else None,
            "decisions_changed": int(((p_ref >= t) != (p_got >= t)).sum()),
            "threshold": t,
            "accuracy_fp32": m_ref["accuracy"],
            "accuracy_int8": m_got["accuracy"],
            "auroc_fp32": m_ref["auroc"],
            "auroc_int8": m_got["auroc"],
        }
    return out
