"""Memory pressure policy: turns a usage ratio into tiered, throttled actions.

Covers: the pressure levels and their hysteresis, the GC throttle, how many managed bytes to shed,
alert rate-limiting, and telling a budget that thrashes (every pass clears what the process loads
again) from one that merely holds usage down (``ThrashWatch``). Pure logic: it reads no memory
figures, calls no psutil and runs no collections; the clock is injected. Thread-safe: assess(),
record_gc() and ThrashWatch.observe() may come from different threads.
See also: ``crypto_bot.memory.probe`` (where usage ratios come from) and
``crypto_bot.memory.reclaim`` (running a collection and timing it for record_gc()).

Tiers are cumulative: PRESSURE does everything GC does, CRITICAL everything PRESSURE does.
Alerts fire only in CRITICAL: on entry, then at most once per alert_interval_seconds while it
lasts; flapping in and out of CRITICAL does not alert sooner. PRESSURE does not alert: it is
handled automatically (shrink caches, unload idle models) and should not page a person; callers
that want to log that transition compare ``decision.level`` with ``decision.previous``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from . import validation
from .units import MIB


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
    held_by_hysteresis: bool  # level is above the one usage_ratio enters: held until margin below its threshold


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
        self._last_decision: PressureDecision | None = None

    @property
    def level(self) -> PressureLevel:
        """The level reached by the latest assess()."""
        return self._level

    @property
    def last_decision(self) -> PressureDecision | None:
        """The latest assess()'s decision (the ratio that set ``level``), None before the first."""
        return self._last_decision

    @property
    def thresholds(self) -> dict[PressureLevel, float]:
        """The ratio at which each level above NORMAL is entered."""
        return dict(self._entry_ratios)

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
        shrink_bytes = 0
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
            if level >= PressureLevel.PRESSURE and limit_bytes is not None:
                shrink_bytes = min(managed_bytes, max(0, round((ratio - self.target_ratio) * limit_bytes)))
            critical = level is PressureLevel.CRITICAL
            # Under the lock, so that last_decision is always the decision that set the level.
            decision = self._last_decision = PressureDecision(
                level=level,
                previous=previous,
                collect_garbage=collect_garbage,
                shrink_bytes=shrink_bytes,
                unload_idle_models=level >= PressureLevel.PRESSURE,
                clear_caches=critical,
                unload_all_models=critical,
                alert=alert,
                usage_ratio=ratio,
                held_by_hysteresis=level > self._entered_level(ratio),
            )
        return decision

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

    def _entered_level(self, ratio: float) -> PressureLevel:
        """The level ratio reaches from NORMAL, with no hysteresis."""
        return next((level for level, entry in self._entry_ratios.items() if ratio >= entry), PressureLevel.NORMAL)

    def _gc_allowed(self, now: float) -> bool:
        """GC may use at most gc_time_fraction of wall time: wait seconds/fraction after a start."""
        if self._last_gc_started_at is None:
            return True
        return now - self._last_gc_started_at >= self._last_gc_seconds / self.gc_time_fraction


@dataclass(frozen=True, slots=True)
class ClearingPass:
    """One maintenance pass as the thrash watch sees it.

    Bytes are the manager's: its caches and loaded models when the pass began, what the pressure
    tiers freed of each, and the limiting usage measured after the tiers ran (``floor_bytes``: what
    the process needs without what was freed) against ``limit_bytes`` of ``limit_source``.
    """

    level: PressureLevel
    cache_bytes_before: int
    model_bytes_before: int
    cache_bytes_freed: int = 0
    model_bytes_freed: int = 0
    floor_bytes: int | None = None
    limit_bytes: int | None = None
    limit_source: str | None = None


@dataclass(frozen=True, slots=True)
class Thrashing:
    """A budget too small for the work: passes keep clearing what the process loads again.

    ``floor_bytes`` is the lowest usage measured right after a clear; ``cache_reloaded_bytes`` and
    ``model_reloaded_bytes`` the most that came back between two clears and was cleared again.
    ``leave_ratio`` is where a held PRESSURE level is left: its threshold less the hysteresis margin.
    """

    passes: int
    level: PressureLevel
    limit_source: str | None
    limit_bytes: int | None
    floor_bytes: int | None
    cache_reloaded_bytes: int
    model_reloaded_bytes: int
    memory_threshold: float
    margin_ratio: float

    @property
    def leave_ratio(self) -> float:
        # The same expression PressurePolicy compares with, so that "below" means the same to both.
        return self.memory_threshold - self.margin_ratio

    @property
    def needed_bytes(self) -> int | None:
        """What the process uses once it has loaded again what the clears take away."""
        if self.floor_bytes is None:
            return None
        return self.floor_bytes + self.cache_reloaded_bytes + self.model_reloaded_bytes

    @property
    def stopping_limit_bytes(self) -> int | None:
        """The smallest whole-MiB limit that holds needed_bytes below leave_ratio.

        Below the PRESSURE threshold alone is not enough in a running process: a level that
        thrashes at CRITICAL falls to PRESSURE, and hysteresis holds it there (still shrinking
        every pass) until usage is a margin below the threshold. Below leave_ratio, the limit
        stops the clearing both live and after a restart.
        """
        needed_bytes = self.needed_bytes
        if needed_bytes is None:
            return None
        leave_ratio = self.leave_ratio
        limit_mib = max(1, math.floor(needed_bytes / (leave_ratio * MIB)) + 1)
        # Settle float rounding the way the policy will see it: needed / limit strictly below leave_ratio.
        while needed_bytes / (limit_mib * MIB) >= leave_ratio:
            limit_mib += 1
        while limit_mib > 1 and needed_bytes / ((limit_mib - 1) * MIB) < leave_ratio:
            limit_mib -= 1
        return limit_mib * MIB


