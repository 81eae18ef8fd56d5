"""Leak detection: growth trends of process memory, checks that released objects die, allocation diagnosis.

This module covers noticing a leak and pointing at it by hand:
- `GrowthTracker`: sliding-window least-squares slope, O(1) amortized per sample.
- `LeakDetector`: flags steady growth of *unmanaged* memory (working set minus what the managed
  caches and models account for), confirmed over consecutive windows, with a rate-limited warning.
- `ReleaseWatch`: weak references to evicted or unloaded objects, to prove they were freed.
- `diagnose`: a short, opt-in tracemalloc window naming the lines whose allocations grew.

It does not read process memory itself (the caller passes working set and managed bytes), does
not run the automatic diagnosis (`diagnosis.py`: windows across maintenance passes, the type
census, the verdict on native growth) and does not act on a leak: shrinking caches is the
manager's job, unloading models is `models.py`'s.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
import tracemalloc
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import validation
from .units import KIB as _KIB
from .units import MIB as _MIB

logger = logging.getLogger(__name__)

_MIN_SAMPLES = 3
_MAX_DIAGNOSE_SECONDS = 600.0
# Below this share of sum((x - origin)^2), the x variance is rounding noise: treat it as zero.
_RELATIVE_VARIANCE_FLOOR = 1e-12

LabelT = TypeVar("LabelT")


class GrowthTracker:
    """Least-squares slope of y over x for the last `window_size` samples.

    Sums are kept relative to an origin (a sample of the window), so x ~ 1e9 s and y ~ 1e12 bytes
    keep full precision; every `window_size` samples the origin moves to the window's first sample
    and the sums are recomputed exactly, so rounding errors cannot pile up over a long run.
    """

    __slots__ = (
        "_window_size",
        "_samples",
        "_origin_x",
        "_origin_y",
        "_sum_x",
        "_sum_y",
        "_sum_xx",
        "_sum_xy",
        "_adds_until_rebase",
    )

    def __init__(self, window_size: int = 120) -> None:
        self._window_size = validation.integer("window_size", window_size, minimum=_MIN_SAMPLES)
        self._samples: deque[tuple[float, float]] = deque()
        self._origin_x = self._origin_y = 0.0
        self._sum_x = self._sum_y = self._sum_xx = self._sum_xy = 0.0
        self._adds_until_rebase = self._window_size

    @property
    def window_size(self) -> int:
        return self._window_size

    @property
    def count(self) -> int:
        """Samples in the window."""
        return len(self._samples)

    @property
    def x_span(self) -> float:
        """Distance in x from the window's first sample to its last."""
        return self._samples[-1][0] - self._samples[0][0] if self._samples else 0.0

    @property
    def slope(self) -> float | None:
        """Change of y per unit of x; None below 3 samples or when all x are equal."""
        n = len(self._samples)
        if n < _MIN_SAMPLES:
            return None
        variance_x = self._sum_xx - self._sum_x * self._sum_x / n
        if variance_x <= _RELATIVE_VARIANCE_FLOOR * self._sum_xx:
            return None
        return (self._sum_xy - self._sum_x * self._sum_y / n) / variance_x

    def add(self, x: float, y: float) -> None:
        """Add a sample, forgetting the oldest once the window is full."""
        x = validation.number("x", x)
        y = validation.number("y", y)
        samples = self._samples
        if len(samples) == self._window_size:
            old_x, old_y = samples.popleft()
            self._accumulate(old_x, old_y, -1.0)
        elif not samples:
            self._origin_x, self._origin_y = x, y
        samples.append((x, y))
        self._accumulate(x, y, 1.0)
        self._adds_until_rebase -= 1
        if self._adds_until_rebase == 0:
            self._rebase()

    def _accumulate(self, x: float, y: float, sign: float) -> None:
        dx = x - self._origin_x
        dy = y - self._origin_y
        self._sum_x += sign * dx
        self._sum_y += sign * dy
        self._sum_xx += sign * dx * dx
        self._sum_xy += sign * dx * dy

    def _rebase(self) -> None:
        """Move the origin to the window's first sample and recompute the sums exactly (O(window), once a window)."""
        self._origin_x, self._origin_y = self._samples[0]
        dxs = [x - self._origin_x for x, _ in self._samples]
        dys = [y - self._origin_y for _, y in self._samples]
        self._sum_x = math.fsum(dxs)
        self._sum_y = math.fsum(dys)
        self._sum_xx = math.fsum(dx * dx for dx in dxs)
        self._sum_xy = math.fsum(dx * dy for dx, dy in zip(dxs, dys))
        self._adds_until_rebase = self._window_size


@dataclass(frozen=True, slots=True)
class _SlopeUnit:
    """How x is measured and what a slope is reported per."""

    name: str
    x_per_unit: float
    x_name: str
    default_threshold_bytes: float


