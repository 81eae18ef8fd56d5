"""A worker's market clock: the feeder's, as its announcements bring it, run on by wall time when they stop.

Covers `FeedClock`. The feeder announces its clock with every close (`now_ms`), and how fast that
clock runs against wall time (`rate`: 1 for an exchange, ~120 for a simulated minute every 0.5 s).
While announcements come, a worker's clock is exactly the last one heard, so it never asks for a
candle the feeder has not written. When they stop (Redis down, the feeder gone), the clock runs on
from the last one at that rate, once `SLACK_CANDLES` base candles' worth of wall time has passed
without one: the series then miss closed candles, are marked stale and give no signal, instead of
the worker trading again and again on the last window. It never runs backwards.
Not covered: reading the announcements (`redis_market`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

SLACK_CANDLES = 3
"""Base candles of silence tolerated before the clock runs on alone (a slow cycle is not an outage)."""


class FeedClock:
    """The feeder's clock as heard, extrapolated through silences."""

    __slots__ = ("_base_ms", "_heard_at", "_heard_ms", "_monotonic", "_rate", "_shown_ms")

    _heard_ms: int | None
    _heard_at: float
    _rate: float
    _base_ms: int
    _shown_ms: int
    _monotonic: Callable[[], float]

    def __init__(self, base_ms: int, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._base_ms = base_ms
        self._monotonic = monotonic
        self._heard_ms = None
        self._heard_at = 0.0
        self._rate = 1.0
        self._shown_ms = 0

    @property
    def heard(self) -> bool:
        """Whether any announcement has been heard."""
        return self._heard_ms is not None

    def hear(self, now_ms: int, rate: float) -> None:
        """An announcement: the feeder's clock is `now_ms`, running `rate` market ms per wall ms."""
        if self._heard_ms is None or now_ms >= self._heard_ms:
            self._heard_ms = now_ms
            self._heard_at = self._monotonic()
            if rate > 0:
                self._rate = rate

    def now_ms(self) -> int:
        """The clock: the last heard, plus whole base candles of silence beyond the slack."""
        if self._heard_ms is None:
            return self._shown_ms
        silent_ms = (self._monotonic() - self._heard_at) * 1000.0 * self._rate
        extra = max(0, int(silent_ms // self._base_ms) - SLACK_CANDLES)
        self._shown_ms = max(self._shown_ms, self._heard_ms + extra * self._base_ms)
        return self._shown_ms

    @property
    def running_alone(self) -> bool:
        """True when the clock is ahead of the last announcement (silence beyond the slack)."""
        return self._heard_ms is not None and self.now_ms() > self._heard_ms
