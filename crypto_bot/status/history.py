"""MemoryHistory: the memory readings the status page's chart draws, bounded in time and in points.

One sample per cycle (wall time, RSS, working set, cache bytes, pressure level). Samples older than
the window are dropped; when the window holds more than `max_points`, every other sample is
dropped, so a long window keeps its shape at half the resolution instead of growing. Thread-safe:
the event loop appends, the server's threads read.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, NamedTuple

MAX_POINTS = 1500  # a chart a few hundred pixels wide shows no more


class Sample(NamedTuple):
    time: float  # wall clock, seconds since the epoch
    rss_bytes: int | None
    working_set_bytes: int | None
    cache_bytes: int
    level: str


class MemoryHistory:
    window_seconds: float
    max_points: int

    def __init__(self, window_seconds: float, max_points: int = MAX_POINTS) -> None:
        if max_points < 2:
            raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
        self.window_seconds = window_seconds
        self.max_points = max_points
        self._samples: deque[Sample] = deque()
        self._lock = threading.Lock()

    def append(self, sample: Sample) -> None:
        with self._lock:
            self._samples.append(sample)
            oldest = sample.time - self.window_seconds
            while self._samples and self._samples[0].time < oldest:
                self._samples.popleft()
            if len(self._samples) > self.max_points:
                kept = list(self._samples)[::2]
                if kept[-1] is not sample:  # the newest reading always stays
                    kept.append(sample)
                self._samples = deque(kept)

    def __len__(self) -> int:
        return len(self._samples)

    def to_dict(self) -> dict[str, Any]:
        """Columns, as the page's chart reads them."""
        with self._lock:
            samples = list(self._samples)
        return {field: [getattr(sample, field) for sample in samples] for field in Sample._fields}
