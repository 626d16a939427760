"""Match frames from several cameras by time (approximate synchronisation)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


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
        if len(queue) > self.queue_size:
            queue.popleft()
            self.stats.replaced += 1
        chosen: list[tuple[int, Any]] = []
        for i, other in enumerate(self._queues):
            if i == camera:
                chosen.append((stamp_ns, item))
                continue
            if not other:
                return None
            nearest = min(other, key=lambda entry: abs(entry[0] - stamp_ns))
            if abs(nearest[0] - stamp_ns) > self.tolerance_ns:
                return None
            chosen.append(nearest)
        for i, (stamp, _) in enumerate(chosen):  # consume the set and everything older
            queue_i = self._queues[i]
            while queue_i and queue_i[0][0] <= stamp:
                if queue_i.popleft()[0] != stamp:
                    self.stats.replaced += 1
        self.stats.sets += 1
        return [entry[1] for entry in chosen]
