"""Memory pressure policy: turns a usage ratio into tiered, throttled actions.

Covers: the pressure levels and their hysteresis, the GC throttle, how many managed bytes to shed,
and alert rate-limiting. Pure logic: it reads no memory figures, calls no psutil and runs no
collections; the clock is injected. Thread-safe: assess() and record_gc() may come from
different threads.
See also: ``crypto_bot.memory.probe`` (where usage ratios come from) and
``crypto_bot.memory.reclaim`` (running a collection and timing it for record_gc()).

Tiers are cumulative: PRESSURE does everything GC does, CRITICAL everything PRESSURE does.
Alerts fire only in CRITICAL: on entry, then at most once per alert_interval_seconds while it
lasts; flapping in and out of CRITICAL does not alert sooner. PRESSURE does not alert: it is
handled automatically (shrink caches, unload idle models) and should not page a person; callers
that want to log that transition compare ``decision.level`` with ``decision.previous``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from . import validation


class PressureLevel(IntEnum):
    """Tiers of memory pressure, ordered so that comparisons read naturally (level >= GC)."""

    NORMAL = 0
    GC = 1
    PRESSURE = 2
    CRITICAL = 3


@dataclass(frozen=True, slots=True)
class PressureDecision:
    """What the memory manager should do after one assessment."""

    level: PressureLevel
    previous: PressureLevel
    collect_garbage: bool
    shrink_bytes: int
    unload_idle_models: bool
    clear_caches: bool
    unload_all_models: bool
    alert: bool
    usage_ratio: float


class PressurePolicy:
    """Maps usage ratios to PressureDecisions, with hysteresis, a GC time budget and alert limits."""

    gc_threshold: float
    memory_threshold: float
    critical_threshold: float
    margin_ratio: float
    target_ratio: float
    gc_time_fraction: float
    alert_interval_seconds: float

    def __init__(
        self,
        gc_threshold: float = 0.7,
        memory_threshold: float = 0.8,
        critical_threshold: float = 0.9,
        *,
        margin_ratio: float = 0.05,
        target_ratio: float = 0.6,
        gc_time_fraction: float = 0.05,
        alert_interval_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gc_threshold = validation.number("gc_threshold", gc_threshold, minimum=0, minimum_open=True, maximum=1)
        self.memory_threshold = validation.number(
            "memory_threshold", memory_threshold, minimum=self.gc_threshold, maximum=1
        )
        self.critical_threshold = validation.number(
            "critical_threshold", critical_threshold, minimum=self.memory_threshold, maximum=1
        )
        self.margin_ratio = validation.number("margin_ratio", margin_ratio, minimum=0)
        self.target_ratio = validation.positive("target_ratio", target_ratio)
        _validate_below_gc_threshold(self.margin_ratio, self.target_ratio, self.gc_threshold)
        self.gc_time_fraction = validation.number(
            "gc_time_fraction", gc_time_fraction, minimum=0, minimum_open=True, maximum=1
        )
        self.alert_interval_seconds = validation.number("alert_interval_seconds", alert_interval_seconds, minimum=0)
        self._clock = clock
        self._lock = threading.Lock()
        self._level = PressureLevel.NORMAL
        self._entry_ratios = {
            PressureLevel.CRITICAL: self.critical_threshold,
            PressureLevel.PRESSURE: self.memory_threshold,
            PressureLevel.GC: self.gc_threshold,
        }
        self._last_gc_started_at: float | None = None
        self._last_gc_seconds = 0.0
        self._last_alert_at: float | None = None

    @property
    def level(self) -> PressureLevel:
        """The level reached by the latest assess()."""
        return self._level

    def classify(self, usage_ratio: float) -> PressureLevel:
        """The level assess() would move to from the current one, without changing any state."""
        ratio = validation.number("usage_ratio", usage_ratio, minimum=0)
        with self._lock:
            return self._next_level(ratio)

    def assess(self, usage_ratio: float, *, limit_bytes: int | None, managed_bytes: int) -> PressureDecision:
        """Move to the level usage_ratio calls for and say what to do there.

        managed_bytes is the memory the caller can shed (caches, models); limit_bytes the limit
        usage_ratio was measured against, or None when unknown (then nothing is sized to shed).
        """
        ratio = validation.number("usage_ratio", usage_ratio, minimum=0)
        limit_bytes = validation.integer("limit_bytes", limit_bytes, minimum=1, optional=True)
        managed_bytes = validation.integer("managed_bytes", managed_bytes, minimum=0)
        with self._lock:
            now = self._clock()
            previous = self._level
            level = self._level = self._next_level(ratio)
            collect_garbage = level >= PressureLevel.GC and self._gc_allowed(now)
            alert = level is PressureLevel.CRITICAL and (
                self._last_alert_at is None or now - self._last_alert_at >= self.alert_interval_seconds
            )
            if alert:
                self._last_alert_at = now
        shrink_bytes = 0
        if level >= PressureLevel.PRESSURE and limit_bytes is not None:
            shrink_bytes = min(managed_bytes, max(0, round((ratio - self.target_ratio) * limit_bytes)))
        critical = level is PressureLevel.CRITICAL
        return PressureDecision(
            level=level,
            previous=previous,
            collect_garbage=collect_garbage,
            shrink_bytes=shrink_bytes,
            unload_idle_models=level >= PressureLevel.PRESSURE,
            clear_caches=critical,
            unload_all_models=critical,
            alert=alert,
            usage_ratio=ratio,
        )

    def record_gc(self, started_at: float, seconds: float) -> None:
        """Note a collection that began at started_at (policy clock) and took seconds."""
        started_at = validation.number("started_at", started_at)
        seconds = validation.number("seconds", seconds, minimum=0)
        with self._lock:
            self._last_gc_started_at = started_at
            self._last_gc_seconds = seconds

    def _next_level(self, ratio: float) -> PressureLevel:
        """Enter a level at its threshold; stay in it (or a lower entered one) until margin below."""
        for level, entry_ratio in self._entry_ratios.items():
            if ratio >= entry_ratio:
                return level
            if level <= self._level and ratio >= entry_ratio - self.margin_ratio:
                return level
        return PressureLevel.NORMAL

    def _gc_allowed(self, now: float) -> bool:
        """GC may use at most gc_time_fraction of wall time: wait seconds/fraction after a start."""
        if self._last_gc_started_at is None:
            return True
        return now - self._last_gc_started_at >= self._last_gc_seconds / self.gc_time_fraction


def _validate_below_gc_threshold(margin_ratio: float, target_ratio: float, gc_threshold: float) -> None:
    """Margin (also below 0.5) and target both sit below the lowest threshold.

    A margin as wide as the lowest threshold would make GC impossible to leave; a target at or
    above it would shed nothing.
    """
    if not margin_ratio < min(0.5, gc_threshold):
        raise ValueError(
            f"margin_ratio must be below 0.5 and below gc_threshold ({gc_threshold}), got {margin_ratio!r}"
        )
    if not target_ratio < gc_threshold:
        raise ValueError(f"target_ratio must be below gc_threshold ({gc_threshold}), got {target_ratio!r}")
