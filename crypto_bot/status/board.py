"""StatusBoard: what the server shows about the running bot, recorded at each cycle's end.

The trading figures are copied on the event loop's thread when a cycle ends (`record_cycle`), so
the server's threads never read the bot's positions while a phase changes them; memory figures are
read fresh at each request (the memory manager is thread-safe). The board also keeps the memory
history the chart draws, the cycle durations /metrics exports as a histogram, and what /health
decides on.

See also: `health.py` (the verdict), `server.py` (HTTP), `prometheus.py` (the /metrics names).
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .config import ServerConfig
from .health import Health, assess_health
from .history import MemoryHistory, Sample

if TYPE_CHECKING:
    from crypto_bot.memory import MemoryManager
    from crypto_bot.notify import Notifier

# Upper bounds (seconds) of the cycle duration histogram's buckets: a simulated cycle takes ~10 ms, a live
# one with REST calls seconds, a stalled one minutes.
CYCLE_BUCKETS_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_RECENT_CYCLES = 10  # the longest of these sets /health's cycle period


class StatusBoard:
    """Recorded at each cycle's end by the run loop, read by the server's threads (thread-safe)."""

    config: ServerConfig
    interval_seconds: float
    recycles: int
    history: MemoryHistory

    def __init__(
        self,
        config: ServerConfig,
        *,
        memory: MemoryManager | None,
        notifier: Notifier | None = None,
        interval_seconds: float,
        recycles: int = 0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.memory = memory
        self.notifier = notifier
        self.interval_seconds = interval_seconds
        self.recycles = recycles
        self.history = MemoryHistory(config.history_minutes * 60)
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._started_at = wall_clock()
        self._trading: dict[str, Any] = {}
        self._last_cycle_at: float | None = None  # the monotonic clock's
        self._last_cycle_wall: float | None = None
        self._recent_seconds: deque[float] = deque(maxlen=_RECENT_CYCLES)
        self._cycles = 0  # cycles this process ran
        self._bucket_counts = [0] * (len(CYCLE_BUCKETS_SECONDS) + 1)  # the last one is +Inf
        self._seconds_sum = 0.0

    def record_cycle(self, bot: Any, seconds: float) -> None:
        """After each cycle, on the loop's thread: the bot's `trading_status()` and a memory sample."""
        trading = bot.trading_status()
        memory = self.memory
        reading = memory.read_memory() if memory is not None else None
        now_wall = self._wall_clock()
        self.history.append(
            Sample(
                now_wall,
                None if reading is None else reading.rss_bytes,
                None if reading is None else reading.working_set_bytes,
                0 if memory is None else memory.cache_bytes,
                "UNMANAGED" if memory is None else memory.policy.level.name,
            )
        )
        with self._lock:
            self._trading = trading
            self._last_cycle_at = self._clock()
            self._last_cycle_wall = now_wall
            self._recent_seconds.append(seconds)
            self._cycles += 1
            self._bucket_counts[bisect.bisect_left(CYCLE_BUCKETS_SECONDS, seconds)] += 1
            self._seconds_sum += seconds

    @property
    def pressure_level(self) -> str:
        return "UNMANAGED" if self.memory is None else self.memory.policy.level.name

    def health(self) -> Health:
        with self._lock:
            since = None if self._last_cycle_at is None else self._clock() - self._last_cycle_at
            longest = max(self._recent_seconds, default=0.0)
            exchange_down = self._trading.get("market", {}).get("exchange_down")
        return assess_health(
            seconds_since_cycle=since,
            interval_seconds=self.interval_seconds,
            longest_cycle_seconds=longest,
            stall_intervals=self.config.stall_intervals,
            pressure_level=self.pressure_level,
            exchange_down=exchange_down,
        )

    def cycle_histogram(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative (upper bound, count) buckets, +Inf last, and the sum of the durations."""
        with self._lock:
            counts, total = list(self._bucket_counts), self._seconds_sum
        buckets, running = [], 0
        for bound, count in zip((*(str(b) for b in CYCLE_BUCKETS_SECONDS), "+Inf"), counts):
            running += count
            buckets.append((bound, running))
        return buckets, total

    def bot_status(self) -> dict[str, Any]:
        """The process: pid, uptime, cycles (this process's and all), recycles, the last cycle's end and length."""
        with self._lock:
            return {
                "pid": os.getpid(),
                "paper_trading": True,
                "started_at": self._started_at,
                "uptime_seconds": self._wall_clock() - self._started_at,
                "cycle": self._trading.get("cycle", 0),
                "cycles_this_process": self._cycles,
                "recycles": self.recycles,
                "interval_seconds": self.interval_seconds,
                "last_cycle_at": self._last_cycle_wall,
                "last_cycle_seconds": self._recent_seconds[-1] if self._recent_seconds else None,
            }

    def trading_status(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._trading)

    def memory_status(self) -> dict[str, Any]:
        """The memory manager's statistics, read now (`crypto-bot memory stats` prints them)."""
        if self.memory is None:
            return {"managed": False}
        stats = self.memory.get_memory_stats()
        stats["reading"] = dataclasses.asdict(stats["reading"])
        return stats

    def status(self) -> dict[str, Any]:
        """Everything /api/status answers (JSON types)."""
        notifier = self.notifier
        return {
            "bot": self.bot_status(),
            "health": self.health().to_dict(),
            "memory": self.memory_status(),
            "trading": self.trading_status(),
            "notifications": {
                "recent": [] if notifier is None else [event.to_dict() for event in notifier.recent_events()],
                **({} if notifier is None else notifier.stats()),
            },
            "history": self.history.to_dict(),
        }