@dataclass(frozen=True, slots=True)
class ThrashVerdict:
    """The watch's state after one pass, and before it: compare them to log a start or a stop once."""

    thrashing: Thrashing | None
    previous: Thrashing | None

    @property
    def started(self) -> bool:
        return self.thrashing is not None and self.previous is None

    @property
    def stopped(self) -> bool:
        return self.thrashing is None and self.previous is not None


class ThrashWatch:
    """Tells a thrashing budget from one that holds usage down; thread-safe.

    A budget thrashes when ``passes`` passes in a row, with none below PRESSURE between them,
    each freed caches or models that had come back since the previous clear: clearing does not
    bring usage below the threshold, so every pass clears what the process reloads, every cycle.
    A pass at PRESSURE or above that frees nothing (nothing came back yet, several passes to a
    cycle) neither counts nor breaks the run. A pass below PRESSURE ends the run, and with it
    the thrashing: shrinking that brings usage down is the PRESSURE tier working, not thrashing.
    """

    passes: int
    memory_threshold: float
    margin_ratio: float

    def __init__(self, *, memory_threshold: float, margin_ratio: float, passes: int = 3) -> None:
        self.memory_threshold = validation.number(
            "memory_threshold", memory_threshold, minimum=0, minimum_open=True, maximum=1
        )
        self.margin_ratio = validation.number(
            "margin_ratio", margin_ratio, minimum=0, maximum=self.memory_threshold
        )
        if not self.margin_ratio < self.memory_threshold:
            raise ValueError(f"margin_ratio must be below memory_threshold ({memory_threshold}), got {margin_ratio!r}")
        self.passes = validation.integer("passes", passes, minimum=1)
        self._lock = threading.Lock()
        self._reset_locked()

    @property
    def thrashing(self) -> Thrashing | None:
        """The current run's figures once it counts as thrashing, else None."""
        return self._thrashing

    def observe(self, clearing: ClearingPass) -> ThrashVerdict:
        """Take one pass into account; the verdict says whether thrashing started or stopped with it."""
        cache_before = validation.size_bytes("cache_bytes_before", clearing.cache_bytes_before)
        model_before = validation.size_bytes("model_bytes_before", clearing.model_bytes_before)
        cache_freed = validation.size_bytes("cache_bytes_freed", clearing.cache_bytes_freed)
        model_freed = validation.size_bytes("model_bytes_freed", clearing.model_bytes_freed)
        with self._lock:
            previous = self._thrashing
            if clearing.level < PressureLevel.PRESSURE:
                self._reset_locked()
            elif cache_freed or model_freed:
                self._count_locked(clearing, cache_before, model_before, cache_freed, model_freed)
            return ThrashVerdict(self._thrashing, previous)

    def _count_locked(
        self, clearing: ClearingPass, cache_before: int, model_before: int, cache_freed: int, model_freed: int
    ) -> None:
        if self._left_after is not None:
            cache_left, model_left = self._left_after
            # Only what was freed counts, and of that only what came back since the previous clear.
            cache_reloaded = min(cache_freed, max(0, cache_before - cache_left))
            model_reloaded = min(model_freed, max(0, model_before - model_left))
            if cache_reloaded or model_reloaded:
                self._reclears += 1
                self._cache_reloaded = max(self._cache_reloaded, cache_reloaded)
                self._model_reloaded = max(self._model_reloaded, model_reloaded)
        # Freed can exceed before when the caller's caches grew during the pass; nothing is left then.
        self._left_after = (max(0, cache_before - cache_freed), max(0, model_before - model_freed))
        if clearing.floor_bytes is not None:
            self._floor = clearing.floor_bytes if self._floor is None else min(self._floor, clearing.floor_bytes)
        self._level = max(self._level, clearing.level)
        self._limit = (clearing.limit_source, clearing.limit_bytes)
        if self._reclears >= self.passes:
            self._thrashing = Thrashing(
                passes=self._reclears,
                level=self._level,
                limit_source=self._limit[0],
                limit_bytes=self._limit[1],
                floor_bytes=self._floor,
                cache_reloaded_bytes=self._cache_reloaded,
                model_reloaded_bytes=self._model_reloaded,
                memory_threshold=self.memory_threshold,
                margin_ratio=self.margin_ratio,
            )

    def _reset_locked(self) -> None:
        self._thrashing: Thrashing | None = None
        self._left_after: tuple[int, int] | None = None  # cache and model bytes left by the run's latest clear
        self._reclears = 0
        self._floor: int | None = None
        self._cache_reloaded = 0
        self._model_reloaded = 0
        self._level = PressureLevel.PRESSURE
        self._limit: tuple[str | None, int | None] = (None, None)


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
