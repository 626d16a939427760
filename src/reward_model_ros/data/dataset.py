"""The dataset builder (`reward-model process`): episode bags in, a training set out.

Reads the recorder's episode bags (one bag = one episode, label in episode.json) and plain
`ros2 bag record` bags (mcap or sqlite3; episodes from EpisodeEvents in the bag, or one
label for the whole bag). Frames are labelled per frame: inside a successful episode a frame
is positive when the latest SuccessLabel at or before its stamp says success (or, without
SuccessLabels, when it is among the episode's last `success_tail_frames`); every frame of a
failed episode is negative. With `episode_success=once` a failed episode whose SuccessLabel
was on at some frame (a pass) counts as a success, labelled by the flag, as ManiSkill's
success_once counts it. Cameras are grouped by stamp into one sample. Episodes, not
frames, are split into train and validation: consecutive frames are near-identical and must
not sit on both sides. The split is stratified by scripted mode and, for failed episodes, by
whether the ground-truth success flag was on at some frame (`transient`: a pass through the
goal), so that validation, where `train` chooses its decision settings, holds each kind.

Three passes over each bag keep memory flat: labels, events and actions first; then the
image stamps (read from the serialized header, nothing decoded); then only the frames that
were chosen are decoded and written. Every MCAP chunk's CRC is checked (once per bag): a
damaged chunk is left out, named in the log, and counted in the summary (`damaged_bags`).

Output (`--out DIR`): `images/<episode>/<frame>_<camera>.png|jpg`, `manifest.jsonl` (one
sample per line: episode, frame, stamp_ns, label, episode_label, split, images {camera: path},
seed, mode, transient),
`summary.json` (counts per class and split, skipped bags with the reason, the config).
"""

from __future__ import annotations

import json
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reward_model_ros.core.images import ImageEncodingError, decode, decode_compressed
from reward_model_ros.core.overrides import to_plain
from reward_model_ros.core.stamps import stamp_ns
from reward_model_ros.core.sync import SYNC_TOLERANCE_S, group_by_stamp
from reward_model_ros.data.bags import (
    IMAGE_TYPES,
    BagCheck,
    BagError,
    bag_dirs,
    header_stamp_ns,
    needs_recovery,
    open_checked,
    read_episode_info,
)


@dataclass
class DataConfig:
    image_topics: list[str] = field(default_factory=list)
    """image topics to use, first = reference camera; empty = every Image/CompressedImage topic"""
    label_source: str = "auto"
    """auto (episode.json + SuccessLabels; else EpisodeEvents) | events | success | failure"""
    label_topic: str = "/success_label"
    """reward_msgs/SuccessLabel topic with per-frame ground truth"""
    event_topic: str = "/episode/event"
    """reward_msgs/EpisodeEvent topic delimiting episodes in plain bags"""
    episode_success: str = "end"
    """when an episode counts as a success: end (its recorded outcome: every frame of a failed
    episode is a failure, a cube pushed through the goal included) or once (the ground-truth
    SuccessLabel was on at some frame: ManiSkill's success_once, the metric `reward-model rl`
    evaluates policies by; its frames are labelled by that flag, so a pass's frames in the
    goal are success frames). Needs SuccessLabels; episodes without them keep their outcome"""
    success_tail_frames: int = 20
    """successful episodes without SuccessLabels: the last N frames are positive (0 = all)"""
    action_topic: str = "/action"
    """reward_msgs/PolicyAction topic, for drop_idle"""
    drop_idle: bool = False
    """drop frames whose latest action is no motion with an unchanged gripper (as RLinf's real-world data)"""
    idle_threshold: float = 1e-4
    """metres / radians below which an action counts as no motion"""
    num_samples_per_episode: int = 0
    """frames sampled per episode (0 = all)"""
    fail_success_ratio: float = 0.0
    """negatives kept per positive, by random sampling of the surplus class (0 = keep all)"""
    val_fraction: float = 0.2
    """share of episodes (per label) held out for validation"""
    seed: int = 0
    """sampling and split seed"""
    image_format: str = "png"
    """png | jpg"""
    jpeg_quality: int = 95
    """for jpg"""
    sync_tolerance: float = SYNC_TOLERANCE_S
    """seconds: cameras' frames further apart than this are not one sample (reward_node's default too)"""
    debug_save_dir: str = ""
    """if set, a contact sheet of sample frames per class and split goes there"""
    debug_samples: int = 25
    """frames per contact sheet"""


