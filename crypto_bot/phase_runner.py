"""BotContext (the state a trading cycle works on) and PhaseRunner (runs the cycle's phases).

The context puts the bot's caches under the `MemoryManager` it is given: `df_cache` and
`regime_cache` become managed caches behind dict-like views, so old code keeps reading and writing
them as dicts while every DataFrame is held once and evicted by budget, TTL and pressure. It never
creates a manager (the composition root, `TradingBot`, passes one); without one the caches stay
plain dicts. Positions are a plain dict that no memory tier ever touches.

The runner times each phase, records its RSS change and the pressure level after it, and keeps
memory maintenance off the event loop. Inline it reads the RSS once per phase (one statm read);
a full reading (host, cgroup, PSI: 0.1-0.2 ms) is taken when the RSS has grown enough to
reach the next pressure threshold, and otherwise only as often as keeps full readings under
`READING_COST_RATIO` of wall time, so the level after a phase may come from a reading up to
500 readings' cost old (0.1 s at 0.2 ms a reading).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import itertools
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crypto_bot.cache_views import CacheView
from crypto_bot.memory import ManagedCache, MemoryManager, MemoryReading, PressureLevel, PressurePolicy
from crypto_bot.memory.units import MIB as _MIB
from crypto_bot.memory.units import format_mib as _mib

logger = logging.getLogger(__name__)

Phase = Callable[["BotContext"], Awaitable[Any]]
PressureCallback = Callable[["BotContext", "PhaseReport"], Any]

# (attribute, max entries (capped by max_cache_entries), ttl seconds, shrink priority: lower goes first under pressure)
MANAGED_CACHES = (("df_cache", 1000, 3600, 1), ("regime_cache", 500, 1800, 0))
_context_ids = itertools.count(1)
READING_COST_RATIO = 0.002  # full memory readings take at most this share of the runner's wall time


@dataclass(eq=False)
class BotContext:
    """Everything one trading cycle reads and writes."""

    positions: dict
    df_cache: dict
    regime_cache: dict
    config: dict
    exchange: Any = None
    ws_client: Any = None
    risk_manager: Any = None
    notifier: Any = None
    paper_wallet: Any = None
    position_guard: Any = None
    trade_manager: Any = None
    balance: float = 0.0
    current_batch: list = field(default_factory=list)
    analysis_results: list = field(default_factory=list)
    timing: dict = field(default_factory=dict)
    volatility_factor: float = 1.0
    memory_manager: MemoryManager | None = None
    managed_caches: dict = field(default_factory=dict)
    manage_memory: bool = True  # False: plain dict caches and no manager (the unmanaged baseline)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_views", {})
        if not self.manage_memory:
            self.memory_manager = None
        if self.memory_manager is None:
            return
        context_id = next(_context_ids)
        for attribute, max_size, ttl_seconds, priority in MANAGED_CACHES:
            name = attribute if self.memory_manager.get_cache(attribute) is None else f"{attribute}-{context_id}"
            max_size = min(max_size, self.memory_manager.config.max_cache_entries)
            cache = self.memory_manager.register_cache(name, max_size, ttl_seconds, priority=priority)
            weakref.finalize(self, self.memory_manager.unregister_cache, name)
            view = CacheView(cache)
            self._views[attribute] = view
            self.managed_caches[attribute] = cache
            self._move_into(view, getattr(self, attribute))
            object.__setattr__(self, attribute, view)

    def __setattr__(self, name: str, value: Any) -> None:
        view = self.__dict__.get("_views", {}).get(name)
        if view is None:
            super().__setattr__(name, value)
        elif value is not view:
            view.clear()
            self._move_into(view, value)

    @staticmethod
    def _move_into(view: CacheView, source: Any) -> None:
        """Move entries into the managed cache, emptying the source dicts (nested ones too): nothing is held twice."""
        if not source:
            return
        if not isinstance(source, Mapping):
            raise TypeError(f"a cache must be a mapping, got {type(source).__name__}")
        view.load(source)
        if isinstance(source, dict):
            for value in source.values():
                if isinstance(value, dict):
                    value.clear()
            source.clear()

    # ------------------------------------------------------------ memory

    def get_managed_cache(self, name: str) -> ManagedCache | None:
        return self.managed_caches.get(name)

    def register_ml_model(self, name: str, model: Any, size_estimate_mb: float = 100) -> None:
        """Hold `model` in the manager's registry; with no loader to bring it back, it is pinned."""
        if self.memory_manager is not None:
            self.memory_manager.models.register(name, model, size_bytes=int(size_estimate_mb * _MIB), pinned=True)

    def update_ml_model_usage(self, name: str) -> None:
        if self.memory_manager is not None and name in self.memory_manager.models:
            self.memory_manager.models.touch(name)

    def perform_memory_maintenance(self) -> dict[str, Any]:
        """One maintenance pass: its report as a dict, with the seed's keys too."""
        if self.memory_manager is None:
            return {"error": "no memory manager", "timestamp": time.time()}
        report = self.memory_manager.perform_maintenance()
        return {
            **dataclasses.asdict(report),
            "level": report.level.name,
            "cache_cleanup": report.expired_entries,
            "ml_cleanup": report.models_unloaded,
            "memory_pressure": report.level >= PressureLevel.PRESSURE,
        }

    def get_memory_stats(self) -> dict[str, Any]:
        """The manager's statistics (the reading as a dict) with `caches` narrowed to this context's caches."""
        if self.memory_manager is None:
            return {"error": "no memory manager", "timestamp": time.time()}
        stats = self.memory_manager.get_memory_stats()
        stats["reading"] = dataclasses.asdict(stats["reading"])
        stats["caches"] = {attribute: cache.stats() for attribute, cache in self.managed_caches.items()}
        return stats

    # --------------------------------------------------------- positions

    def get_position_count(self) -> int:
        return len(self.positions)

    def get_position_symbols(self) -> list[str]:
        return [getattr(p, "symbol", None) or (p.get("symbol", key) if isinstance(p, Mapping) else key)
                for key, p in self.positions.items()]


