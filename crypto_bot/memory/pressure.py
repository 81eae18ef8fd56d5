"""Memory pressure policy: turns a usage ratio into tiered, throttled actions.

Covers: the pressure levels and their hysteresis, the GC throttle, how many managed bytes to shed,
and alert rate-limiting. Pure logic: it reads no memory figures, calls no psutil and runs no
collections; the clock is injected. Thread-safe: assess() and record_gc() may come from
different threads.
See also: ``crypto_bot.memory.probe`` (where usage ratios come from) and
``crypto_bot.memory.reclaim`` (running a collection and timing it for record_gc()).

Tiers are cumulative: PRESSURE does everything GC does, CRITICAL everything PRESSURE does.
Alerts fire only in CRITICAL. PRESSURE is handled automatically (shrink caches, unload idle
models) and should not page a person; callers that want to log the transition compare
``decision.level`` with ``decision.previous``.
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum


class PressureLevel(IntEnum):
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
        self.gc_threshold = _checked("gc_threshold", gc_threshold, 0.0 < gc_threshold <= 1.0, "(0, 1]")
        self.memory_threshold = _checked(
            "memory_threshold",
            memory_threshold,
            gc_threshold <= memory_threshold <= 1.0,
            f"[gc_threshold={gc_threshold}, 1]",
        )
        self.critical_threshold = _checked(
            "critical_threshold",
            critical_threshold,
            memory_threshold <= critical_threshold <= 1.0,
            f"[memory_threshold={memory_threshold}, 1]",
        )
        # A margin as wide as the lowest threshold would make GC impossible to leave.
        self.margin_ratio = _checked(
            "margin_ratio",
            margin_ratio,
            0.0 <= margin_ratio < min(0.5, gc_threshold),
            f"[0, min(0.5, gc_threshold={gc_threshold}))",
        )
        self.target_ratio = _checked(
            "target_ratio",
            target_ratio,
            0.0 < target_ratio < gc_threshold,
            f"(0, gc_threshold={gc_threshold})",
        )
        self.gc_time_fraction = _checked(
            "gc_time_fraction", gc_time_fraction, 0.0 < gc_time_fraction <= 1.0, "(0, 1]"
        )
        self.alert_interval_seconds = _checked(
            "alert_interval_seconds",
            alert_interval_seconds,
            0.0 <= alert_interval_seconds < math.inf,
            "[0, inf)",
        )
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

    def assess(self, usage_ratio: float, *, limit_bytes: int | None, managed_bytes: int) -> PressureDecision:
        """Move to the level usage_ratio calls for and say what to do there.

        managed_bytes is the memory the caller can shed (caches, models); limit_bytes the limit
        usage_ratio was measured against, or None when unknown (then nothing is sized to shed).
        """
        ratio = _checked("usage_ratio", usage_ratio, True, "[0, inf)")
        if ratio < 0.0 or math.isinf(ratio):
            raise ValueError(f"usage_ratio={usage_ratio!r} is outside the allowed range [0, inf)")
        if limit_bytes is not None and not (_is_int(limit_bytes) and limit_bytes > 0):
            raise ValueError(f"limit_bytes={limit_bytes!r} must be None or an int > 0")
        if not (_is_int(managed_bytes) and managed_bytes >= 0):
            raise ValueError(f"managed_bytes={managed_bytes!r} must be an int >= 0")
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
        started_at = _checked("started_at", started_at, True, "a finite number")
        seconds = _checked("seconds", seconds, seconds >= 0, "[0, inf)")
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


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _checked(name: str, value: object, in_range: bool, allowed: str) -> float:
    """value as a float, or ValueError naming the argument when it is not a finite number in range."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or math.isnan(value)
        or (math.isinf(value) and allowed != "[0, inf)")
        or not in_range
    ):
        raise ValueError(f"{name}={value!r} is outside the allowed range {allowed}")
    return float(value)
