"""Episode recording without ROS: messages in (serialized, with their stamps), one rosbag2
folder per episode out. The recorder node feeds it from its subscriptions.

Routing is by stamp, not by arrival order: messages from different topics can arrive in
any order, so items wait `reorder_window` seconds in a queue, are then taken in stamp order,
and an episode takes every message stamped from its START event's stamp to its end event's
stamp (both inclusive; the simulation bridge stamps START with the first frame's stamp and
the end with the last one's). Messages without a header are stamped with the receiving
node's clock (simulation time under use_sim_time).

An ended episode closes once every stamped topic it recorded has delivered a message
stamped at or after its end (and nothing stamped before its end still waits in the queue),
or `close_timeout` seconds after its end event was routed, whichever comes first: a
message repaired by DDS (a reliable sample resent after a heartbeat) or held up by a busy
executor can arrive well after the end event, and the last frames of an episode are its
ground truth. Messages stamped after the end wait until it has closed.

Layout under `save_dir`: `incomplete/episode_NNNNNN/` while recording, then
`success/`, `failure/` or `aborted/` (no label: stopped, crashed, disk full); each folder a
rosbag2 bag (MCAP by default) with `episode.json` beside metadata.yaml (written at the start
too, so that task and mode survive a crash). Episode numbers continue from the highest
already in `save_dir`.

Disk space: `check_disk` stops recording (the open episode closed into aborted/) once the
free space no longer covers `disk_horizon` seconds of writing at the current rate, the
queue and `min_free_bytes`. Should the disk fill anyway (another process), the write that
fails (ENOSPC) closes the episode as aborted, "disk full", with everything up to the last
complete chunk readable: `DiskReserve` keeps a few MiB allocated, released to finish the
bag. After that no episode starts until the recorder is restarted.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reward_model_ros.data.bags import (
    BagError,
    DiskFull,
    EpisodeBagWriter,
    TypeRegistry,
    is_disk_full,
    needs_recovery,
    read_episode_info,
    recover_bag,
    write_episode_info,
)

LABEL_DIRS = {1: "success", 0: "failure", -1: "aborted"}
LABEL_HELP = "1 (success), 0 (failure) or -1 (aborted: kept, not used for training)"
INCOMPLETE = "incomplete"
RESERVE_FILE = ".recorder_disk_reserve"
RESERVE_BYTES = 16 * 2**20
"""kept allocated while recording; freed to finish the open bag when the disk fills"""
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
    stamped: bool = field(default=True, compare=False)
    """stamp_ns is the message's header stamp (False: its receipt time, no header)"""


@dataclass
class _Closing:
    """An episode whose end event has been routed, waiting for its topics' last messages."""

    end: EventInfo
    end_ns: int
    deadline: float
    """time.monotonic() after which it closes whatever is missing"""


@dataclass
class _Open:
    index: int
    path: Path
    writer: EpisodeBagWriter
    start: EventInfo
    start_ns: int
    wall_start: float
    last_stamp_ns: int = 0
    topics: set[str] = field(default_factory=set)
    """topics with header stamps written into it: an ended episode waits for each"""
    closing: _Closing | None = None


