"""Episode recording without ROS: messages in (serialized, with their stamps), one rosbag2
folder per episode out. The recorder node feeds it from its subscriptions.

Routing is by stamp, not by arrival order: messages from different topics can arrive in
any order, so items wait `reorder_window` seconds in a queue, are then taken in stamp order,
and an episode takes every message stamped from its START event's stamp to its end event's
stamp (both inclusive; the simulation bridge stamps START with the first frame's stamp and
the end with the last one's). Messages without a header are stamped with the receiving
node's clock (simulation time under use_sim_time).

Layout under `save_dir`: `incomplete/episode_NNNNNN/` while recording, then
`success/`, `failure/` or `aborted/` (no label: stopped, crashed, disk full); each folder a
rosbag2 bag (MCAP by default) with `episode.json` beside metadata.yaml. Episode numbers
continue from the highest already in `save_dir`.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reward_model_ros.data.bags import EpisodeBagWriter, TypeRegistry, needs_recovery, recover_bag

LABEL_DIRS = {1: "success", 0: "failure", -1: "aborted"}
INCOMPLETE = "incomplete"
# order of items that share a stamp: a START before the data, an end after it
START, DATA, END = 0, 1, 2


@dataclass
class EventInfo:
    kind: int
    """START or END"""
    event: str
    """START, SUCCESS, FAILURE, TIMEOUT, ABORT (the EpisodeEvent constant's name)"""
    label: int = -1
    task: str = ""
    mode: str = ""
    seed: int = -1
    source_episode: int = -1
    """the publisher's episode_index"""
    message: str = ""


@dataclass(order=True)
class Item:
    stamp_ns: int
    order: int
    seq: int
    topic: str = field(compare=False)
    msgtype: str = field(compare=False)
    data: bytes = field(compare=False)
    received: float = field(compare=False)
    """time.monotonic() at receipt"""
    log_ns: int = field(compare=False)
    """the bag timestamp (receipt time on the node's clock, as ros2 bag record does)"""
    event: EventInfo | None = field(default=None, compare=False)


@dataclass
class _Open:
    index: int
    path: Path
    writer: EpisodeBagWriter
    start: EventInfo
    start_ns: int
    wall_start: float
    last_stamp_ns: int = 0


def next_episode_index(save_dir: Path) -> int:
    best = -1
    for p in save_dir.glob("*/episode_*"):
        m = re.fullmatch(r"episode_(\d+)", p.name)
        if m:
            best = max(best, int(m.group(1)))
    return best + 1


class EpisodeRecorder:
    """Thread-safe: `put` from subscription callbacks, `process` from one writer thread."""

    def __init__(
        self,
        save_dir: Path,
        storage: str = "mcap",
        reorder_window: float = 0.3,
        max_queue_bytes: int = 1 << 30,
        image_topics: tuple[str, ...] = (),
        on_closed: Callable[[dict[str, Any]], None] | None = None,
        log: logging.Logger | Any = None,
    ) -> None:
        self.save_dir = Path(save_dir)
        self.storage = storage
        self.window = reorder_window
        self.max_queue_bytes = max_queue_bytes
        self.image_topics = set(image_topics)
        self.on_closed = on_closed
        self.log = log or logging.getLogger(__name__)
        self.registry = TypeRegistry()
        self._lock = threading.Lock()  # the queue
        self._io = threading.RLock()  # the open episode: the writer thread and service calls
        self._queue: list[Item] = []
        self._queued_bytes = 0
        self._seq = 0
        self.open: _Open | None = None
        self.next_index = next_episode_index(self.save_dir)
        self.counts = {"success": 0, "failure": 0, "aborted": 0}
        self.dropped_queue = 0
        """messages refused because the queue was full (the writer could not keep up)"""
        self.late = 0
        """messages that arrived after their episode had been closed"""
        self._ep_dropped = 0
        self._ep_late = 0
        self.last_end_ns: int | None = None

    # --- start-up ---------------------------------------------------------------------
    def recover_leftovers(self) -> list[Path]:
        """Bags left in incomplete/ by a crash: rebuild them and move them to aborted/."""
        done = []
        for path in sorted((self.save_dir / INCOMPLETE).glob("episode_*")):
            if path.name.endswith((".damaged", ".recovering")):
                continue
            if needs_recovery(path):
                counts = recover_bag(path, self.registry)
                self.log.warning(f"recovered {path} after a crash: {sum(counts.values())} messages kept")
            target = self._move(path, "aborted")
            done.append(target)
        return done

    # --- input ------------------------------------------------------------------------
    def put(self, item: Item) -> bool:
        with self._lock:
            if self._queued_bytes + len(item.data) > self.max_queue_bytes and item.event is None:
                self.dropped_queue += 1
                self._ep_dropped += 1
                return False
            item.seq = self._seq
            self._seq += 1
            self._queue.append(item)
            self._queued_bytes += len(item.data)
        return True

    def queued(self) -> tuple[int, int]:
        with self._lock:
            return len(self._queue), self._queued_bytes

    # --- the writer thread --------------------------------------------------------------
    def process(self, now: float | None = None, everything: bool = False) -> None:
        """Write the items that have waited `reorder_window`, in stamp order."""
        with self._io:
            self._process(time.monotonic() if now is None else now, everything)

    def _process(self, now: float, everything: bool) -> None:
        with self._lock:
            if everything:
                ready, self._queue = self._queue, []
            else:
                ready = [i for i in self._queue if now - i.received >= self.window]
                if ready:
                    self._queue = [i for i in self._queue if now - i.received < self.window]
            self._queued_bytes -= sum(len(i.data) for i in ready)
        for item in sorted(ready):
            self._route(item)

    def _route(self, item: Item) -> None:
        ev = item.event
        if ev is not None and ev.kind == START:
            if self.open is not None:
                self._close(
                    EventInfo(END, "ABORT", -1, message="a new episode started before this one ended"),
                    item.stamp_ns,
                )
            self._start(item)
            return
        if self.open is None:
            if self.last_end_ns is not None and item.stamp_ns <= self.last_end_ns:
                self.late += 1
                self._ep_late += 1
            return  # between episodes: not recorded
        if item.stamp_ns < self.open.start_ns:
            self.late += 1
            self._ep_late += 1
            return
        self._write(item)
        if ev is not None and ev.kind == END:
            self._close(ev, item.stamp_ns)

    def _write(self, item: Item) -> None:
        w = self.open.writer
        self.open.last_stamp_ns = max(self.open.last_stamp_ns, item.stamp_ns)
        if item.topic not in w.connections:
            w.add_topic(item.topic, item.msgtype)
        w.write(item.topic, item.log_ns, item.data)

    def _start(self, item: Item) -> None:
        self._begin(item.stamp_ns, item.event)
        self._write(item)

    def start_manual(self, stamp_ns: int, task: str, mode: str) -> int:
        """Start an episode now (a service call); returns its index."""
        with self._io:
            self._process(0.0, everything=True)  # what came before belongs before the start
            if self.open is not None:
                raise RuntimeError(f"episode {self.open.index} is being recorded; stop it first")
            self._begin(stamp_ns, EventInfo(START, "START", task=task, mode=mode))
            return self.open.index

    def _begin(self, stamp_ns: int, ev: EventInfo) -> None:
        index = self.next_index
        self.next_index += 1
        path = self.save_dir / INCOMPLETE / f"episode_{index:06d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = EpisodeBagWriter(path, self.registry, self.storage)
        self.open = _Open(index, path, writer, ev, stamp_ns, time.monotonic())
        self._ep_dropped = self._ep_late = 0

    def stop_manual(self, stamp_ns: int, label: int, message: str) -> Path | None:
        with self._io:
            self._process(0.0, everything=True)
            if self.open is None:
                return None
            event = {1: "SUCCESS", 0: "FAILURE"}.get(label, "ABORT")
            return self._close(EventInfo(END, event, label, message=message), stamp_ns)

    def abort(self, message: str) -> Path | None:
        """Close the open episode without a label (stop, error, disk full)."""
        with self._io:
            self._process(0.0, everything=True)
            if self.open is None:
                return None
            return self._close(
                EventInfo(END, "ABORT", -1, message=message), max(self.open.last_stamp_ns, self.open.start_ns)
            )

    def flush(self) -> None:
        with self._io:
            if self.open is not None:
                self.open.writer.flush()

    def _close(self, end: EventInfo, end_ns: int) -> Path:
        ep = self.open
        self.open = None
        self.last_end_ns = end_ns
        start = ep.start
        label = end.label if end.label in (0, 1) else -1
        counts = dict(ep.writer.counts)
        info = {
            "episode": ep.index,
            "label": LABEL_DIRS[label],
            "end_event": end.event,
            "task": start.task,
            "mode": start.mode,
            "seed": start.seed,
            "source_episode_index": start.source_episode,
            "start_stamp_ns": ep.start_ns,
            "end_stamp_ns": end_ns,
            "duration_s": round((end_ns - ep.start_ns) / 1e9, 3),
            "messages": counts,
            "frames": {t: n for t, n in counts.items() if t in self.image_topics},
            "dropped_queue_full": self._ep_dropped,
            "late": self._ep_late,
            "message": end.message,
            "storage": self.storage,
        }
        ep.writer.close(info)
        target = self._move(ep.path, LABEL_DIRS[label])
        self.counts[LABEL_DIRS[label]] += 1
        info["path"] = str(target)
        if self.on_closed is not None:
            self.on_closed(info)
        return target

    def _move(self, path: Path, label_dir: str) -> Path:
        target = self.save_dir / label_dir / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(target))
        return target
