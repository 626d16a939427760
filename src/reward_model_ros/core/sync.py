"""Match frames from several cameras by time (approximate synchronisation): one rule, used
live by reward_node (`FrameSynchronizer`) and offline by the dataset builder
(`group_by_stamp`): a frame pairs with the other cameras' frames nearest to it in time,
when all lie within the tolerance."""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SYNC_TOLERANCE_S = 0.05
"""default: frames of different cameras further apart than this (seconds) are not one set"""


def nearest(stamps: Sequence[int], t: int, tolerance_ns: int) -> int | None:
    """Index of the stamp in sorted `stamps` nearest to `t`, if within `tolerance_ns`."""
    i = bisect_left(stamps, t)
    best = min(
        (j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(stamps[j] - t), default=None
    )
    if best is None or abs(stamps[best] - t) > tolerance_ns:
        return None
    return best


def group_by_stamp(
    stamps: dict[str, list[int]], topics: Sequence[str], tolerance_ns: int
) -> tuple[list[tuple[int, dict[str, int]]], int]:
    """Offline: one set per frame of the reference camera (`topics[0]`) with the nearest frame
    of every other camera; returns ([(reference stamp, {topic: stamp})], frames without a set)."""
    samples, unmatched = [], 0
    ordered = {t: sorted(stamps[t]) for t in topics}
    for t in ordered[topics[0]]:
        group = {topics[0]: t}
        for other in topics[1:]:
            j = nearest(ordered[other], t, tolerance_ns)
            if j is None:
                group = None
                break
            group[other] = ordered[other][j]
        if group is None:
            unmatched += 1
        else:
            samples.append((t, group))
    return samples, unmatched


@dataclass
class SyncStats:
    sets: int = 0
    """complete sets emitted"""
    replaced: int = 0
    """frames dropped without being part of a set (too old, or pushed out of the queue)"""


@dataclass
class FrameSynchronizer:
    """Keeps the last `queue_size` frames of each camera. When a frame arrives, the frames of
    the other cameras nearest in time to it are looked up; if all lie within `tolerance_ns`,
    the set is emitted and every queued frame up to it is consumed (older ones count as
    dropped). So one camera's frame arriving a little later than the other's next one still
    pairs correctly, a missing frame loses only its own set, and nothing queues up beyond
    `queue_size`. With one camera every frame is a set.
    """

    cameras: int
    tolerance_ns: int
    queue_size: int = 5
    stats: SyncStats = field(default_factory=SyncStats)

    def __post_init__(self) -> None:
        if self.cameras < 1:
            raise ValueError("need at least one camera")
        self._queues: list[deque[tuple[int, Any]]] = [deque() for _ in range(self.cameras)]

    def add(self, camera: int, stamp_ns: int, item: Any) -> list[Any] | None:
        """Offer a frame; returns the items of a complete set (camera order) or None."""
        queue = self._queues[camera]
        queue.append((stamp_ns, item))
        if len(queue) > 1 and queue[-2][0] > stamp_ns:  # out of order: keep the queue sorted
            queue = self._queues[camera] = deque(sorted(queue, key=lambda entry: entry[0]))
        if len(queue) > self.queue_size:
            queue.popleft()
            self.stats.replaced += 1
        chosen: list[tuple[int, Any]] = []
        for i, other in enumerate(self._queues):
            if i == camera:
                chosen.append((stamp_ns, item))
                continue
            j = nearest([entry[0] for entry in other], stamp_ns, self.tolerance_ns)
            if j is None:
                return None
            chosen.append(other[j])
        for i, (stamp, _) in enumerate(chosen):  # consume the set and everything older
            queue_i = self._queues[i]
            while queue_i and queue_i[0][0] <= stamp:
                if queue_i.popleft()[0] != stamp:
                    self.stats.replaced += 1
        self.stats.sets += 1
        return [entry[1] for entry in chosen]
