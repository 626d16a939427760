"""Small rolling statistics for health reporting (diagnostics): rates and percentiles."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class RateWindow:
    """Events per second over the last `window` seconds (thread-safe)."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        with self._lock:
            self._times.append(time.monotonic() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._times and self._times[0] < now - self.window:
                self._times.popleft()
            return len(self._times) / self.window


class Percentiles:
    """p50/p90/p99/max of the last `size` samples (thread-safe)."""

    def __init__(self, size: int = 500) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append(float(value))

    def summary(self) -> dict[str, float]:
        with self._lock:
            values = np.array(self._values, float)
        if not len(values):
            return {}
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(values.max())}
