"""Hard negatives: the frames an evaluation got wrong, as a dataset to train on again.

`reward-model hard-negatives EVAL_DIR --out DIR` reads what `reward-model evaluate` wrote
(`metrics.json`: the dataset, split and thresholds; `predictions.jsonl`: every frame's
probability) and writes the frames where the thresholded probability and ground truth
disagree, in the `reward-model process` format: `manifest.jsonl` (labelled with ground truth,
split `train`, with the model's probability as `model_probability` and `disagreement`
false_positive|false_negative), `images/` (hard links, copies across file systems) and
`summary.json`, whose `mined_from` names the source dataset, split and episode ids. Then

    reward-model train --data DS --data DIR [data.hard_negative_weight=3]

or in one command `reward-model train --data DS --hard-negatives EVAL_DIR`. The trainer copies
`mined_from` into the checkpoint (`training.mined_from`), and `reward-model evaluate` refuses
to report figures on those episodes: mine on a mining set (episodes of their own), report on
a held-out set nothing was mined from. The RL monitor's disagreements/ are mined frames too
(they carry `model_probability`); they come from the policy's own episodes, not from a
held-out set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

MINED_KEY = "model_probability"
"""manifest key of a mined frame: the probability of the model that got it wrong"""
KIND = "hard_negatives"
"""summary.json `kind` of a dataset written here"""


class HardNegativeError(ValueError):
    """An evaluation directory that cannot be mined, or an output that would overwrite data."""


def evaluation_dir(path: Path) -> Path:
    """`path` itself when it holds `metrics.json` and `predictions.jsonl` (an `evaluate --out`
    directory), else its `eval/` (a checkpoint evaluated with the default output).

    :raises HardNegativeError: neither holds them.
    """
    path = Path(path)
    for d in (path, path / "eval"):
        if (d / "metrics.json").is_file() and (d / "predictions.jsonl").is_file():
            return d
    raise HardNegativeError(
        f"{path}: no metrics.json + predictions.jsonl here or in {path / 'eval'}; run `reward-model "
        f"evaluate --checkpoint CKPT --data MINING_SET --out {path}` first"
    )


def disagreements(predictions: list[dict], threshold: float) -> tuple[list[dict], int]:
    """The valid frames whose decision (probability >= threshold) differs from their label,
    and how many invalid frames were passed over (reward_node scores those 0 and never
    success: a blank or wrong-sized frame is no mistake of the model's)."""
    out, invalid = [], 0
    for r in predictions:
        if not r.get("valid", True):
            invalid += 1
            continue
        if (float(r["probability"]) >= threshold) != bool(r["label"]):
            out.append(r)
    return out, invalid


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))


