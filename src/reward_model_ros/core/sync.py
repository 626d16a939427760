"""Match frames from several cameras by time (approximate synchronisation), latest first."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SyncStats:
    sets: int = 0
    """complete sets emitted"""
    replaced: int = 0
    """frames dropped because a newer frame of the same camera arrived before a set formed"""


@dataclass
class FrameSynchronizer:
    """Keeps the newest frame of each camera; emits a set when all cameras' newest frames
    lie within `tolerance_ns` of each other.

    Policy: latest wins. A frame that is replaced by a newer one of the same camera before
    its set is complete is dropped (counted in `stats.replaced`), so a slow or missing
    camera never makes the others queue up. With one camera every frame is a set.
    """

    cameras: int
    tolerance_ns: int
    stats: SyncStats = field(default_factory=SyncStats)

    def __post_init__(self) -> None:
        if self.cameras < 1:
            raise ValueError("need at least one camera")
        self._latest: list[tuple[int, Any] | None] = [None] * self.cameras

    def add(self, camera: int, stamp_ns: int, item: Any) -> list[Any] | None:
        """Offer a frame; returns the items of a complete set (camera order) or None."""
        if self._latest[camera] is not None:
            self.stats.replaced += 1
        self._latest[camera] = (stamp_ns, item)
        if any(entry is None for entry in self._latest):
            return None
        stamps = [entry[0] for entry in self._latest]  # type: ignore[index]
        if max(stamps) - min(stamps) > self.tolerance_ns:
            # drop the frames that are too old to ever match the newest one
            newest = max(stamps)
            for i, entry in enumerate(self._latest):
                if entry is not None and newest - entry[0] > self.tolerance_ns:
                    self._latest[i] = None
                    self.stats.replaced += 1
            return None
        items = [entry[1] for entry in self._latest]  # type: ignore[index]
        self._latest = [None] * self.cameras
        self.stats.sets += 1
        return items