@dataclass
class ProcessConfig:
    data: DataConfig = field(default_factory=DataConfig)


@dataclass
class Episode:
    key: str
    bag: Path
    label: int  # 1 success, 0 failure
    start_ns: int
    end_ns: int
    info: dict[str, Any] = field(default_factory=dict)
    frames: list[tuple[int, dict[str, int]]] = field(default_factory=list)
    """(reference stamp, {topic: stamp}) per sample"""
    labels: list[int] = field(default_factory=list)
    split: str = "train"
    transient: bool = False
    """a failure episode whose ground-truth success flag was on at some frame (a cube pushed
    through the goal, an object lifted to it and dropped): the hardest negatives for one frame"""


class Skip(Exception):
    """A bag (or an episode) that is left out, with the reason."""


@contextmanager
def _reader(bag: Path, checks: dict[Path, BagCheck]) -> Iterator[Any]:
    """A rosbags reader of `bag` that leaves out MCAP chunks failing their CRC check
    (checked at the first open; the result kept in `checks`)."""
    with open_checked(bag, checks.get(bag)) as (reader, check):
        checks[bag] = check
        yield reader


def _messages(reader, connections: list):
    """The messages of `connections` only (rosbags reads every topic for an empty list)."""
    return reader.messages(connections=connections) if connections else iter(())


def _first_pass(reader, cfg: DataConfig) -> dict[str, list]:
    """Labels, events and actions (small messages) as (stamp, value) lists in stamp order."""
    wanted = {cfg.label_topic: "labels", cfg.event_topic: "events", cfg.action_topic: "actions"}
    conns = [c for c in reader.connections if c.topic in wanted]
    out: dict[str, list] = {"labels": [], "events": [], "actions": []}
    for conn, _t, raw in _messages(reader, conns):
        msg = reader.deserialize(raw, conn.msgtype)
        stamp = stamp_ns(msg.header.stamp)
        kind = wanted[conn.topic]
        if kind == "labels":
            out["labels"].append((stamp, bool(msg.success)))
        elif kind == "events":
            out["events"].append((stamp, int(msg.event), int(msg.label), msg))
        else:
            d, r = msg.delta_position, msg.delta_orientation
            motion = max(abs(d.x), abs(d.y), abs(d.z), abs(r.x), abs(r.y), abs(r.z))
            out["actions"].append((stamp, motion, float(msg.gripper)))
    for v in out.values():
        v.sort(key=lambda x: x[0])
    # stamps once per bag, for the per-frame lookups
    out["label_stamps"] = [x[0] for x in out["labels"]]
    out["action_stamps"] = [x[0] for x in out["actions"]]
    return out


def _image_stamps(reader, topics: list[str]) -> dict[str, list[int]]:
    conns = [c for c in reader.connections if c.topic in topics]
    stamps: dict[str, list[int]] = {t: [] for t in topics}
    for conn, _t, raw in _messages(reader, conns):
        stamps[conn.topic].append(header_stamp_ns(raw))
    for v in stamps.values():
        v.sort()
    return stamps


def _latest(series: list[tuple], stamps: list[int], stamp: int) -> tuple | None:
    """The last item of `series` (sorted by stamp; `stamps` its stamps) at or before `stamp`."""
    i = bisect_right(stamps, stamp)
    return series[i - 1] if i else None