class DiskReserve:
    """A file of `size` bytes kept allocated in `save_dir`: when the disk fills, deleting it
    makes room for what finishing the open bag needs (its last chunk, summary, metadata.yaml)."""

    def __init__(self, path: Path, size: int = RESERVE_BYTES) -> None:
        self.path = Path(path)
        self.size = size

    def take(self) -> None:
        """Allocate it (again); DiskFull if there is no room for it."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                try:
                    os.posix_fallocate(fd, 0, self.size)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    os.pwrite(fd, b"\0" * self.size, 0)  # a filesystem without fallocate
            finally:
                os.close(fd)
        except OSError as exc:
            self.release()
            if is_disk_full(exc):
                raise DiskFull(f"no room for the {self.size >> 20} MiB disk reserve {self.path}") from exc
            raise

    def release(self) -> bool:
        """Delete it; whether there was one."""
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False


class WriteRate:
    """Bytes written per second over the last `window` seconds."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, now: float, total_bytes: int) -> float:
        """Add a sample (monotonic time, bytes written so far); returns the rate."""
        self._samples.append((now, total_bytes))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        t0, b0 = self._samples[0]
        return (total_bytes - b0) / max(now - t0, self.window)


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
        close_timeout: float = 5.0,
        max_queue_bytes: int = 1 << 30,
        image_topics: tuple[str, ...] = (),
        on_closed: Callable[[dict[str, Any]], None] | None = None,
        log: logging.Logger | Any = None,
        min_free_bytes: int = 0,
        disk_horizon: float = 5.0,
        reserve_bytes: int = 0,
    ) -> None:
        self.save_dir = Path(save_dir)
        self.min_free_bytes = min_free_bytes
        self.disk_horizon = disk_horizon
        """seconds of writing at the current rate that must fit above min_free_bytes"""
        self.reserve = DiskReserve(self.save_dir / RESERVE_FILE, reserve_bytes) if reserve_bytes else None
        self.stopped_reason: str | None = None
        """why no episode may start (the disk is full); None while recording is possible"""
        self.refused_starts = 0
        self.bytes_written = 0
        self._rate = WriteRate()
        self.write_rate = 0.0
        """bytes per second, as the last disk check measured it"""
        self.last_info: dict[str, Any] | None = None
        """episode.json of the episode closed last"""
        self.storage = storage
        self.window = reorder_window
        self.close_timeout = close_timeout
        """seconds an ended episode waits for its topics' messages up to its end stamp"""
        self.closed_by_timeout = 0
        """episodes closed by close_timeout with some topic's last messages missing"""
        self._latest: dict[str, int] = {}  # per stamped topic, the latest stamp that arrived
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
        """Bags left in incomplete/ by a crash: rebuild them and move them to aborted/. One
        that cannot be rebuilt (nothing readable, no space) stays where it is, untouched,
        with an error saying why."""
        done = []
        for path in sorted((self.save_dir / INCOMPLETE).glob("episode_*")):
            if not path.is_dir() or not re.fullmatch(r"episode_\d+", path.name):
                continue
            try:
                if needs_recovery(path):
                    result = recover_bag(path, self.registry, label="aborted")
                    lost = result.messages_left_out
                    self.log.warning(
                        f"recovered {path} after a crash: {result.messages} messages kept"
                        + (
                            ""
                            if lost == 0
                            else f", {'some' if lost is None else lost} unreadable ones left out"
                        )
                        + f"; the file as it was is kept as {result.kept.name}"
                    )
                elif (path / "metadata.yaml").is_file():  # finished, not yet moved
                    info = read_episode_info(path)
                    if info is not None and info.get("label") != "aborted":
                        write_episode_info(path, {**info, "label": "aborted", "end_event": "ABORT"})
                else:
                    continue  # no bag in it
            except (BagError, OSError) as exc:
                self.log.error(
                    f"could not recover {path} ({exc}); it is left as it is: free some space and run "
                    f"`reward-model recover {path}`, or delete it"
                )
                continue
            done.append(self._move(path, "aborted"))
        return done

    # --- input ------------------------------------------------------------------------
    def put(self, item: Item) -> bool:
        with self._lock:
            if item.stamped and item.stamp_ns > self._latest.get(item.topic, -1):
                self._latest[item.topic] = item.stamp_ns
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
        ready.sort()
        for n, item in enumerate(ready):
            ep = self.open
            after_end = ep is not None and ep.closing is not None and item.stamp_ns > ep.closing.end_ns
            # after the end of an episode that still waits for its last messages: not yet
            if after_end and not self._finish_closing(now, force=everything):
                self._requeue(ready[n:])
                return
            self._route(item, now)
        if self.open is not None and self.open.closing is not None:
            self._finish_closing(now, force=everything)

    def _requeue(self, items: list[Item]) -> None:
        with self._lock:
            self._queue.extend(items)
            self._queued_bytes += sum(len(i.data) for i in items)

    def _finish_closing(self, now: float, force: bool = False) -> bool:
        """Close the ended episode once its topics have delivered their messages up to its
        end, or at its deadline (or `force`); whether it is closed."""
        ep = self.open
        closing = ep.closing
        with self._lock:
            pending = any(i.stamp_ns <= closing.end_ns for i in self._queue)
            missing = sorted(t for t in ep.topics if self._latest.get(t, -1) < closing.end_ns)
        if not force and (pending or missing):
            if now < closing.deadline:
                return False
            self.closed_by_timeout += 1
            self.log.info(
                f"episode {ep.index} closed {self.close_timeout:g} s after its end event: "
                + (
                    "messages stamped before its end were still waiting to be routed"
                    if pending
                    else f"nothing stamped at or after its end arrived on {', '.join(missing)}"
                )
                + " (anything stamped before its end that arrives now is counted late)"
            )
        self._close(closing.end, closing.end_ns)
        return True

    def _route(self, item: Item, now: float) -> None:
        ev = item.event
        if ev is not None and ev.kind == START:
            if self.open is not None:
                closing = self.open.closing
                if closing is not None:  # ended: it keeps its own end
                    self._close(closing.end, closing.end_ns)
                else:
                    self._close(
                        EventInfo(END, "ABORT", -1, message="a new episode started before this one ended"),
                        item.stamp_ns,
                    )
            if self._begin(item.stamp_ns, ev):
                self._write(item)
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
        ep = self.open
        if ev is not None and ev.kind == END and ep is not None and ep.closing is None:
            # (ep is None: closed by a full disk) closed once its topics have caught up
            ep.closing = _Closing(ev, item.stamp_ns, now + self.close_timeout)

    def _write(self, item: Item) -> None:
        ep = self.open
        w = ep.writer
        ep.last_stamp_ns = max(ep.last_stamp_ns, item.stamp_ns)
        if item.stamped:
            ep.topics.add(item.topic)
        if item.topic not in w.connections:
            w.add_topic(item.topic, item.msgtype)
        try:
            w.write(item.topic, item.log_ns, item.data)
        except DiskFull as exc:
            self.open = None
            self._close_disk_full(ep, exc)
            return
        self.bytes_written += len(item.data)

    def start_manual(self, stamp_ns: int, task: str, mode: str) -> int:
        """Start an episode now (a service call); returns its index. RuntimeError (saying
        why) when one is being recorded or recording has stopped."""
        with self._io:
            self._process(0.0, everything=True)  # what came before belongs before the start
            if self.open is not None:
                raise RuntimeError(f"episode {self.open.index} is being recorded; stop it first")
            if not self._begin(stamp_ns, EventInfo(START, "START", task=task, mode=mode)):
                raise RuntimeError(f"recording has stopped: {self.stopped_reason}")
            return self.open.index

    def _begin(self, stamp_ns: int, ev: EventInfo) -> bool:
        """Open the next episode's bag; False (and no episode) once recording has stopped."""
        if self.stopped_reason is not None:
            self.refused_starts += 1
            return False
        index = self.next_index
        path = self.save_dir / INCOMPLETE / f"episode_{index:06d}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = EpisodeBagWriter(path, self.registry, self.storage)
            try:  # the description as far as it is known, in case the episode never closes
                write_episode_info(path, self._info_at_start(index, ev, stamp_ns))
            except BaseException:
                writer.abort()
                shutil.rmtree(path, ignore_errors=True)  # made just now: holds no data
                raise
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self._stop(f"disk full under {self.save_dir}: episode {index} could not start ({exc})")
            return False
        self.next_index += 1
        self.open = _Open(index, path, writer, ev, stamp_ns, time.monotonic())
        self._ep_dropped = self._ep_late = 0
        return True

    def stop_manual(self, stamp_ns: int, label: int, message: str) -> Path | None:
        """Close the open episode with `label` (1, 0 or -1); returns its folder, None if none
        is open. ValueError for any other label (the episode goes on recording)."""
        if label not in LABEL_DIRS:
            raise ValueError(f"label {label} does not exist: use {LABEL_HELP}")
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
            ep = self.open
            if ep is None:
                return
            try:
                ep.writer.flush()
            except DiskFull as exc:
                self.open = None
                self._close_disk_full(ep, exc)

    # --- disk space -----------------------------------------------------------------------
    def check_disk(self, now: float | None = None) -> str | None:
        """Stop recording when the free space no longer covers `disk_horizon` seconds of
        writing at the current rate, plus what waits in the queue, plus `min_free_bytes`:
        the open episode is closed into aborted/. Cheap (one statvfs): call it after every
        write. Returns the reason when it stops recording, else None."""
        if self.stopped_reason is not None:
            return None
        now = time.monotonic() if now is None else now
        rate = self.write_rate = self._rate.update(now, self.bytes_written)
        free = shutil.disk_usage(self.save_dir).free
        queued = self.queued()[1]
        needed = self.min_free_bytes + rate * self.disk_horizon + queued
        if free >= needed:
            return None
        mb = 2**20
        reason = (
            f"disk nearly full: {free / mb:.0f} MB free under {self.save_dir}, less than the "
            f"{self.min_free_bytes / mb:.0f} MB to keep free (min_free_disk_mb) + {self.disk_horizon:g} s "
            f"of writing at {rate / mb:.1f} MB/s + {queued / mb:.0f} MB waiting to be written"
        )
        self._stop(reason)
        with self._io:
            self._process(0.0, everything=True)
            if self.open is not None:
                ep = self.open
                self._close(EventInfo(END, "ABORT", -1, message=reason), max(ep.last_stamp_ns, ep.start_ns))
        return reason

    def _stop(self, reason: str) -> None:
        if self.stopped_reason is None:
            self.stopped_reason = reason
            self.log.error(f"recording stopped: {reason}. Free some space and restart the recorder.")

    def _close_disk_full(self, ep: _Open, exc: Exception) -> Path | None:
        """The disk filled while writing `ep`: finish its bag with what is on disk (the
        reserve freed for that), as aborted, "disk full"; no new episode starts after this."""
        released = self.reserve.release() if self.reserve is not None else False
        self._stop(f"disk full under {self.save_dir} ({exc})")
        end_ns = max(ep.last_stamp_ns, ep.start_ns)
        self.last_end_ns = end_ns
        end = EventInfo(END, "ABORT", -1, message="disk full")
        try:
            info = ep.writer.finish_after_disk_full(lambda counts: self._info(ep, end, end_ns, counts))
        except BagError as exc2:
            self.log.error(
                f"episode {ep.index}: {exc2}" + ("" if released else " (there was no disk reserve to free)")
            )
            return None
        lost = ep.writer.lost_disk_full
        self.log.error(
            f"episode {ep.index} closed as aborted (disk full): {sum(info['messages'].values())} messages "
            f"kept" + (f", the last {lost} lost" if lost else "")
        )
        return self._finished(ep, info)

    # --- closing --------------------------------------------------------------------------
    def _close(self, end: EventInfo, end_ns: int) -> Path | None:
        ep = self.open
        self.open = None
        self.last_end_ns = end_ns
        try:
            info = ep.writer.close(lambda counts: self._info(ep, end, end_ns, counts))
        except DiskFull as exc:
            return self._close_disk_full(ep, exc)
        return self._finished(ep, info)

    def _finished(self, ep: _Open, info: dict[str, Any]) -> Path:
        target = self._move(ep.path, info["label"])
        self.counts[info["label"]] += 1
        info = {**info, "path": str(target)}
        self.last_info = info
        if self.on_closed is not None:
            self.on_closed(info)
        return target

    def _info_at_start(self, index: int, start: EventInfo, start_ns: int) -> dict[str, Any]:
        return {
            "episode": index,
            "label": INCOMPLETE,
            "task": start.task,
            "mode": start.mode,
            "seed": start.seed,
            "source_episode_index": start.source_episode,
            "start_stamp_ns": start_ns,
            "storage": self.storage,
        }

    def _info(self, ep: _Open, end: EventInfo, end_ns: int, counts: dict[str, int]) -> dict[str, Any]:
        start = ep.start
        label = end.label if end.label in (0, 1) else -1
        message = end.message
        if end.label not in LABEL_DIRS:
            problem = (
                f"episode {ep.index} ended with label {end.label}, which does not exist "
                "(1 success, 0 failure, -1 aborted)"
            )
            self.log.error(
                f"{problem}: it is kept in aborted/; move its directory to success/ or failure/ "
                "if you know its outcome, and fix the publisher of the episode events"
            )
            message = f"{problem}; {message}" if message else problem
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
            "message": message,
            "storage": self.storage,
        }
        if ep.writer.lost_disk_full:
            info["lost_disk_full"] = ep.writer.lost_disk_full
        return info

    def _move(self, path: Path, label_dir: str) -> Path:
        target = self.save_dir / label_dir / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(target))
        return target