# The one per-cycle leak threshold (the soak reads it from here). A bot cycle's RSS noise (cache
# churn, gc) puts a 100-cycle window's slope within ~2 KiB/cycle of the truth, and after warm-up the
# allocator's own creep (fragmentation, native caches filling) measured up to ~4.5 KiB/cycle on a
# healthy soak with no growth of Python objects (commit 58cfec7). 6 KiB/cycle stays above that creep
# and still catches a 10 KiB/cycle leak, whose windows measure at least ~8 KiB/cycle.
LEAK_THRESHOLD_BYTES_PER_CYCLE = 6 * _KIB

_SLOPE_UNITS = {
    # x in seconds, slopes per hour: 4 MiB/hour is ~100 MiB a day, well above allocator creep.
    "hour": _SlopeUnit("hour", 3600.0, "s", 4 * _MIB),
    # x = cycle number.
    "cycle": _SlopeUnit("cycle", 1.0, "cycles", LEAK_THRESHOLD_BYTES_PER_CYCLE),
}


@dataclass(frozen=True, slots=True)
class LeakReport:
    """The detector's verdict; slopes are per `unit` and from the last full window (None before one)."""

    suspected: bool
    unit: str
    slope_bytes_per_unit: float | None
    working_set_slope_bytes_per_unit: float | None
    unmanaged_bytes: int
    windows_above: int
    samples: int