def _episodes_of(bag: Path, info: dict | None, first: dict[str, list], cfg: DataConfig) -> list[Episode]:
    source = cfg.label_source
    key = bag.name if info is None else f"{bag.parent.name}_{bag.name}"
    if source in ("success", "failure"):
        return [Episode(key, bag, int(source == "success"), -(2**62), 2**62)]
    if info is not None and source == "auto":
        label = info.get("label")
        if label not in ("success", "failure"):
            raise Skip(f"episode labelled {label!r} (aborted or unlabelled episodes are not used)")
        return [
            Episode(
                key,
                bag,
                int(label == "success"),
                int(info.get("start_stamp_ns", -(2**62))),
                int(info.get("end_stamp_ns", 2**62)),
                info,
            )
        ]
    # plain bag: episodes from the EpisodeEvents in it
    episodes, start = [], None
    for stamp, event, label, msg in first["events"]:
        if event == 0:  # START
            start = (stamp, msg)
        elif start is not None:
            if label in (0, 1):
                n = len(episodes)
                meta = {"task": msg.task, "mode": start[1].mode, "seed": int(start[1].seed)}
                episodes.append(Episode(f"{key}_ep{n:04d}", bag, label, start[0], stamp, meta))
            start = None
    if not episodes:
        raise Skip(
            f"no labelled episodes: no EpisodeEvent START/end pairs with a label on {cfg.event_topic}. "
            "For a bag that is one episode give data.label_source=success or =failure"
        )
    return episodes


def _label_frames(ep: Episode, first: dict[str, list], cfg: DataConfig) -> None:
    if ep.label == 0:
        ep.labels = [0] * len(ep.frames)
        return
    if first["labels"]:
        labels, stamps = first["labels"], first["label_stamps"]
        ep.labels = [int(bool((_latest(labels, stamps, t) or (0, False))[1])) for t, _ in ep.frames]
        return
    n = len(ep.frames)
    tail = n if cfg.success_tail_frames <= 0 else min(n, cfg.success_tail_frames)
    ep.labels = [0] * (n - tail) + [1] * tail


def _drop_idle(ep: Episode, first: dict[str, list], cfg: DataConfig) -> int:
    actions = first["actions"]
    if not actions:
        return 0
    keep_frames, keep_labels, dropped, prev_grip = [], [], 0, None
    for (t, group), label in zip(ep.frames, ep.labels, strict=True):
        a = _latest(actions, first["action_stamps"], t)
        idle = (
            a is not None
            and a[1] < cfg.idle_threshold
            and (prev_grip is None or abs(a[2] - prev_grip) < 1e-6)
        )
        if a is not None:
            prev_grip = a[2]
        if idle:
            dropped += 1
        else:
            keep_frames.append((t, group))
            keep_labels.append(label)
    ep.frames, ep.labels = keep_frames, keep_labels
    return dropped


def _success_seen(first: dict[str, list], start_ns: int, end_ns: int) -> bool:
    """Whether a SuccessLabel between the stamps says success."""
    labels, stamps = first["labels"], first["label_stamps"]
    lo, hi = bisect_right(stamps, start_ns - 1), bisect_right(stamps, end_ns)
    return any(ok for _t, ok in labels[lo:hi])


def _stratum(e: Episode) -> tuple[str, bool]:
    return str(e.info.get("mode", "")), e.transient


def _split(episodes: list[Episode], fraction: float, rng: random.Random) -> None:
    """Per label, a `fraction` of the episodes (at least one when there are two or more) go to
    val, spread over the label's strata in proportion (largest remainder): the scripted mode,
    and for failures whether ground-truth success was seen on the way (`transient`). A plain
    random draw held 1 of the demo's 13 passes in validation, and train's decision settings,
    chosen there, were fooled by cubes pushed through the goal (bench/transits.py)."""
    for label in (0, 1):
        group = [e for e in episodes if e.label == label]
        n_val = round(fraction * len(group))
        if fraction > 0 and n_val == 0 and len(group) >= 2:
            n_val = 1
        strata: dict[tuple[str, bool], list[Episode]] = {}
        for e in group:
            strata.setdefault(_stratum(e), []).append(e)
        keys = sorted(strata)
        for k in keys:
            rng.shuffle(strata[k])
        exact = {k: n_val * len(strata[k]) / len(group) for k in keys}
        take = {k: int(exact[k]) for k in keys}
        ties = {k: rng.random() for k in keys}
        for k in sorted(keys, key=lambda k: (take[k] - exact[k], ties[k]))[: n_val - sum(take.values())]:
            take[k] += 1
        for k in keys:
            for e in strata[k][: take[k]]:
                e.split = "val"


