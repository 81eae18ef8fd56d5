"""Leak diagnosis: which lines and which types grew, measured over a bounded tracemalloc window.

Covers what happens once a leak is suspected:
- `LeakDiagnoser`: starts tracing at a maintenance pass where the leak detector confirms growth,
  takes its baseline at the next pass and closes the window `window_passes` passes after that
  (whole cycles in between), and never leaves tracing on: a duration cap, a cap on tracemalloc's own memory, a watchdog thread that enforces
  both when passes stop coming, and a cooldown so windows never run back to back. Tracing someone
  else started is used and left running.
- `census`: counts of GC-tracked objects by type, diffed over the same window, for leaks made of
  many small objects (and of objects tracemalloc cannot see, like threads).
- `compare_snapshots`: growth grouped by the line *in the code that owns it* (the first frame
  outside the standard library and site-packages), with the innermost frame beside it.
- `LeakDiagnosis`: the verdict. Growth of unmanaged memory that Python allocations do not explain
  (native code, allocator fragmentation) is reported as such and never blamed on a line.

Not covered: deciding that memory grows (`leaks.LeakDetector`; `leaks.diagnose` runs the same site
analysis over a number of seconds, by hand), reading memory (`probe.py`), and
delivering a diagnosis (the manager logs it, keeps it in its stats and writes it to a file with
`reports.py`; `metrics.py` exports it).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
import os
import site
import sys
import sysconfig
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import validation
from .leaks import GrowthTracker
from .units import MIB as _MIB
from .units import format_kib as _kib

logger = logging.getLogger(__name__)

__all__ = [
    "DiagnosisSettings",
    "GrowingSite",
    "GrowingType",
    "LeakDiagnoser",
    "LeakDiagnosis",
    "Verdict",
    "allocation_sites",
    "census",
    "compare_snapshots",
    "growing_types",
    "is_library_file",
    "managed_by_site",
]

# Frames kept per trace. A pandas call allocates 8-12 frames below the line that called it (concat ->
# internals -> numpy), so with 8 a DataFrame's bytes often have no frame outside site-packages, and
# each frame captured costs: measured by bench/bench_leak_diagnosis.py (strategy 20 frames deep),
# tracing slows the cycle 10x with 8 frames, 12x with 16, 24x with 32, and the corpus is named
# right in 8 of 10 cases with 8 frames, in all 10 from 12. 16 leaves room for deeper library calls.
DEFAULT_FRAMES = 16
_MAX_FRAMES = 65535  # the most tracemalloc.start() accepts


class Verdict:
    """What a window found (plain strings, so they serialize as themselves)."""

    PYTHON = "python"  # Python allocations explain the growth: the sites are named
    UNEXPLAINED = "unexplained"  # unmanaged growth not explained by Python allocations
    NO_GROWTH = "no_growth"  # unmanaged memory did not grow during the window


@dataclass(frozen=True, slots=True)
class DiagnosisSettings:
    """How diagnosis windows run; validated once here.

    `window_passes`: maintenance passes a window measures over (tracing starts one pass earlier,
    so a window traces `window_passes + 1` passes). `max_window_seconds`: a pass closes the window
    early once it is this old; the watchdog abandons it (tracing stopped, nothing reported) at
    twice that, in case passes stop coming. `max_trace_memory_bytes`: tracemalloc's own memory; a pass closes the window
    early at half of it, the watchdog abandons it at all of it. `cooldown_seconds`: from the end of
    one window to the start of the next. `explained_ratio`: the share of unmanaged growth that
    traced Python allocations must reach for the growth to be blamed on them; native leaks measure
    a few percent, Python ones 60-100% (allocator overhead and steps in between), so a quarter
    leaves room both ways. `trend_samples`: readings in the per-cycle trend of unmanaged memory
    the window's growth is compared with.
    """

    enabled: bool = True
    window_passes: int = 3
    frames: int = DEFAULT_FRAMES
    max_window_seconds: float = 300.0
    max_trace_memory_bytes: int = 64 * _MIB
    cooldown_seconds: float = 3600.0
    top_sites: int = 10
    top_types: int = 20
    explained_ratio: float = 0.25
    trend_samples: int = 30
    watchdog_interval_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):  # validation.py has no flag check
            raise ValueError(f"enabled must be a bool, got {self.enabled!r}")
        validation.integer("window_passes", self.window_passes, minimum=1)
        validation.integer("frames", self.frames, minimum=1, maximum=_MAX_FRAMES)
        validation.positive("max_window_seconds", self.max_window_seconds)
        validation.size_bytes("max_trace_memory_bytes", self.max_trace_memory_bytes)
        validation.number("cooldown_seconds", self.cooldown_seconds, minimum=0)
        validation.integer("top_sites", self.top_sites, minimum=1)
        validation.integer("top_types", self.top_types, minimum=1)
        validation.number("explained_ratio", self.explained_ratio, minimum=0, minimum_open=True, maximum=1)
        validation.integer("trend_samples", self.trend_samples, minimum=3)
        validation.positive("watchdog_interval_seconds", self.watchdog_interval_seconds)


# ------------------------------------------------------------------ sites


@functools.cache
def _library_roots() -> tuple[str, ...]:
    """Directories of the standard library and of installed packages, each ending in a separator."""
    roots: set[str] = set()
    for scheme_vars in (None, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=scheme_vars) if scheme_vars else sysconfig.get_paths()
        roots.update(paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(key))
    roots.update(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user_site:
        roots.add(user_site)
    return tuple(sorted(os.path.join(os.path.realpath(root), "") for root in roots))


@functools.lru_cache(maxsize=4096)
def is_library_file(filename: str) -> bool:
    """Whether a frame's file belongs to the standard library or an installed package.

    Pseudo-files (`<frozen abc>`, `<string>` of generated code such as a dataclass `__init__`,
    `<unknown>`) count as library: the line that owns an allocation is the caller's.
    """
    if filename.startswith("<"):
        return True
    separated = f"{os.sep}{filename.strip(os.sep)}{os.sep}"
    if f"{os.sep}site-packages{os.sep}" in separated or f"{os.sep}dist-packages{os.sep}" in separated:
        return True
    path = os.path.realpath(filename)
    return any(path.startswith(root) for root in _library_roots())


def _where(frame: tracemalloc.Frame) -> str:
    return f"{frame.filename}:{frame.lineno}"




@dataclass(frozen=True, slots=True)
class GrowingSite:
    """A line whose live allocations grew: `site` is the first frame outside the standard library
    and site-packages (`owner_found`), or the innermost frame where every frame kept is library
    code; `innermost` is where the largest part was allocated; `traceback` that part's frames,
    innermost last."""

    site: str
    owner_found: bool
    innermost: str
    size_diff_bytes: int
    count_diff: int
    bytes_per_cycle: float
    blocks_per_cycle: float
    traceback: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "owner_found": self.owner_found,
            "innermost": self.innermost,
            "size_diff_bytes": self.size_diff_bytes,
            "count_diff": self.count_diff,
            "bytes_per_cycle": self.bytes_per_cycle,
            "blocks_per_cycle": self.blocks_per_cycle,
            "traceback": list(self.traceback),
        }


@dataclass(slots=True)
class _SiteTotal:
    owner_found: bool
    size_diff: int = 0
    count_diff: int = 0
    largest_diff: int = 0
    largest: tracemalloc.Traceback | None = None


def _owner(traceback: tracemalloc.Traceback) -> tuple[str, bool] | None:
    """(site, owner_found) of a trace; None where the owner is this module (a window's own bookkeeping,
    its snapshots and censuses)."""
    frames = list(traceback)  # oldest first, innermost last
    for frame in reversed(frames):
        if not is_library_file(frame.filename):
            return (_where(frame), True) if frame.filename != __file__ else None
    return _where(frames[-1]), False


def _group_totals(snapshot: tracemalloc.Snapshot) -> dict[tracemalloc.Traceback, tuple[int, int]]:
    return {stat.traceback: (stat.size, stat.count) for stat in snapshot.statistics("traceback")}


def managed_by_site(values: Iterable[tuple[Any, int]]) -> dict[str, int]:
    """Accounted bytes of managed values (cache entries) that tracemalloc traced, by their owner line.

    A value counts once however many entries hold it; untraced values (allocated before tracing
    started) are left out, as their bytes are in no snapshot either.
    """
    by_site: dict[str, int] = {}
    seen: set[int] = set()
    for value, size_bytes in values:
        if id(value) in seen:
            continue
        seen.add(id(value))
        traceback = tracemalloc.get_object_traceback(value)
        owner = None if traceback is None else _owner(traceback)
        if owner is not None:
            by_site[owner[0]] = by_site.get(owner[0], 0) + size_bytes
    return by_site


def compare_snapshots(
    before: tracemalloc.Snapshot,
    after: tracemalloc.Snapshot,
    *,
    cycles: float = 1.0,
    top: int = 10,
    managed_before: Mapping[str, int] | None = None,
    managed_after: Mapping[str, int] | None = None,
) -> tuple[list[GrowingSite], int]:
    """The `top` sites whose live unmanaged allocations grew most from `before` to `after`, and the
    traced growth in bytes (every site, shrinking ones included, managed bytes taken out).

    Traces are grouped by their owner line (see `GrowingSite`); rates are per `cycles`. This
    module's own traces are left out. `managed_before`/`managed_after` (`managed_by_site` at each
    snapshot) take out what managed caches hold: a cache replacing entries allocated before tracing
    started shows its new entries in `after` but not the freeing of the old ones, and would
    otherwise look like a leak at the line that loads it.
    """
    cycles = validation.positive("cycles", cycles)
    top = validation.integer("top", top, minimum=1)
    old, new = _group_totals(before), _group_totals(after)
    sites: dict[str, _SiteTotal] = {}
    managed_before = managed_before or {}
    managed_after = managed_after or {}
    traced_growth = 0
    for name in managed_before.keys() | managed_after.keys():
        managed_growth = managed_after.get(name, 0) - managed_before.get(name, 0)
        if managed_growth:
            sites[name] = _SiteTotal(owner_found=not is_library_file(name.rpartition(":")[0]), size_diff=-managed_growth)
            traced_growth -= managed_growth
    for traceback in old.keys() | new.keys():
        size_after, count_after = new.get(traceback, (0, 0))
        size_before, count_before = old.get(traceback, (0, 0))
        size_diff, count_diff = size_after - size_before, count_after - count_before
        if not size_diff and not count_diff:
            continue
        owner = _owner(traceback)
        if owner is None:
            continue
        traced_growth += size_diff
        total = sites.get(owner[0])
        if total is None:
            total = sites[owner[0]] = _SiteTotal(owner_found=owner[1])
        total.size_diff += size_diff
        total.count_diff += count_diff
        if total.largest is None or size_diff > total.largest_diff:
            total.largest, total.largest_diff = traceback, size_diff
    growing = sorted(
        ((name, total) for name, total in sites.items() if total.size_diff > 0),
        key=lambda item: item[1].size_diff,
        reverse=True,
    )[:top]
    result = [
        GrowingSite(
            site=name,
            owner_found=total.owner_found,
            innermost=name if total.largest is None else _where(total.largest[-1]),
            size_diff_bytes=total.size_diff,
            count_diff=total.count_diff,
            bytes_per_cycle=total.size_diff / cycles,
            blocks_per_cycle=total.count_diff / cycles,
            traceback=() if total.largest is None else tuple(_where(frame) for frame in total.largest),
        )
        for name, total in growing
    ]
    return result, traced_growth


# ------------------------------------------------------------------ census


_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: made at run time (a class statement, or an extension's type spec)


@dataclass(frozen=True, slots=True)
class GrowingType:
    """A type whose GC-tracked instances grew in number over the window; `allocated_at`: the owner
    lines of its traced instances with how many each allocated, most first (see `allocation_sites`)."""

    name: str
    count: int
    count_diff: int
    per_cycle: float
    allocated_at: tuple[tuple[str, int], ...] = ()
    python_class: bool = False  # a class defined in Python (DataFrame, Thread), not a built-in one (dict, cell)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "python_class": self.python_class,
            "count": self.count,
            "count_diff": self.count_diff,
            "per_cycle": self.per_cycle,
            "allocated_at": [{"site": site, "instances": count} for site, count in self.allocated_at],
        }


def census() -> Counter[type]:
    """GC-tracked objects by type: one pass over gc.get_objects(), in C, ~20 ns an object.

    It allocates per type, not per object (counting in numpy, not in a Counter whose every
    increment past 256 is a new int): a window counts while tracemalloc traces, where each
    allocation costs microseconds.
    """
    import numpy  # a dependency of the project; imported here so that importing this module stays light

    types = list(map(type, gc.get_objects()))
    positions = {cls: position for position, cls in enumerate(dict.fromkeys(types))}
    codes = numpy.fromiter(map(positions.__getitem__, types), dtype=numpy.intp, count=len(types))
    counts = numpy.bincount(codes, minlength=len(positions))
    return Counter(dict(zip(positions, counts.tolist())))


def type_name(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", cls.__name__)
    return qualname if module in (None, "builtins") else f"{module}.{qualname}"


def growing_types(
    before: Counter[type],
    after: Counter[type],
    *,
    cycles: float = 1.0,
    top: int = 10,
    allocated_at: Mapping[type, tuple[tuple[str, int], ...]] | None = None,
) -> list[GrowingType]:
    """The `top` types whose instance counts grew most from `before` to `after`."""
    cycles = validation.positive("cycles", cycles)
    allocated_at = allocated_at or {}
    return [
        GrowingType(
            name=type_name(cls),
            count=after[cls],
            count_diff=diff,
            per_cycle=diff / cycles,
            allocated_at=allocated_at.get(cls, ()),
            python_class=_defined_in_python(cls),
        )
        for cls, diff in _grown(before, after, top)
    ]


def _defined_in_python(cls: type) -> bool:
    """A class from a class statement in a .py file (DataFrame, Thread), not a C or Cython type (dict, cell)."""
    if not cls.__flags__ & _HEAP_TYPE:
        return False
    module_file = getattr(sys.modules.get(getattr(cls, "__module__", "")), "__file__", None) or ""
    return module_file.endswith(".py")


def _grown(before: Counter[type], after: Counter[type], top: int) -> list[tuple[type, int]]:
    # Most grown first; at equal counts classes defined in Python (a DataFrame) before their parts.
    grown = sorted(
        ((cls, after[cls] - before.get(cls, 0)) for cls in after),
        key=lambda item: (item[1], _defined_in_python(item[0])),
        reverse=True,
    )
    return [(cls, diff) for cls, diff in grown[:top] if diff > 0]


# Instances of one type whose allocation lines are looked up (the rest are not needed to rank them):
# each lookup allocates (a traceback, frame by frame; a list of referents) while tracing. The newest
# objects come first in gc.get_objects() (the youngest generation), so the sample favours them.
_SAMPLED_INSTANCES = 200
# Referents consulted for an instance tracemalloc cannot place itself.
_SAMPLED_REFERENTS = 8


def _object_owner(obj: Any, owners: dict[tracemalloc.Traceback, tuple[str, bool] | None]) -> tuple[str, bool] | None:
    """The owner line of `obj`'s allocation; where tracemalloc has none for the object itself, that of
    the first of its referents it has one for.

    CPython 3.11 finds no traceback for instances of classes with a managed `__dict__` (the lookup
    misses the pre-header before the object), and objects reused from a free list (dicts, lists,
    small tuples) were allocated before tracing began; their attributes and items were allocated
    with them, by the same line, as a rule.
    """
    traceback = tracemalloc.get_object_traceback(obj)
    if traceback is not None:
        return owners[traceback] if traceback in owners else owners.setdefault(traceback, _owner(traceback))
    for referent in gc.get_referents(obj)[:_SAMPLED_REFERENTS]:
        traceback = tracemalloc.get_object_traceback(referent)
        if traceback is not None:
            return owners[traceback] if traceback in owners else owners.setdefault(traceback, _owner(traceback))
    return None


def allocation_sites(types: Iterable[type], *, sites: int = 3) -> dict[type, tuple[tuple[str, int], ...]]:
    """For each type, the owner lines (first frame outside libraries) that allocated its traced
    instances, with how many each, most first: where a leak of objects is made even when the
    bytes they hold were allocated elsewhere (a thread's stack, a buffer shared with another frame).

    Needs tracemalloc tracing; one pass over gc.get_objects(), at most 50 instances per type.
    """
    wanted = set(types)
    counts: dict[type, Counter[str]] = {cls: Counter() for cls in wanted}
    looked_up: Counter[type] = Counter()
    owners: dict[tracemalloc.Traceback, tuple[str, bool] | None] = {}
    for obj in gc.get_objects():
        cls = type(obj)
        if cls not in wanted or looked_up[cls] >= _SAMPLED_INSTANCES:
            continue
        looked_up[cls] += 1
        owner = _object_owner(obj, owners)
        if owner is not None:
            counts[cls][owner[0]] += 1
    return {cls: tuple(counter.most_common(sites)) for cls, counter in counts.items() if counter}


# ------------------------------------------------------------------ verdict


@dataclass(frozen=True, slots=True)
class LeakDiagnosis:
    """What one window found; rates are per `cycle_unit` ("cycle" when the manager counts cycles,
    else "maintenance pass").

    `unmanaged_bytes_per_cycle` is the trend of unmanaged memory over the passes before the window
    (a least-squares slope: one window's few readings move in allocator-sized steps, and tracing
    itself takes memory). `traced_bytes_per_cycle` is what Python allocations grew during the
    window, and `explained_ratio` the first over the second. `window_unmanaged_growth_bytes` is
    the change of unmanaged memory across the window less tracemalloc's own, for reference.
    """

    verdict: str
    started_at: float  # time.time() when tracing started
    seconds: float
    passes: int
    cycles: int
    cycle_unit: str
    unmanaged_bytes_per_cycle: float | None
    traced_growth_bytes: int
    explained_ratio: float | None
    window_unmanaged_growth_bytes: int | None
    sites: tuple[GrowingSite, ...]
    types: tuple[GrowingType, ...]
    frames: int
    tracing_started_here: bool
    gc_enabled: bool
    trace_memory_bytes: int
    cut_short: str | None = None
    message: str = field(default="", compare=False)

    @property
    def traced_bytes_per_cycle(self) -> float:
        return self.traced_growth_bytes / self.cycles

    @property
    def unexplained_bytes_per_cycle(self) -> float:
        """Unmanaged growth per cycle that traced Python allocations do not account for (>= 0)."""
        unmanaged = self.unmanaged_bytes_per_cycle
        return 0.0 if unmanaged is None else max(0.0, unmanaged - max(0.0, self.traced_bytes_per_cycle))

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "message": self.message,
            "started_at": self.started_at,
            "seconds": self.seconds,
            "passes": self.passes,
            "cycles": self.cycles,
            "cycle_unit": self.cycle_unit,
            "unmanaged_bytes_per_cycle": self.unmanaged_bytes_per_cycle,
            "traced_growth_bytes": self.traced_growth_bytes,
            "traced_bytes_per_cycle": self.traced_bytes_per_cycle,
            "unexplained_bytes_per_cycle": self.unexplained_bytes_per_cycle,
            "explained_ratio": self.explained_ratio,
            "window_unmanaged_growth_bytes": self.window_unmanaged_growth_bytes,
            "sites": [site.to_dict() for site in self.sites],
            "types": [growing.to_dict() for growing in self.types],
            "frames": self.frames,
            "tracing_started_here": self.tracing_started_here,
            "gc_enabled": self.gc_enabled,
            "trace_memory_bytes": self.trace_memory_bytes,
            "cut_short": self.cut_short,
        }


def judge(
    unmanaged_bytes_per_cycle: float | None, traced_bytes_per_cycle: float, explained_ratio: float
) -> tuple[str, float | None]:
    """(verdict, traced / unmanaged growth): the rule that keeps native growth from being blamed on a line."""
    if unmanaged_bytes_per_cycle is None:
        return (Verdict.PYTHON if traced_bytes_per_cycle > 0 else Verdict.NO_GROWTH), None
    if unmanaged_bytes_per_cycle <= 0:
        return Verdict.NO_GROWTH, None
    ratio = max(0.0, traced_bytes_per_cycle) / unmanaged_bytes_per_cycle
    return (Verdict.PYTHON if ratio >= explained_ratio else Verdict.UNEXPLAINED), ratio


# Under this share explained, a Python verdict also states how much is left unexplained.
_MOSTLY_EXPLAINED_RATIO = 0.75


def _rate(value_bytes: float, unit: str) -> str:
    return f"{_kib(value_bytes)}/{unit}"


def describe(diagnosis: LeakDiagnosis, *, sites: int = 3, types: int = 3) -> str:
    """The one-line warning: rates, the verdict, the top sites as `path:line`, the growing types."""
    unit = diagnosis.cycle_unit
    plural = "" if diagnosis.cycles == 1 else ("es" if unit.endswith("pass") else "s")
    window = f"over {diagnosis.cycles} {unit}{plural} ({diagnosis.seconds:.3g} s traced"
    window += ")" if diagnosis.cut_short is None else f", cut short: {diagnosis.cut_short})"
    unmanaged = diagnosis.unmanaged_bytes_per_cycle
    traced = diagnosis.traced_bytes_per_cycle
    if diagnosis.verdict == Verdict.NO_GROWTH:
        trend = "" if unmanaged is None else f" (trend {_rate(unmanaged, unit)})"
        text = f"leak diagnosis: unmanaged memory did not grow{trend}; Python allocations {_rate(traced, unit)} {window}"
    elif diagnosis.verdict == Verdict.UNEXPLAINED:
        text = (
            f"leak diagnosis: unmanaged growth not explained by Python allocations: unmanaged memory grows "
            f"{_rate(unmanaged, unit)} while traced Python allocations grew {_rate(traced, unit)} {window}, "
            f"{diagnosis.explained_ratio:.0%} of it; look at native code (C extensions, ctypes, native "
            f"buffers, threads' stacks) or allocator fragmentation, not at a line of Python"
        )
    else:
        if unmanaged is None:
            text = f"leak diagnosis: Python allocations grew {_rate(traced, unit)} {window}"
        else:
            text = (
                f"leak diagnosis: unmanaged memory grows {_rate(unmanaged, unit)}; Python allocations grew "
                f"{_rate(traced, unit)} {window}, {diagnosis.explained_ratio:.0%} of it"
            )
            if diagnosis.explained_ratio < _MOSTLY_EXPLAINED_RATIO:
                text += f" ({_rate(diagnosis.unexplained_bytes_per_cycle, unit)} not explained by Python allocations)"
        named = []
        for grown_site in diagnosis.sites[:sites]:
            entry = (
                f"{grown_site.site} +{_rate(grown_site.bytes_per_cycle, unit)}, "
                f"{grown_site.blocks_per_cycle:+.1f} blocks/{unit}"
            )
            if grown_site.innermost != grown_site.site:
                entry += f" (allocated in {grown_site.innermost})"
            if not grown_site.owner_found:
                entry += f" (no frame outside libraries within {diagnosis.frames} frames)"
            named.append(entry)
        text += "; top growing sites: " + ("; ".join(named) if named else "none")
    listed = diagnosis.types
    if diagnosis.verdict == Verdict.UNEXPLAINED:
        # Only classes defined in Python, whose instances may hold what tracemalloc cannot see
        # (a Thread its stack, a wrapper its C buffer); counts of dicts and cells would be noise here.
        listed = tuple(t for t in listed if t.python_class)
    if diagnosis.verdict != Verdict.NO_GROWTH and listed:
        # Classes defined in Python first: a DataFrame or a Thread says more than the dicts and cells inside it.
        ranked = sorted(listed, key=lambda t: not t.python_class)[:types]
        grown_types = ", ".join(
            f"{t.name} {t.per_cycle:+.1f}/{unit}" + (f" (allocated at {t.allocated_at[0][0]})" if t.allocated_at else "")
            for t in ranked
        )
        text += f"; growing types: {grown_types}"
    if not diagnosis.gc_enabled:
        text += "; gc is disabled: reference cycles are never collected"
    return text


# ------------------------------------------------------------------ the window


@dataclass(slots=True)
class _Baseline:
    """What the window measures from, taken one pass after tracing started (see LeakDiagnoser)."""

    snapshot: tracemalloc.Snapshot
    census: Counter[type]
    managed: dict[str, int]
    unmanaged_bytes: int | None
    trace_memory_bytes: int
    cycles: int
    taken_at: float  # the diagnoser's clock


@dataclass(slots=True)
class _Window:
    opened_at: float  # the diagnoser's clock
    opened_wall: float  # time.monotonic(), for the watchdog
    started_at: float  # time.time()
    started_here: bool
    frames: int
    trend_bytes_per_cycle: float | None  # the unmanaged trend when tracing started
    trend_unit: str
    baseline: _Baseline | None = None
    passes: int = 0  # passes since the baseline
    closed: threading.Event = field(default_factory=threading.Event)


def _no_values() -> Iterable[tuple[Any, int]]:
    return ()


class LeakDiagnoser:
    """Runs bounded diagnosis windows when told that a leak is suspected; thread-safe.

    Drive it with `on_pass(suspected, unmanaged_bytes)` once per maintenance pass. Outside windows
    it follows the trend of unmanaged memory per cycle (per pass when no cycles are counted). A
    window starts tracing at the pass that finds a leak suspected; the next pass takes the
    baseline (snapshot, type census, managed bytes), so whatever the process replaces every cycle
    is traced on both sides and cancels out; `window_passes` passes later the window closes and
    the result goes to `on_diagnosis` (outside the lock) and is kept as `last`. `abandon(reason)`
    ends a window at once.
    """

    settings: DiagnosisSettings
    diagnoses: int
    diagnoses_by_verdict: Counter[str]
    abandoned: int
    last: LeakDiagnosis | None
    last_abandon_reason: str | None

    def __init__(
        self,
        settings: DiagnosisSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        read_unmanaged_bytes: Callable[[], int | None] = lambda: None,
        read_cycles: Callable[[], int] = lambda: 0,
        read_managed_values: Callable[[], Iterable[tuple[Any, int]]] = _no_values,
        on_diagnosis: Callable[[LeakDiagnosis], None] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else DiagnosisSettings()
        self._clock = clock
        self._read_unmanaged_bytes = read_unmanaged_bytes
        self._read_cycles = read_cycles
        self._read_managed_values = read_managed_values
        self._on_diagnosis = on_diagnosis
        self._lock = threading.Lock()
        self._window: _Window | None = None
        self._ended_at: float | None = None
        self._trend = GrowthTracker(self.settings.trend_samples)
        self._trend_unit = "maintenance pass"
        self._passes = 0
        self.diagnoses = 0
        self.diagnoses_by_verdict: Counter[str] = Counter()
        self.abandoned = 0
        self.last = None
        self.last_abandon_reason = None

    @property
    def window_open(self) -> bool:
        return self._window is not None

    def on_pass(self, suspected: bool, unmanaged_bytes: float | None = None) -> LeakDiagnosis | None:
        """One maintenance pass: follow the trend, open a window, take its baseline, count a pass,
        or close it; returns the diagnosis when this pass closed a window."""
        with self._lock:
            window = self._window
            if window is None:
                self._follow_trend_locked(unmanaged_bytes)
                if suspected and self.settings.enabled and self._cooled_down_locked():
                    self._guarded_locked(self._open_locked)
                return None
            reason = self._cut_short_reason_locked(window)
            if window.baseline is None:
                if reason is not None:
                    self._abandon_locked(f"cut short before its baseline: {reason}")
                else:
                    self._guarded_locked(lambda: self._take_baseline_locked(window))
                return None
            window.passes += 1
            if window.passes < self.settings.window_passes and reason is None:
                return None
            result = self._guarded_locked(lambda: self._close_locked(window, reason))
        if result is not None:
            self._deliver(result)
        return result

    def abandon(self, reason: str) -> bool:
        """End an open window without a result (tracing stopped if it was started here); False if none was open."""
        with self._lock:
            return self._abandon_locked(reason)

    def state(self) -> dict[str, Any]:
        """Window state, trend and counters, for stats."""
        with self._lock:
            window = self._window
            now = self._clock()
            cooldown_left = (
                None if self._ended_at is None else max(0.0, self.settings.cooldown_seconds - (now - self._ended_at))
            )
            return {
                "enabled": self.settings.enabled,
                "window_open": window is not None,
                "window_seconds": None if window is None else now - window.opened_at,
                "window_passes": None if window is None else window.passes,
                "unmanaged_trend_bytes_per_cycle": self._trend.slope,
                "trend_unit": self._trend_unit,
                "diagnoses": self.diagnoses,
                "abandoned": self.abandoned,
                "last_abandon_reason": self.last_abandon_reason,
                "cooldown_left_seconds": cooldown_left,
            }

    # ----------------------------------------------------------- internals

    def _follow_trend_locked(self, unmanaged_bytes: float | None) -> None:
        """One sample of unmanaged memory against the cycle count (the pass count until cycles are counted)."""
        self._passes += 1
        if unmanaged_bytes is None:
            return
        cycles = self._read_cycles()
        unit = "cycle" if cycles > 0 else "maintenance pass"
        if unit != self._trend_unit:  # cycles started being counted: the pass-based samples do not mix
            self._trend = GrowthTracker(self.settings.trend_samples)
            self._trend_unit = unit
        self._trend.add(cycles if cycles > 0 else self._passes, unmanaged_bytes)

    def _cooled_down_locked(self) -> bool:
        return self._ended_at is None or self._clock() - self._ended_at >= self.settings.cooldown_seconds

    def _cut_short_reason_locked(self, window: _Window) -> str | None:
        age = self._clock() - window.opened_at
        if age >= self.settings.max_window_seconds:
            return f"open {age:.0f} s, the cap is {self.settings.max_window_seconds:.0f} s"
        trace_memory = tracemalloc.get_tracemalloc_memory()
        if trace_memory >= self.settings.max_trace_memory_bytes / 2:
            return (
                f"tracemalloc used {trace_memory / _MIB:.1f} MiB, half of its "
                f"{self.settings.max_trace_memory_bytes / _MIB:.1f} MiB cap"
            )
        return None

    def _guarded_locked(self, action: Callable[[], Any]) -> Any:
        """Run a step of the window; on any failure the window is abandoned and tracing stopped, never left on."""
        try:
            return action()
        except Exception as error:
            logger.exception("leak diagnosis failed")
            self._abandon_locked(f"failed: {error!r}")
            return None

    def _open_locked(self) -> None:
        started_here = not tracemalloc.is_tracing()
        if started_here:
            tracemalloc.start(self.settings.frames)
        window = _Window(
            opened_at=self._clock(),
            opened_wall=time.monotonic(),
            started_at=time.time(),
            started_here=started_here,
            frames=tracemalloc.get_traceback_limit(),
            trend_bytes_per_cycle=self._trend.slope,
            trend_unit=self._trend_unit,
        )
        self._window = window
        threading.Thread(target=self._watch, args=(window,), name="memory-leak-diagnosis-watchdog", daemon=True).start()
        logger.info(
            "leak suspected: tracing allocations (%d frames%s) for %d maintenance passes",
            window.frames,
            "" if started_here else ", tracemalloc was already tracing",
            self.settings.window_passes + 1,
        )

    def _take_baseline_locked(self, window: _Window) -> None:
        if not tracemalloc.is_tracing():
            raise RuntimeError("tracemalloc was stopped by someone else during the window")
        snapshot = tracemalloc.take_snapshot()
        managed = managed_by_site(self._read_managed_values())
        counts = census()  # after the snapshot: it counts the snapshot's objects, as the closing census will
        window.baseline = _Baseline(
            snapshot=snapshot,
            census=counts,
            managed=managed,
            # Read after the snapshot and the census: what they hold is not growth of the process.
            unmanaged_bytes=self._read_unmanaged_bytes(),
            trace_memory_bytes=tracemalloc.get_tracemalloc_memory(),
            cycles=self._read_cycles(),
            taken_at=self._clock(),
        )

    def _close_locked(self, window: _Window, reason: str | None) -> LeakDiagnosis:
        settings = self.settings
        baseline = window.baseline
        # Memory first, before the snapshot (which may be large) is built.
        unmanaged_after = self._read_unmanaged_bytes()
        trace_memory = tracemalloc.get_tracemalloc_memory()
        try:
            if not tracemalloc.is_tracing():
                raise RuntimeError("tracemalloc was stopped by someone else during the window")
            # The census before the snapshot, as at the baseline: both count the baseline snapshot's
            # objects and neither counts this one's; the baseline's own records are taken out.
            after_census = census()
            after_census.subtract({Counter: 1, _Baseline: 1})
            after = tracemalloc.take_snapshot()
            managed_after = managed_by_site(self._read_managed_values())
            # While still tracing: where the new instances of the growing types were allocated.
            type_sites = allocation_sites(cls for cls, _ in _grown(baseline.census, after_census, settings.top_types))
        finally:
            self._end_locked(window)
        passes = window.passes
        cycles_noted = self._read_cycles() - baseline.cycles
        cycles, unit = (cycles_noted, "cycle") if cycles_noted > 0 else (passes, "maintenance pass")
        sites, traced_growth = compare_snapshots(
            baseline.snapshot,
            after,
            cycles=cycles,
            top=settings.top_sites,
            managed_before=baseline.managed,
            managed_after=managed_after,
        )
        window_growth = None
        if unmanaged_after is not None and baseline.unmanaged_bytes is not None:
            # tracemalloc's own memory is in the process's figure; it is the diagnosis's, not a leak.
            window_growth = unmanaged_after - baseline.unmanaged_bytes - (trace_memory - baseline.trace_memory_bytes)
        # The trend is comparable only in the window's unit (cycles counted before and during it).
        trend = window.trend_bytes_per_cycle if window.trend_unit == unit else None
        if trend is None and window_growth is not None:
            trend = window_growth / cycles
        verdict, ratio = judge(trend, traced_growth / cycles, settings.explained_ratio)
        if verdict == Verdict.UNEXPLAINED and unit != "cycle" and window_growth is not None and window_growth > 0:
            # Per pass, the trend was measured at full speed and the window at the speed tracing leaves
            # (several times slower, so fewer cycles per pass): the window's own growth, measured at the
            # same speed as its allocations, decides too. Counted cycles make both rates per cycle.
            window_verdict, window_ratio = judge(window_growth / cycles, traced_growth / cycles, settings.explained_ratio)
            if window_verdict == Verdict.PYTHON:
                verdict, ratio, trend = window_verdict, window_ratio, window_growth / cycles
        diagnosis = LeakDiagnosis(
            verdict=verdict,
            started_at=window.started_at,
            seconds=self._clock() - baseline.taken_at,
            passes=passes,
            cycles=cycles,
            cycle_unit=unit,
            unmanaged_bytes_per_cycle=trend,
            traced_growth_bytes=traced_growth,
            explained_ratio=ratio,
            window_unmanaged_growth_bytes=window_growth,
            sites=tuple(sites),
            types=tuple(
                growing_types(baseline.census, after_census, cycles=cycles, top=settings.top_types, allocated_at=type_sites)
            ),
            frames=window.frames,
            tracing_started_here=window.started_here,
            gc_enabled=gc.isenabled(),
            trace_memory_bytes=trace_memory,
            cut_short=reason,
        )
        diagnosis = dataclasses.replace(diagnosis, message=describe(diagnosis))
        self.diagnoses += 1
        self.diagnoses_by_verdict[verdict] += 1
        self.last = diagnosis
        return diagnosis

    def _end_locked(self, window: _Window) -> None:
        if window.started_here and tracemalloc.is_tracing():
            tracemalloc.stop()
        window.closed.set()
        window.baseline = None  # the snapshot can be large: drop it now
        self._window = None
        self._ended_at = self._clock()

    def _abandon_locked(self, reason: str) -> bool:
        window = self._window
        if window is None:
            return False
        self._end_locked(window)
        self.abandoned += 1
        self.last_abandon_reason = reason
        logger.warning(
            "leak diagnosis window abandoned after %.0f s: %s; %s",
            time.monotonic() - window.opened_wall,
            reason,
            "tracemalloc stopped" if window.started_here else "tracemalloc left tracing for whoever started it",
        )
        return True

    def _watch(self, window: _Window) -> None:
        """Enforce the caps while passes do not come: abandon at twice the duration cap or at the memory cap."""
        settings = self.settings
        while not window.closed.wait(settings.watchdog_interval_seconds):
            age = time.monotonic() - window.opened_wall
            reason = None
            if age >= 2 * settings.max_window_seconds:
                reason = f"no maintenance pass closed it within {2 * settings.max_window_seconds:.0f} s"
            elif tracemalloc.is_tracing() and tracemalloc.get_tracemalloc_memory() >= settings.max_trace_memory_bytes:
                reason = f"tracemalloc reached its {settings.max_trace_memory_bytes / _MIB:.1f} MiB cap"
            if reason is not None:
                with self._lock:
                    if self._window is window:
                        self._abandon_locked(reason)
                return

    def _deliver(self, diagnosis: LeakDiagnosis) -> None:
        if self._on_diagnosis is None:
            return
        try:
            self._on_diagnosis(diagnosis)
        except Exception:
            logger.exception("leak diagnosis callback failed")