class LeakDetector:
    """Suspects a leak when unmanaged memory grows faster than a threshold for consecutive windows.

    Unmanaged memory is working set minus managed bytes minus a baseline (the first observation's
    figure unless given). The slope is evaluated once per `window_size` samples, on that window
    alone; `windows_to_confirm` windows above the threshold in a row raise the suspicion and one
    window below clears it. Thread-safe.

    `unit="hour"`: x is seconds and slopes are bytes per hour. `unit="cycle"`: x is the cycle
    number and slopes are bytes per cycle. `slope_threshold` is in bytes per unit (None: the
    unit's default, 4 MiB/hour or LEAK_THRESHOLD_BYTES_PER_CYCLE, 6 KiB/cycle).
    """

    window_size: int
    unit: str
    slope_threshold: float
    windows_to_confirm: int
    warn_interval_seconds: float

    def __init__(
        self,
        *,
        unit: str = "hour",
        window_size: int = 100,
        slope_threshold: float | None = None,
        windows_to_confirm: int = 2,
        warn_interval_seconds: float = 600.0,
        baseline_unmanaged_bytes: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if unit not in _SLOPE_UNITS:
            raise ValueError(f"unit must be one of {sorted(_SLOPE_UNITS)}, got {unit!r}")
        self._unit = _SLOPE_UNITS[unit]
        self.unit = unit
        self.window_size = validation.integer("window_size", window_size, minimum=_MIN_SAMPLES)
        threshold = self._unit.default_threshold_bytes if slope_threshold is None else slope_threshold
        self.slope_threshold = validation.number("slope_threshold", threshold)
        self.windows_to_confirm = validation.integer("windows_to_confirm", windows_to_confirm, minimum=1)
        self.warn_interval_seconds = validation.number("warn_interval_seconds", warn_interval_seconds, minimum=0)
        self._baseline_bytes = validation.number(
            "baseline_unmanaged_bytes", baseline_unmanaged_bytes, optional=True
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._working_set = GrowthTracker(window_size)
        self._unmanaged = GrowthTracker(window_size)
        self._samples = 0
        self._unmanaged_bytes = 0.0
        self._slope: float | None = None
        self._working_set_slope: float | None = None
        self._windows_above = 0
        self._last_warning_at: float | None = None

    def observe(self, x: float, working_set_bytes: float, managed_bytes: float) -> bool:
        """Feed one sample (x: seconds or cycle number, per `unit`); True while a leak is suspected."""
        x = validation.number("x", x)
        working_set = validation.number("working_set_bytes", working_set_bytes, minimum=0)
        managed = validation.number("managed_bytes", managed_bytes, minimum=0)
        with self._lock:
            unmanaged = working_set - managed
            if self._baseline_bytes is None:
                self._baseline_bytes = unmanaged
            self._unmanaged_bytes = unmanaged - self._baseline_bytes
            self._working_set.add(x, working_set)
            self._unmanaged.add(x, unmanaged)
            self._samples += 1
            if self._samples % self.window_size:
                return self._suspected_locked()
            warning = self._evaluate_window_locked(working_set)
            suspected = self._suspected_locked()
        if warning is not None:
            logger.warning(*warning)
        return suspected

    def report(self) -> LeakReport:
        with self._lock:
            return LeakReport(
                suspected=self._suspected_locked(),
                unit=self.unit,
                slope_bytes_per_unit=self._slope,
                working_set_slope_bytes_per_unit=self._working_set_slope,
                unmanaged_bytes=round(self._unmanaged_bytes),
                windows_above=self._windows_above,
                samples=self._samples,
            )

    def _suspected_locked(self) -> bool:
        return self._windows_above >= self.windows_to_confirm

    def _per_unit(self, slope_per_x: float | None) -> float | None:
        return None if slope_per_x is None else slope_per_x * self._unit.x_per_unit

    def _evaluate_window_locked(self, working_set: float) -> tuple[Any, ...] | None:
        """Judge the window that just filled; the warning's log arguments if one is due."""
        self._slope = self._per_unit(self._unmanaged.slope)
        self._working_set_slope = self._per_unit(self._working_set.slope)
        above = self._slope is not None and self._slope > self.slope_threshold
        self._windows_above = self._windows_above + 1 if above else 0
        if not self._suspected_locked():
            return None
        now = self._clock()
        if self._last_warning_at is not None and now - self._last_warning_at < self.warn_interval_seconds:
            return None
        self._last_warning_at = now
        unit = self._unit
        return (
            "suspected memory leak: unmanaged memory grew %.1f KiB/%s (threshold %.1f KiB/%s) for %d windows "
            "in a row of %d samples (last window spans %.4g %s); unmanaged %.1f MiB above baseline, "
            "working set %.1f MiB growing %.1f KiB/%s",
            self._slope / _KIB,
            unit.name,
            self.slope_threshold / _KIB,
            unit.name,
            self._windows_above,
            self.window_size,
            self._unmanaged.x_span,
            unit.x_name,
            self._unmanaged_bytes / _MIB,
            working_set / _MIB,
            (self._working_set_slope or 0.0) / _KIB,
            unit.name,
        )


class ReleaseWatch(Generic[LabelT]):
    """Weak references to objects that should die soon (evicted values, unloaded models); thread-safe.

    `check` reports each watched object at most once: the labels of those still alive are
    returned and forgotten, the dead ones are dropped. At most `max_pending` objects are watched
    between checks; beyond that the oldest is forgotten.
    """

    max_pending: int

    def __init__(self, max_pending: int = 1024) -> None:
        self.max_pending = validation.integer("max_pending", max_pending, minimum=1)
        self._lock = threading.Lock()
        self._pending: deque[tuple[LabelT, weakref.ref[Any]]] = deque()

    def watch(self, label: LabelT, obj: Any) -> bool:
        """Watch `obj` under `label`; False if it cannot be weakly referenced (dict, list, int, ...)."""
        try:
            reference = weakref.ref(obj)
        except TypeError:
            return False
        with self._lock:
            if len(self._pending) >= self.max_pending:
                dropped_label, _ = self._pending.popleft()
                logger.debug("release watch full (%d): no longer watching %r", self.max_pending, dropped_label)
            self._pending.append((label, reference))
        return True

    def check(self, collect: bool = True) -> list[LabelT]:
        """Labels of watched objects still alive (after one gc.collect() if `collect` and any are pending)."""
        with self._lock:
            pending, self._pending = self._pending, deque()
        if not pending:
            return []
        if collect:
            gc.collect()  # objects in reference cycles die only in a collection
        return [label for label, reference in pending if reference() is not None]

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


@dataclass(frozen=True, slots=True)
class AllocationGrowth:
    """One line whose live allocations grew during a `diagnose` window: `location` is the line in the
    code that owns them (the first frame outside the standard library and site-packages), `innermost`
    where they were allocated."""

    location: str
    size_diff_bytes: int
    count_diff: int
    innermost: str = ""


def diagnose(
    seconds: float, *, top: int = 10, frames: int | None = None, sleep: Callable[[float], Any] = time.sleep
) -> list[AllocationGrowth]:
    """The `top` lines whose live allocations grew most over a `seconds`-long tracemalloc window.

    Opt-in and costly while it runs: tracemalloc slows allocation several times over. It is
    started (and afterwards stopped) only if it was not already tracing, with `frames` frames per
    trace (default: the automatic diagnosis's). Lines are grouped as in the automatic diagnosis
    (`diagnosis.compare_snapshots`).
    """
    from .diagnosis import DEFAULT_FRAMES, compare_snapshots  # diagnosis builds on this module's GrowthTracker

    window_seconds = validation.number(
        "seconds", seconds, minimum=0, minimum_open=True, maximum=_MAX_DIAGNOSE_SECONDS
    )
    top = validation.integer("top", top, minimum=1)
    frames = validation.integer("frames", DEFAULT_FRAMES if frames is None else frames, minimum=1, maximum=65535)
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start(frames)
    try:
        before = tracemalloc.take_snapshot()
        sleep(window_seconds)
        after = tracemalloc.take_snapshot()
    finally:
        if started_here:
            tracemalloc.stop()
    sites, _ = compare_snapshots(before, after, top=top)
    result = [AllocationGrowth(site.site, site.size_diff_bytes, site.count_diff, site.innermost) for site in sites]
    for growth in result:
        logger.info(
            "allocations at %s grew %.1f KiB (%+d blocks) in %.3g s",
            growth.location,
            growth.size_diff_bytes / _KIB,
            growth.count_diff,
            window_seconds,
        )
    return result