def _write_image(path: Path, rgb: np.ndarray, cfg: DataConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality] if cfg.image_format == "jpg" else []
    if not cv2.imwrite(str(path), bgr, params):
        raise OSError(f"cannot write {path}")


def _to_rgb(msg, msgtype: str) -> np.ndarray:
    if msgtype.endswith("CompressedImage"):  # the decoder reward_node uses
        return decode_compressed(msg.data, msg.format)[0]
    return decode(msg.data, msg.height, msg.width, msg.encoding, msg.step)


def _camera_name(topic: str) -> str:
    parts = [p for p in topic.strip("/").split("/") if p not in ("image_raw", "image", "color", "compressed")]
    return "_".join(parts) or "camera"


def build_dataset(
    paths: Sequence[Path],
    out: Path,
    cfg: DataConfig,
    log: Callable[[str], None] = print,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Build the dataset; returns the summary (also written to out/summary.json)."""
    if cfg.image_format not in ("png", "jpg"):
        raise ValueError(f"data.image_format={cfg.image_format!r}: use png or jpg")
    if cfg.label_source not in ("auto", "events", "success", "failure"):
        raise ValueError(f"data.label_source={cfg.label_source!r}: use auto, events, success or failure")
    if cfg.episode_success not in ("end", "once"):
        raise ValueError(f"data.episode_success={cfg.episode_success!r}: use end or once")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ValueError(f"data.val_fraction={cfg.val_fraction}: must be in [0, 1)")
    out = Path(out)
    if (out / "manifest.jsonl").exists():
        raise FileExistsError(
            f"{out} already holds a dataset (manifest.jsonl): choose another --out or delete it"
        )
    bags = bag_dirs(paths)
    if not bags:
        raise BagError(f"no rosbag2 folders (metadata.yaml) at or under {', '.join(map(str, paths))}")
    rng = random.Random(cfg.seed)
    episodes: list[Episode] = []
    skipped: list[dict[str, str]] = []
    camera_topics: list[str] | None = None
    stats: dict[str, Any] = {
        "unmatched_camera_frames": 0,
        "idle_frames_dropped": 0,
        "frames_outside_episodes": 0,
    }
    checks: dict[Path, BagCheck] = {}
    for n, bag in enumerate(bags):
        if progress:
            progress(n, len(bags), str(bag))
        try:
            if needs_recovery(bag):
                raise Skip(
                    "not finished (no metadata.yaml: its recorder was killed); `reward-model recover "
                    f"{bag}` rebuilds it"
                )
            info = read_episode_info(bag)
            if (
                info is not None
                and info.get("label") not in ("success", "failure")
                and cfg.label_source == "auto"
            ):
                raise Skip(
                    f"episode labelled {info.get('label')!r} (aborted or unlabelled episodes are not used)"
                )
            with _reader(bag, checks) as reader:
                for line in checks[bag].describe():
                    log(line)
                topics = [c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES]
                topics = list(dict.fromkeys(cfg.image_topics)) or sorted(set(topics))
                present = {c.topic for c in reader.connections}
                missing = [t for t in topics if t not in present]
                if not topics or missing:
                    raise Skip(f"no image topic {missing or ''} in it (topics: {', '.join(sorted(present))})")
                if camera_topics is None:
                    camera_topics = topics
                elif topics != camera_topics:
                    raise Skip(f"its cameras {topics} differ from the other bags' {camera_topics}")
                first = _first_pass(reader, cfg)
                eps = _episodes_of(bag, info, first, cfg)
                samples, unmatched = group_by_stamp(
                    _image_stamps(reader, topics), topics, int(cfg.sync_tolerance * 1e9)
                )
                stats["unmatched_camera_frames"] += unmatched
                for ep in eps:
                    ep.frames = [s for s in samples if ep.start_ns <= s[0] <= ep.end_ns]
                    ep.transient = ep.label == 0 and _success_seen(first, ep.start_ns, ep.end_ns)
                    if ep.transient and cfg.episode_success == "once":
                        ep.label = 1  # a pass is a success once: its frames follow the flag
                    _label_frames(ep, first, cfg)
                    if cfg.drop_idle:
                        stats["idle_frames_dropped"] += _drop_idle(ep, first, cfg)
                    if cfg.num_samples_per_episode > 0 and len(ep.frames) > cfg.num_samples_per_episode:
                        keep = sorted(rng.sample(range(len(ep.frames)), cfg.num_samples_per_episode))
                        ep.frames = [ep.frames[i] for i in keep]
                        ep.labels = [ep.labels[i] for i in keep]
                stats["frames_outside_episodes"] += len(samples) - sum(len(e.frames) for e in eps)
                episodes += [e for e in eps if e.frames]
        except Skip as exc:
            skipped.append({"bag": str(bag), "reason": str(exc)})
            log(f"skipped {bag}: {exc}")
        except Exception as exc:  # corrupt or truncated bag: name it, build the rest
            skipped.append({"bag": str(bag), "reason": f"{type(exc).__name__}: {exc}"})
            log(f"skipped {bag}: cannot read it ({type(exc).__name__}: {exc})")
    if not episodes:
        raise BagError("no usable episodes: " + "; ".join(f"{s['bag']}: {s['reason']}" for s in skipped))
    _split(episodes, cfg.val_fraction, rng)
    chosen = _balance(episodes, cfg.fail_success_ratio, rng)
    stats["damaged_bags"] = [
        {"bag": str(b), "messages_dropped": c.messages_dropped, "chunks": c.damaged}
        for b, c in checks.items()
        if c.damaged
    ]
    stats["bags_without_chunk_crcs"] = sum(1 for c in checks.values() if c.chunks_without_crc)
    stats["undecodable_frames"] = []
    written = _write(out, episodes, chosen, camera_topics, cfg, progress, checks, stats["undecodable_frames"])
    if stats["undecodable_frames"]:
        first = stats["undecodable_frames"][0]
        log(
            f"left out {len(stats['undecodable_frames'])} frame(s) that cannot be decoded (the first: "
            f"{first['bag']} {first['topic']} at {first['stamp_ns']}: {first['reason']}); "
            "summary.json lists them"
        )
    summary = _summary(episodes, chosen, written, skipped, stats, camera_topics, cfg)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if cfg.debug_save_dir:
        _contact_sheets(out, Path(cfg.debug_save_dir), cfg.debug_samples, rng)
    return summary


def _balance(episodes: list[Episode], ratio: float, rng: random.Random) -> set[tuple[str, int]]:
    """(episode key, frame index) pairs kept; with ratio > 0 the surplus class is subsampled
    so that negatives ~= ratio * positives, separately in train and val."""
    chosen: set[tuple[str, int]] = set()
    for split in ("train", "val"):
        pos = [(e.key, i) for e in episodes if e.split == split for i, lab in enumerate(e.labels) if lab == 1]
        neg = [(e.key, i) for e in episodes if e.split == split for i, lab in enumerate(e.labels) if lab == 0]
        if ratio > 0 and pos and neg:
            want_neg = round(ratio * len(pos))
            if len(neg) > want_neg:
                neg = rng.sample(neg, want_neg)
            else:
                pos = rng.sample(pos, min(len(pos), max(1, math.ceil(len(neg) / ratio))))
        chosen.update(pos)
        chosen.update(neg)
    return chosen


def _write(out, episodes, chosen, topics, cfg, progress, checks, undecodable: list) -> int:
    out.mkdir(parents=True, exist_ok=True)
    names = {t: _camera_name(t) for t in topics}
    if len(set(names.values())) < len(names):
        names = {t: f"cam{i}" for i, t in enumerate(topics)}
    rows = []
    by_bag: dict[Path, list[Episode]] = {}
    for e in episodes:
        by_bag.setdefault(e.bag, []).append(e)
    for n, (bag, eps) in enumerate(by_bag.items()):
        if progress:
            progress(n, len(by_bag), f"writing {bag}")
        wanted: dict[tuple[str, int], list[tuple[Episode, int, str]]] = {}
        for e in eps:
            for i, (_t, group) in enumerate(e.frames):
                if (e.key, i) in chosen:
                    for topic, stamp in group.items():
                        wanted.setdefault((topic, stamp), []).append((e, i, topic))
        images: dict[tuple[str, int], str] = {}
        with _reader(bag, checks) as reader:
            conns = [c for c in reader.connections if c.topic in topics]
            for conn, _t, raw in _messages(reader, conns):
                k = (conn.topic, header_stamp_ns(raw))
                if k not in wanted:
                    continue
                targets = wanted.pop(k)
                try:
                    rgb = _to_rgb(reader.deserialize(raw, conn.msgtype), conn.msgtype)
                except ImageEncodingError as exc:  # that frame (set) is left out, the rest kept
                    undecodable.append(
                        {"bag": str(bag), "topic": conn.topic, "stamp_ns": k[1], "reason": str(exc)}
                    )
                    continue
                for e, i, topic in targets:
                    rel = f"images/{e.key}/{i:06d}_{names[topic]}.{cfg.image_format}"
                    _write_image(out / rel, rgb, cfg)
                    images[(e.key, i, topic)] = rel
        for e in eps:
            for i, (t, group) in enumerate(e.frames):
                if (e.key, i) not in chosen:
                    continue
                paths = {names[tp]: images.get((e.key, i, tp)) for tp in group}
                if None in paths.values():
                    continue  # a frame that could not be read back
                rows.append(
                    {
                        "episode": e.key,
                        "frame": i,
                        "stamp_ns": t,
                        "label": e.labels[i],
                        "episode_label": e.label,
                        "split": e.split,
                        "images": paths,
                        "seed": e.info.get("seed", -1),
                        "mode": e.info.get("mode", ""),
                        "transient": e.transient,
                    }
                )
    with (out / "manifest.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return len(rows)


def _summary(episodes, chosen, written, skipped, stats, topics, cfg) -> dict[str, Any]:
    counts: dict[str, dict[str, int]] = {}
    for split in ("train", "val"):
        eps = [e for e in episodes if e.split == split]
        frames = [e.labels[i] for e in eps for i in range(len(e.frames)) if (e.key, i) in chosen]
        counts[split] = {
            "episodes_success": sum(e.label == 1 for e in eps),
            "episodes_failure": sum(e.label == 0 for e in eps),
            "episodes_transient": sum(e.transient for e in eps),
            "frames_positive": sum(frames),
            "frames_negative": len(frames) - sum(frames),
        }
    return {
        "samples": written,
        "cameras": topics,
        "splits": counts,
        "skipped_bags": skipped,
        **stats,
        "val_episodes": sorted(e.key for e in episodes if e.split == "val"),
        "config": to_plain(cfg),
    }


MANIFEST_KEYS = ("episode", "frame", "label", "split", "images")


def read_manifest(dataset: Path) -> list[dict[str, Any]]:
    """The samples of a dataset; every line is checked.

    :raises FileNotFoundError: no manifest. :raises ValueError: a malformed or incomplete
        line, named by its number.
    """
    path = Path(dataset) / "manifest.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a dataset built by `reward-model process`")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg}): rebuild the dataset") from exc
        missing = [k for k in MANIFEST_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"{path}:{n}: a sample needs {', '.join(MANIFEST_KEYS)}; missing {missing}")
        if row["label"] not in (0, 1) or not isinstance(row["images"], dict) or not row["images"]:
            raise ValueError(f"{path}:{n}: label must be 0 or 1 and images a non-empty {{camera: path}}")
        rows.append(row)
    return rows


def _contact_sheets(out: Path, debug_dir: Path, n: int, rng: random.Random) -> None:
    rows = read_manifest(out)
    debug_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        for label, name in ((1, "success"), (0, "failure")):
            pick = [r for r in rows if r["split"] == split and r["label"] == label]
            if not pick:
                continue
            pick = rng.sample(pick, min(n, len(pick)))
            tiles = []
            for r in pick:
                imgs = [cv2.imread(str(out / p)) for p in r["images"].values()]
                tile = np.hstack([cv2.resize(i, (128, 128)) for i in imgs])
                cv2.putText(
                    tile, r["episode"][-10:], (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1
                )
                tiles.append(tile)
            cols = max(1, math.ceil(math.sqrt(len(tiles))))
            while len(tiles) % cols:
                tiles.append(np.zeros_like(tiles[0]))
            grid = np.vstack([np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)])
            cv2.imwrite(str(debug_dir / f"{split}_{name}.png"), grid)