@dataclass(slots=True)
class PhaseReport:
    """One phase of one cycle: duration, RSS change, and the level and usage of the latest reading after it."""

    name: str
    seconds: float
    rss_delta_bytes: int
    pressure_level: PressureLevel
    usage_ratio: float | None
    error: str | None = None


class PhaseRunner:
    """Runs async phases in order over a BotContext, with timing and memory monitoring."""

    def __init__(
        self,
        phases: Sequence[Phase],
        *,
        continue_on_error: bool = False,
        stop_on: tuple[type[Exception], ...] = (),
        on_pressure: PressureCallback | None = None,
        monitor_memory: bool = True,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.phases = list(phases)
        if not self.phases or not all(callable(p) for p in self.phases):
            raise ValueError("phases must be a non-empty sequence of async callables taking the context")
        self.continue_on_error = continue_on_error
        self.stop_on = stop_on  # errors that end the run even with continue_on_error (bad input, not a bad cycle)
        self.on_pressure = on_pressure
        self.monitor_memory = monitor_memory
        self._clock = clock
        self.last_report: list[PhaseReport] = []
        self._maintenance: asyncio.Future[Any] | None = None
        self._next_maintenance = 0.0
        self._last_level = PressureLevel.NORMAL  # after the latest phase, across cycles: alerts fire on a rise
        self._reading: MemoryReading | None = None  # the latest full reading, its level, and when to take another
        self._reading_level = PressureLevel.NORMAL
        self._rising_rss_bytes = -math.inf
        self._next_reading = 0.0
        self.stop_requested = False

    def request_stop(self) -> None:
        """Let the running phase finish, then return from `run` without starting the next one."""
        self.stop_requested = True

    async def run(self, ctx: BotContext) -> dict[str, float]:
        """Run every phase once; returns `{phase name: seconds}` (recorded even when a phase raises)."""
        timings: dict[str, float] = {}
        reports: list[PhaseReport] = []
        manager = ctx.memory_manager if self.monitor_memory and ctx.manage_memory else None
        rss_bytes = manager.probe.rss_bytes() if manager is not None else None  # then each phase's RSS after it
        try:
            for phase in self.phases:
                if self.stop_requested:
                    break
                name = getattr(phase, "__name__", type(phase).__name__)
                started = self._clock()
                error: BaseException | None = None
                try:
                    await phase(ctx)
                except Exception as exc:
                    error = exc
                seconds = self._clock() - started
                timings[name] = ctx.timing[name] = seconds
                report = PhaseReport(name, seconds, 0, PressureLevel.NORMAL, None, None if error is None else repr(error))
                if manager is not None:
                    rss_bytes = await self._observe(ctx, manager, report, rss_bytes)
                reports.append(report)
                if error is not None:
                    if not self.continue_on_error or isinstance(error, self.stop_on):
                        raise error
                    logger.error("phase %s failed: %r; continuing", name, error)
                    failure = notify(ctx, f"phase {name} failed: {error!r}", event="phase_failure", subject=name)
                    await _delivered(failure)
        finally:
            self.last_report = reports
            ctx.timing["phases"] = reports
        return timings

    async def _observe(
        self,
        ctx: BotContext,
        manager: MemoryManager,
        report: PhaseReport,
        rss_before: int | None,
    ) -> int | None:
        """Cheap inline reading; real maintenance goes to a worker thread when due or under pressure.

        Returns the RSS after the phase, which is the next phase's RSS before it.
        """
        rss_bytes = manager.probe.rss_bytes()
        if rss_before is not None and rss_bytes is not None:
            report.rss_delta_bytes = rss_bytes - rss_before
        reading = self._latest_reading(manager, rss_bytes)
        report.usage_ratio = reading.usage_ratio
        report.pressure_level = max(manager.policy.level, self._reading_level)
        now = self._clock()
        under_pressure = report.pressure_level >= PressureLevel.GC
        if (self._maintenance is None or self._maintenance.done()) and (
            under_pressure or (now >= self._next_maintenance and not manager.running)
        ):
            self._next_maintenance = now + manager.config.maintenance_interval_seconds
            self._maintenance = asyncio.get_running_loop().run_in_executor(None, manager.perform_maintenance)
        previous, self._last_level = self._last_level, report.pressure_level
        if report.pressure_level >= PressureLevel.PRESSURE and report.pressure_level > previous:
            await self._alert(ctx, manager, report, reading)
        elif previous >= PressureLevel.PRESSURE and report.pressure_level < previous:
            message = f"memory left {previous.name} after phase {report.name}: now {report.pressure_level.name}"
            logger.info(message)
            left = {"state": "left", "level": report.pressure_level.name}
            await _delivered(notify(ctx, message, event="pressure", subject=f"left {previous.name}", details=left))
        return rss_bytes

    def _latest_reading(self, manager: MemoryManager, rss_bytes: int | None) -> MemoryReading:
        """A full reading when one is due or RSS grew enough to reach the next threshold; else the last one."""
        started = self._clock()
        if (
            self._reading is not None
            and started < self._next_reading
            and rss_bytes is not None
            and rss_bytes < self._rising_rss_bytes
        ):
            return self._reading
        reading = self._reading = manager.read_memory()
        policy = manager.policy
        usage_ratio = reading.usage_ratio  # None: no source readable; the policy's own level stands
        self._reading_level = PressureLevel.NORMAL if usage_ratio is None else policy.classify(usage_ratio)
        self._rising_rss_bytes = _rss_at_next_threshold(policy, reading)
        finished = self._clock()
        self._next_reading = finished + (finished - started) / READING_COST_RATIO
        return reading

    async def _alert(self, ctx: BotContext, manager: MemoryManager, report: PhaseReport, reading: Any) -> None:
        usage = "n/a" if reading.usage_ratio is None else f"{reading.usage_ratio:.0%}"
        message = (
            f"memory {report.pressure_level.name} after phase {report.name}: {usage} of {_limit_phrase(reading)}, "
            f"rss {_mib(reading.rss_bytes)}, caches {_mib(manager.cache_bytes)}"
        )
        logger.warning(message)
        details = {
            "state": "entered",
            "level": report.pressure_level.name,
            "phase": report.name,
            "usage_ratio": reading.usage_ratio,
            "rss_bytes": reading.rss_bytes,
            "cache_bytes": manager.cache_bytes,
        }
        deliveries = [notify(ctx, message, event="pressure", subject=report.pressure_level.name, details=details)]
        if self.on_pressure is not None:
            deliveries.append(_awaited(self.on_pressure, ctx, report))
        for delivery in deliveries:  # one failing target does not silence the other
            await _delivered(delivery)

    async def drain(self) -> None:
        """Wait for a maintenance pass still running in the worker thread (call at shutdown)."""
        if self._maintenance is not None:
            await self._maintenance


async def notify(
    ctx: BotContext, message: str, *, event: str, subject: str = "", details: dict[str, Any] | None = None
) -> None:
    """Send `message` through the context's notifier, if it has one (sync or async
    `notify(message, *, event, subject, details)`; `event` is one of `crypto_bot.notify.EVENTS`)."""
    send = getattr(ctx.notifier, "notify", None)
    if send is not None:
        await _awaited(functools.partial(send, message, event=event, subject=subject, details=details))


async def _delivered(delivery: Awaitable[Any]) -> None:
    """Await a notification; a notifier that raises is logged, never fails the cycle."""
    try:
        await delivery
    except Exception:
        logger.exception("notification delivery failed")


async def _awaited(callback: Callable[..., Any], *args: Any) -> None:
    if inspect.isawaitable(result := callback(*args)):
        await result


def _limit_phrase(reading: MemoryReading) -> str:
    """The limit that set `reading`'s usage ratio, named, with the memory it bounds: "the cgroup limit 700.0 MiB
    (working set 580.0 MiB)"."""
    limiting = reading.limiting
    if limiting is None:  # a stand-in reading without usages: the tightest limit is all there is
        return f"the {_mib(reading.limit_bytes)} limit"
    if limiting.limit_bytes is None:  # system_percent: the host's own percentage, no byte figures
        return "host memory (the host's percent used)"
    name, measure = _LIMIT_WORDS[limiting.source]
    return f"{name} {_mib(limiting.limit_bytes)} ({measure} {_mib(limiting.used_bytes)})"


# How each probe.LimitUsage.source reads in the alert: the limit, and the memory compared with it.
_LIMIT_WORDS = {
    "process": ("the process limit (process_memory_limit_mb)", "rss"),
    "cgroup": ("the cgroup limit", "cgroup working set"),
    "host": ("host memory", "host usage"),
}


def _rss_at_next_threshold(policy: PressurePolicy, reading: MemoryReading) -> float:
    """The RSS at which growth alone would lift `reading`'s level to the next threshold up (-inf: unknown).

    Our RSS growth adds to every usage (process RSS, the cgroup's working set, host usage), each
    against its own limit; the level rises when the first of them reaches the next threshold above
    the usage ratio (the limiting usage's), so the answer is the smallest growth over the usages.
    """
    if reading.usage_ratio is None or reading.rss_bytes is None:
        return -math.inf
    thresholds = (policy.gc_threshold, policy.memory_threshold, policy.critical_threshold)
    next_ratio = min((ratio for ratio in thresholds if ratio > reading.usage_ratio), default=math.inf)
    if next_ratio == math.inf:
        return math.inf
    usages = [(usage.ratio, usage.limit_bytes) for usage in reading.usages or () if usage.limit_bytes]
    if not usages and reading.limit_bytes:  # a stand-in reading without usages: the old measure
        usages = [(reading.usage_ratio, reading.limit_bytes)]
    if not usages:  # no byte figures (the host's percent only): read every phase
        return -math.inf
    return reading.rss_bytes + min((next_ratio - ratio) * limit_bytes for ratio, limit_bytes in usages)