def _place(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or links not allowed: copy
            pass
    shutil.copy2(src, dst)


def _clear(out: Path, replace: bool) -> None:
    if not (out / "manifest.jsonl").exists():
        return
    summary = out / "summary.json"
    ours = summary.is_file() and json.loads(summary.read_text()).get("kind") == KIND
    if not (replace and ours):
        raise HardNegativeError(
            f"{out} already holds a dataset: choose another --out (an earlier hard-negative export is "
            "replaced only by `train --hard-negatives`)"
        )
    shutil.rmtree(out)


def export_hard_negatives(
    source: Path, out: Path, threshold: float | None = None, link: bool = True, replace: bool = False
) -> dict[str, Any]:
    """Write the disagreeing frames of the evaluation at `source` (see `evaluation_dir`) as a
    dataset in `out`; returns its summary (also `out/summary.json`). `threshold`: the decision
    threshold (default: the evaluation's recommended one, what reward_node uses once it is
    stored; `metrics.json` `threshold` is the checkpoint's own).

    :raises HardNegativeError: no evaluation at `source`, `out` holds a dataset, or a frame's
        image is missing.
    """
    ev = evaluation_dir(source)
    metrics = json.loads((ev / "metrics.json").read_text())
    data = Path(metrics["data"])
    if threshold is None:
        threshold, which = float(metrics["recommended_threshold"]), "recommended (metrics.json)"
    else:
        which = "given"
    predictions = [json.loads(line) for line in (ev / "predictions.jsonl").read_text().splitlines() if line]
    chosen, invalid = disagreements(predictions, float(threshold))
    out = Path(out)
    _clear(out, replace)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for r in chosen:
        images = {}
        for cam, rel in r["images"].items():
            src = data / rel  # an absolute rel stays absolute
            if not src.is_file():
                raise HardNegativeError(
                    f"{src}: image of {r['episode']}#{r['frame']} is missing; the evaluated dataset "
                    f"{data} must still be there"
                )
            dst = f"images/{_safe(r['episode'])}/{int(r['frame']):06d}_{_safe(cam)}{src.suffix}"
            _place(src, out / dst, link)
            images[cam] = dst
        label = int(r["label"])
        rows.append(
            {
                "episode": r["episode"],
                "frame": int(r["frame"]),
                "stamp_ns": int(r.get("stamp_ns", 0)),
                "label": label,
                "episode_label": int(r.get("episode_label", label)),
                "split": "train",
                "images": images,
                "seed": r.get("seed", -1),
                "mode": r.get("mode", ""),
                MINED_KEY: float(r["probability"]),
                "disagreement": "false_negative" if label else "false_positive",
            }
        )
    with (out / "manifest.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    summary = _summary(rows, metrics, ev, data, float(threshold), which, invalid, len(predictions), link)
    summary["out"] = str(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(rows, metrics, ev, data, threshold, which, invalid, examined, link) -> dict[str, Any]:
    episodes = sorted({r["episode"] for r in rows})
    labels = {r["episode"]: r["episode_label"] for r in rows}
    return {
        "kind": KIND,
        "samples": len(rows),
        "false_positive_frames": sum(r["label"] == 0 for r in rows),
        "false_negative_frames": sum(r["label"] == 1 for r in rows),
        "frames_examined": examined,
        "invalid_frames_passed_over": invalid,
        "threshold": threshold,
        "threshold_source": which,
        "cameras": sorted({c for r in rows for c in r["images"]}),
        "splits": {
            "train": {
                "episodes_success": sum(v == 1 for v in labels.values()),
                "episodes_failure": sum(v == 0 for v in labels.values()),
                "frames_positive": sum(r["label"] == 1 for r in rows),
                "frames_negative": sum(r["label"] == 0 for r in rows),
            },
            "val": {"episodes_success": 0, "episodes_failure": 0, "frames_positive": 0, "frames_negative": 0},
        },
        "mined_from": [
            {
                "data": str(data.resolve()),
                "split": metrics.get("split", ""),
                "episodes": episodes,
                "checkpoint": metrics.get("checkpoint", ""),
                "evaluation": str(ev.resolve()),
            }
        ],
        "images": "hard links (copies across file systems)" if link else "copies",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def mined_sources(data_dirs: list[Path]) -> list[dict[str, Any]]:
    """The `mined_from` entries of those datasets that are hard-negative exports, each with
    `via` (the export's path): what a checkpoint trained on them must not be evaluated on."""
    out = []
    for d in map(Path, data_dirs):
        summary = d / "summary.json"
        if not summary.is_file():
            continue
        meta = json.loads(summary.read_text())
        if meta.get("kind") != KIND:
            continue
        out += [{**src, "via": str(d.resolve())} for src in meta.get("mined_from", [])]
    return out


def trained_episodes(training: dict[str, Any], data: Path, episodes: set[str]) -> list[str]:
    """Of `episodes` of dataset `data`, those a checkpoint (its `training` metadata) was trained
    on through mined frames."""
    data = Path(data).resolve()
    seen: set[str] = set()
    for src in training.get("mined_from") or []:
        if Path(src["data"]).resolve() == data:
            seen |= episodes & set(src["episodes"])
    return sorted(seen)


def export_into_run(sources: list[Path], run_dir: Path, threshold: float | None = None) -> list[Path]:
    """`train --hard-negatives`: each evaluation exported into `run_dir/hard_negatives[_k]`
    (an earlier export there is replaced); returns the dataset directories."""
    outs = []
    for k, src in enumerate(sources):
        out = Path(run_dir) / ("hard_negatives" if k == 0 else f"hard_negatives_{k}")
        export_hard_negatives(src, out, threshold, replace=True)
        outs.append(out)
    return outs
