"""MemoryManager: owns the caches, the model registry, the probe and the pressure policy.

It turns readings into actions: expiry on a cadence, idle models unloaded, the pressure tiers
(collect, shrink the lowest-priority caches, clear everything and alert), leak checks, and a
daemon thread that does all of that every `maintenance_interval_seconds`. Trading state never
lives here: positions and orders are not in any cache, so no tier can evict them.
A limit too small for the work makes every pass clear what the process loads again; the manager
says so once (a warning and an alert) with the figures and the limit that would stop it, and
again only after it stopped and started anew. Its stats show each limit with the memory it
bounds, which one set the level, and the ratio, thresholds and hysteresis the level came from.

When the leak detector confirms growth of unmanaged memory, the manager diagnoses it on its own:
a bounded tracemalloc window over the next maintenance passes names the growing lines and types
(`diagnosis.py`); the result is logged as a warning and sent to the alert callbacks, kept in the
stats (`"leak"`), exported as metrics, and written as a JSON file to `report_dir`.
`write_report()` writes the same figures on demand, and `install_report_signal()` makes a signal
(SIGUSR1) do it on a running process.

See also: `pressure.py` (the tier decisions and the thrash watch, pure logic), `probe.py` (the readings),
`models.py` (the model lifecycle), `leaks.py` (growth and release checks), `diagnosis.py` (the
diagnosis windows), `reports.py` (report files and the signal handler), and
`crypto_bot.utils.enhanced_memory_manager` (the seed-compatible facade over this class).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import validation
from .budget import SharedBudget
from .cache import ManagedCache, RemovalCause
from .config import MemoryConfig
from .diagnosis import DiagnosisSettings, LeakDiagnoser, LeakDiagnosis, Verdict
from .leaks import AllocationGrowth, LeakDetector, ReleaseWatch, diagnose
from .models import ModelRegistry
from .periodic import PeriodicThread
from .pressure import ClearingPass, PressureDecision, PressureLevel, PressurePolicy, Thrashing, ThrashWatch
from .probe import LimitUsage, MemoryProbe, MemoryReading
from .reclaim import collect_garbage
from .reports import ReportSignal, memory_report, write_json_report
from .units import MIB as _MIB
from .units import format_mib as _mib

logger = logging.getLogger(__name__)

# Removals the cache decides itself; explicit ones (pop, delete, clear) and replacements are the caller's.
_EVICTION_CAUSES = frozenset({RemovalCause.SIZE, RemovalCause.PRESSURE, RemovalCause.EXPIRED})

AlertCallback = Callable[[str, dict[str, Any]], None]

# Passes in a row that clear what came back since the previous clear before the budget counts as
# thrashing: one or two can be a burst (a big backfill); three more after the first clear cannot.
THRASH_PASSES = 3

# How each limit is named in messages, and what it is compared with (probe.LimitUsage.source).
_LIMIT_NAMES = {
    "process": "the process limit",
    "cgroup": "the cgroup limit",
    "host": "host memory",
    "system_percent": "host memory",
    None: "the limit",
}
_MEASURES = {"process": "RSS", "cgroup": "cgroup working set", "host": "host usage", None: "usage"}


@dataclass(slots=True)
class MaintenanceReport:
    """What one maintenance pass saw and freed."""

    timestamp: float
    level: PressureLevel
    usage_ratio: float | None
    expired_entries: int = 0
    cache_bytes_freed: int = 0
    models_unloaded: int = 0
    model_bytes_freed: int = 0
    gc_collected: int = 0
    gc_seconds: float = 0.0
    leak_suspected: bool = False
    not_released: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(slots=True)
class MonitoringRecord:
    """Duration and RSS change of one `memory_monitoring` block."""

    label: str
    started_at: float
    seconds: float
    rss_delta_bytes: int


@dataclass(slots=True)
class _CacheSlot:
    cache: ManagedCache
    priority: int
    evictable: bool
    listener: Callable[[Any, Any, RemovalCause], None]


class MemoryManager:
    """Keeps a long-running process inside its memory limit (see the module docstring)."""

    config: MemoryConfig
    budget: SharedBudget
    models: ModelRegistry
    probe: MemoryProbe
    policy: PressurePolicy
    thrash_watch: ThrashWatch
    leaks: LeakDetector
    release_watch: ReleaseWatch
    diagnoser: LeakDiagnoser
    report_dir: Path | None
    cycles: int

    def __init__(
        self,
        config: MemoryConfig | None = None,
        *,
        probe: MemoryProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_alert: AlertCallback | None = None,
        history_size: int = 256,
        diagnosis: DiagnosisSettings | None = None,
        report_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config = config if config is not None else MemoryConfig()
        self._clock = clock
        self._lock = threading.RLock()
        self._slots: dict[str, _CacheSlot] = {}
        self.budget = SharedBudget(self.config.cache_size_limit_bytes)
        # Only a probe built here follows process_memory_limit_mb; a probe given is the caller's to configure.
        self._own_probe: MemoryProbe | None = None
        if probe is None:
            probe = self._own_probe = MemoryProbe(process_limit_bytes=self.config.process_memory_limit_bytes)
        self.probe = probe
        self.models = ModelRegistry(
            idle_seconds=self.config.model_idle_seconds,
            clock=clock,
            on_leak=self._on_model_leak,
            rss_probe=self.probe.rss_bytes,
        )
        self.policy = self._build_policy()
        self.thrash_watch = self._build_thrash_watch()
        self.leaks = self._build_leak_detector()
        self.release_watch = ReleaseWatch()
        self.cycles = 0
        self.report_dir = None if report_dir is None else Path(report_dir)
        self.last_diagnosis_path: Path | None = None
        self.diagnoser = LeakDiagnoser(
            diagnosis,
            clock=clock,
            read_unmanaged_bytes=self._unmanaged_now,
            read_cycles=lambda: self.cycles,
            read_managed_values=self._managed_values,
            on_diagnosis=self._on_diagnosis,
        )
        self._alert_callbacks: list[AlertCallback] = [on_alert] if on_alert is not None else []
        self.history: deque[MonitoringRecord] = deque(maxlen=history_size)
        self.last_reading: MemoryReading | None = None
        # The reading the policy's level was decided on, and when (the manager's clock).
        self.level_reading: MemoryReading | None = None
        self._level_decided_at: float | None = None
        self.last_report: MaintenanceReport | None = None
        self.maintenance_runs = 0
        self.pressure_events = 0
        self.alerts_sent = 0
        self._baseline_rss_bytes: int | None = None
        now = clock()
        self._next_cache_cleanup = now + self.config.cache_cleanup_interval
        self._next_model_cleanup = now + self.config.model_cleanup_interval
        self._maintenance = PeriodicThread(
            self.perform_maintenance, lambda: self.config.maintenance_interval_seconds, name="memory-maintenance"
        )

    def _build_policy(self) -> PressurePolicy:
        c = self.config
        return PressurePolicy(
            c.gc_threshold,
            c.memory_threshold,
            c.aggressive_cleanup_threshold,
            margin_ratio=c.hysteresis_margin_ratio,
            target_ratio=c.pressure_target_ratio,
            gc_time_fraction=c.gc_time_fraction,
            clock=self._clock,
        )

    def _build_thrash_watch(self) -> ThrashWatch:
        c = self.config
        return ThrashWatch(
            memory_threshold=c.memory_threshold, margin_ratio=c.hysteresis_margin_ratio, passes=THRASH_PASSES
        )

    def _build_leak_detector(self) -> LeakDetector:
        c = self.config
        return LeakDetector(
            window_size=c.leak_window_samples,
            slope_threshold=c.leak_slope_threshold_mb_per_hour * _MIB,
            unit="hour",
            clock=self._clock,
        )

    def apply_config(self, config: MemoryConfig) -> None:
        """Switch to a new configuration at run time: limits, policy, idle time, cadence."""
        with self._lock:
            self.config = config
            self.budget.set_limit(config.cache_size_limit_bytes)
            self.models.idle_seconds = config.model_idle_seconds
            if self.probe is self._own_probe:
                self.probe.process_limit_bytes = config.process_memory_limit_bytes
            self.policy = self._build_policy()
            self.thrash_watch = self._build_thrash_watch()
            self.level_reading = self._level_decided_at = None
            self.leaks = self._build_leak_detector()
            # A shorter interval takes effect now, not after the pass scheduled under the old one.
            now = self._clock()
            self._next_cache_cleanup = min(self._next_cache_cleanup, now + config.cache_cleanup_interval)
            self._next_model_cleanup = min(self._next_model_cleanup, now + config.model_cleanup_interval)

    # ---------------------------------------------------------------- caches

    def register_cache(
        self,
        name: str,
        max_size: int | None = None,
        ttl_seconds: float | None = None,
        max_bytes: int | None = None,
        *,
        priority: int = 0,
        evictable: bool = True,
    ) -> ManagedCache:
        """Create (or return the existing) cache `name` under the global budget.

        Lower `priority` is shrunk first under pressure; a cache that is not `evictable` is left
        alone by the pressure tiers (it still obeys its own limits and the budget).
        """
        validation.text("name", name)
        with self._lock:
            slot = self._slots.get(name)
            if slot is not None:
                return slot.cache
            cache = ManagedCache(
                max_size=self.config.max_cache_entries if max_size is None else max_size,
                ttl_seconds=self.config.cache_ttl_seconds if ttl_seconds is None else ttl_seconds,
                max_bytes=max_bytes,
                name=name,
                clock=self._clock,
            )
            self._adopt(name, cache, priority, evictable)
            return cache

    def add_cache(self, cache: ManagedCache, *, priority: int = 0, evictable: bool = True) -> None:
        """Put an existing cache under management (and the global budget) by its name."""
        with self._lock:
            if cache.name in self._slots and self._slots[cache.name].cache is not cache:
                raise ValueError(f"a different cache named {cache.name!r} is already registered")
            self._adopt(cache.name, cache, priority, evictable)

    def _adopt(self, name: str, cache: ManagedCache, priority: int, evictable: bool) -> None:
        listener = functools.partial(self._watch_evicted, name)
        self._slots[name] = _CacheSlot(cache, priority, evictable, listener)
        self.budget.attach(cache)
        cache.add_listener(listener)

    def unregister_cache(self, name: str) -> bool:
        with self._lock:
            slot = self._slots.pop(name, None)
        if slot is None:
            return False
        self.budget.detach(slot.cache)
        slot.cache.remove_listener(slot.listener)
        return True

    def get_cache(self, name: str) -> ManagedCache | None:
        slot = self._slots.get(name)
        return None if slot is None else slot.cache

    @property
    def caches(self) -> dict[str, ManagedCache]:
        with self._lock:
            return {name: slot.cache for name, slot in self._slots.items()}

    @property
    def cache_bytes(self) -> int:
        return self.budget.used_bytes

    def _watch_evicted(self, cache_name: str, key: Any, value: Any, cause: RemovalCause) -> None:
        # Only what the cache dropped on its own: a popped value goes back to its caller and a
        # replaced one may be the new value again. The flag is read at every eviction so that
        # apply_config can switch tracking on and off.
        if self.config.track_evicted_values and cause in _EVICTION_CAUSES:
            self.release_watch.watch(f"cache {cache_name!r}: evicted {key!r} ({cause.value})", value)

    # -------------------------------------------------------------- readings

    def read_memory(self) -> MemoryReading:
        reading = self.probe.read()
        self.last_reading = reading
        if self._baseline_rss_bytes is None and reading.rss_bytes is not None:
            self._baseline_rss_bytes = reading.rss_bytes - self.cache_bytes - self.models.loaded_bytes
        return reading

    def unmanaged_bytes(self, reading: MemoryReading) -> int | None:
        """RSS not explained by caches, loaded models or the baseline at start."""
        if reading.rss_bytes is None or self._baseline_rss_bytes is None:
            return None
        return reading.rss_bytes - self.cache_bytes - self.models.loaded_bytes - self._baseline_rss_bytes

    # ----------------------------------------------------------- maintenance

    def perform_maintenance(self) -> MaintenanceReport:
        """One pass: pressure tier, expiry and idle models when due, leak checks. Cheap when idle."""
        started = time.perf_counter()
        now = self._clock()
        reading = self.read_memory()
        with self._lock:
            cache_bytes_before, model_bytes_before = self.cache_bytes, self.models.loaded_bytes
            # Without a usage figure there is no tier to act on; the cadence work below still runs.
            # Assessed under the lock, so that level_reading is the reading of policy.last_decision.
            decision = (
                None
                if reading.usage_ratio is None
                else self.policy.assess(
                    reading.usage_ratio,
                    limit_bytes=_limiting_limit_bytes(reading),
                    managed_bytes=cache_bytes_before + model_bytes_before,
                )
            )
            level = self.policy.level if decision is None else decision.level
            report = MaintenanceReport(timestamp=time.time(), level=level, usage_ratio=reading.usage_ratio)
            if decision is not None:
                self.level_reading, self._level_decided_at = reading, now
                self._apply_decision(decision, reading, report)
                self._watch_thrashing(decision, reading, report, cache_bytes_before, model_bytes_before)
            if now >= self._next_cache_cleanup:
                self._next_cache_cleanup = now + self.config.cache_cleanup_interval
                report.expired_entries = self.cleanup_expired()
            if now >= self._next_model_cleanup:
                self._next_model_cleanup = now + self.config.model_cleanup_interval
                self._unload(report, self.models.unload_idle)
                report.not_released = self.models.check_released() + self.release_watch.check()
        working_set = reading.working_set_bytes if reading.working_set_bytes is not None else reading.rss_bytes
        unmanaged = None
        if working_set is not None:
            managed = self.cache_bytes + self.models.loaded_bytes
            self.leaks.observe(now, working_set, managed)
            report.leak_suspected = self.leaks.report().suspected
            unmanaged = working_set - managed
        # Follows the per-cycle trend; opens a diagnosis window when a leak is confirmed, counts and closes it.
        self.diagnoser.on_pass(report.leak_suspected, unmanaged)
        self.maintenance_runs += 1
        report.seconds = time.perf_counter() - started
        self.last_report = report
        return report

    def _apply_decision(self, decision: PressureDecision, reading: MemoryReading, report: MaintenanceReport) -> None:
        if decision.level >= PressureLevel.PRESSURE and decision.level > decision.previous:
            self.pressure_events += 1
        if decision.clear_caches:
            report.cache_bytes_freed += self.clear_caches()
        elif decision.shrink_bytes:
            report.cache_bytes_freed += self.shrink_caches(decision.shrink_bytes)
        if decision.unload_all_models:
            self._unload(report, self.models.unload_all)
        elif decision.unload_idle_models:
            self._unload(report, self.models.unload_idle)
        if decision.collect_garbage:
            result = collect_garbage()
            self.policy.record_gc(self._clock() - result.seconds, result.seconds)
            report.gc_collected, report.gc_seconds = result.collected, result.seconds
        if decision.alert:
            self._alert(decision, reading, report)

    def _watch_thrashing(
        self,
        decision: PressureDecision,
        reading: MemoryReading,
        report: MaintenanceReport,
        cache_bytes_before: int,
        model_bytes_before: int,
    ) -> None:
        """Feed the pass to the thrash watch; say once when thrashing starts, and when it stops."""
        cache_freed, model_freed = report.cache_bytes_freed, report.model_bytes_freed
        floor_bytes = None
        if decision.level >= PressureLevel.PRESSURE and (cache_freed or model_freed):
            floor_bytes = self._usage_after_clearing(reading)
        verdict = self.thrash_watch.observe(
            ClearingPass(
                decision.level,
                cache_bytes_before,
                model_bytes_before,
                cache_freed,
                model_freed,
                floor_bytes=floor_bytes,
                limit_bytes=_limiting_limit_bytes(reading),
                limit_source=None if reading.limiting is None else reading.limiting.source,
            )
        )
        if verdict.started:
            self._alert_thrashing(verdict.thrashing)
        elif verdict.stopped:
            logger.info(
                "memory budget no longer thrashing: %s at %.0f%% of %s",
                decision.level.name,
                100 * decision.usage_ratio,
                _LIMIT_NAMES[None if reading.limiting is None else reading.limiting.source],
            )

    def _usage_after_clearing(self, reading: MemoryReading) -> int | None:
        """The limiting figure again, after the tiers ran: what the process uses without what they freed."""
        after = self.probe.read()
        if reading.limiting is None:  # a reading without usages (a stand-in probe): the old measure
            return after.working_set_bytes if after.working_set_bytes is not None else after.rss_bytes
        usage = after.usage(reading.limiting.source)
        return None if usage is None else usage.used_bytes

    def _alert_thrashing(self, thrashing: Thrashing) -> None:
        details = {
            "kind": "thrashing",
            "level": thrashing.level.name,
            "passes": thrashing.passes,
            "limiting": thrashing.limit_source,
            "limit_bytes": thrashing.limit_bytes,
            "floor_bytes": thrashing.floor_bytes,
            "cache_reloaded_bytes": thrashing.cache_reloaded_bytes,
            "model_reloaded_bytes": thrashing.model_reloaded_bytes,
            "needed_bytes": thrashing.needed_bytes,
            "stopping_limit_bytes": thrashing.stopping_limit_bytes,
            "memory_threshold": thrashing.memory_threshold,
            "leave_ratio": thrashing.leave_ratio,
        }
        self._send_alert(describe_thrashing(thrashing), details)

    def _unload(self, report: MaintenanceReport, unload: Callable[[], int]) -> None:
        loaded_before = sum(1 for record in self.models.records() if record.loaded)
        report.model_bytes_freed += unload()
        report.models_unloaded += loaded_before - sum(1 for record in self.models.records() if record.loaded)

    def cleanup_expired(self) -> int:
        """Drop expired entries from every cache; returns how many."""
        return sum(slot.cache.cleanup_expired() for slot in list(self._slots.values()))

    def shrink_caches(self, bytes_to_free: int) -> int:
        """Free at least `bytes_to_free` from evictable caches, lowest priority first, coldest first."""
        freed = 0
        for priority in sorted({slot.priority for slot in self._slots.values()}):
            group = [s.cache for s in self._slots.values() if s.priority == priority and s.evictable]
            while freed < bytes_to_free:
                coldest = min(
                    ((c.coldest_access_time(), i) for i, c in enumerate(group) if len(c)),
                    default=None,
                )
                if coldest is None:
                    break
                freed += group[coldest[1]].evict_coldest(RemovalCause.PRESSURE)
            if freed >= bytes_to_free:
                break
        return freed

    def clear_caches(self) -> int:
        """Empty every evictable cache (the critical tier); returns the bytes freed."""
        return sum(s.cache.clear(RemovalCause.PRESSURE) for s in list(self._slots.values()) if s.evictable)

    def add_alert_callback(self, callback: AlertCallback) -> None:
        self._alert_callbacks.append(callback)

    def _alert(self, decision: PressureDecision, reading: MemoryReading, report: MaintenanceReport) -> None:
        source = None if reading.limiting is None else reading.limiting.source
        limit_bytes = _limiting_limit_bytes(reading)
        details = {
            "kind": "pressure",
            "level": decision.level.name,
            "usage_ratio": reading.usage_ratio,
            "limiting": source,
            "working_set_bytes": reading.working_set_bytes,
            "rss_bytes": reading.rss_bytes,
            "limit_bytes": limit_bytes,
            "cache_bytes_freed": report.cache_bytes_freed,
            "model_bytes_freed": report.model_bytes_freed,
        }
        message = (
            f"memory {decision.level.name} at {reading.usage_ratio:.0%} of {_LIMIT_NAMES[source]}: "
            f"rss {_mib(reading.rss_bytes)}, working set {_mib(reading.working_set_bytes)}, "
            f"limit {_mib(limit_bytes)}; freed {_mib(report.cache_bytes_freed)} of caches and "
            f"{_mib(report.model_bytes_freed)} of models"
        )
        self._send_alert(message, details)

    def _send_alert(self, message: str, details: dict[str, Any]) -> None:
        logger.warning(message)
        self.alerts_sent += 1
        for callback in list(self._alert_callbacks):
            try:
                callback(message, details)
            except Exception:
                logger.exception("memory alert callback failed")

    def _on_model_leak(self, name: str, size_bytes: int | None) -> None:
        logger.warning("model %r (%s) was unloaded but is still referenced elsewhere", name, _mib(size_bytes))

    def diagnose(self, seconds: float = 10.0, *, top: int = 10) -> list[AllocationGrowth]:
        """Top growing allocation sites over a short tracemalloc window (slows the process meanwhile)."""
        return diagnose(seconds, top=top)

    # ------------------------------------------------------- leak diagnosis

    def note_cycle(self) -> None:
        """Count one cycle of the caller's work, so a diagnosis reports growth per cycle (else per maintenance pass)."""
        self.cycles += 1

    def _unmanaged_now(self) -> int | None:
        """Working set (RSS outside a cgroup) minus cache and model bytes: the figure the leak detector follows."""
        reading = self.probe.read()
        working_set = reading.working_set_bytes if reading.working_set_bytes is not None else reading.rss_bytes
        return None if working_set is None else working_set - self.cache_bytes - self.models.loaded_bytes

    def _managed_values(self) -> Iterator[tuple[Any, int]]:
        """Every cached value with its accounted size (what a diagnosis takes out of the growth it names)."""
        for slot in list(self._slots.values()):
            for entry in slot.cache.cache.values():
                yield entry.value, entry.size_bytes

    def _on_diagnosis(self, diagnosis: LeakDiagnosis) -> None:
        """Deliver a diagnosis: the JSON file first (its path goes in the message), then the warning and alerts."""
        message = diagnosis.message
        path = None
        if self.report_dir is not None:
            try:
                payload = {"kind": "leak-diagnosis", "pid": os.getpid(), **diagnosis.to_dict()}
                path = self.last_diagnosis_path = write_json_report(self.report_dir, "leak-diagnosis", payload)
                message += f"; report: {path}"
            except OSError as error:
                message += f"; the report could not be written to {self.report_dir}: {error}"
        if diagnosis.verdict == Verdict.NO_GROWTH:
            logger.info(message)
            return
        details = {
            "kind": "leak_diagnosis",
            "verdict": diagnosis.verdict,
            # Lines are named only when Python allocations explain the growth.
            "sites": [site.site for site in diagnosis.sites] if diagnosis.verdict == Verdict.PYTHON else [],
            "unmanaged_bytes_per_cycle": diagnosis.unmanaged_bytes_per_cycle,
            "traced_bytes_per_cycle": diagnosis.traced_bytes_per_cycle,
            "cycle_unit": diagnosis.cycle_unit,
            "report_path": None if path is None else str(path),
        }
        self._send_alert(message, details)

    def leak_stats(self) -> dict[str, Any]:
        """The leak detector's verdict, the diagnosis windows' state and the last diagnosis (JSON types)."""
        leak = self.leaks.report()
        last = self.diagnoser.last
        return {
            "suspected": leak.suspected,
            "slope_bytes_per_hour": leak.slope_bytes_per_unit,
            "working_set_slope_bytes_per_hour": leak.working_set_slope_bytes_per_unit,
            "unmanaged_bytes": leak.unmanaged_bytes,
            "windows_above": leak.windows_above,
            "samples": leak.samples,
            "diagnosis": self.diagnoser.state(),
            "last_diagnosis": None if last is None else last.to_dict(),
            "last_report_path": None if self.last_diagnosis_path is None else str(self.last_diagnosis_path),
        }

    def write_report(self, directory: str | os.PathLike[str] | None = None) -> Path:
        """Write the memory report (reading, caches, models, leak state with the last diagnosis's top
        sites and growing types, a census of the most numerous types) as JSON; returns its path.

        `directory` defaults to `report_dir`. Walks every GC-tracked object once for the census.
        """
        folder = directory if directory is not None else self.report_dir
        if folder is None:
            raise ValueError("write_report needs a directory: pass one or give the manager a report_dir")
        return write_json_report(folder, "memory-report", memory_report(self))

    def install_report_signal(
        self,
        report_dir: str | os.PathLike[str] | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        signum: int = signal.SIGUSR1,
    ) -> ReportSignal:
        """Make `signum` (SIGUSR1) write the memory report to `report_dir` and log its path.

        `report_dir` also becomes where leak diagnoses are written. Call from the main thread, or
        give the running asyncio loop (its `add_signal_handler` is used). `uninstall()` on the
        returned handle restores the previous handler.
        """
        if report_dir is not None:
            self.report_dir = Path(report_dir)
        if self.report_dir is None:
            raise ValueError("install_report_signal needs a report_dir: pass one or give the manager a report_dir")
        return ReportSignal(self, self.report_dir, signum=signum, loop=loop)

    # -------------------------------------------------------- background thread

    def start(self) -> None:
        """Start the daemon maintenance thread (no-op when it is running)."""
        self._maintenance.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the maintenance thread and end an open diagnosis window; returns once the thread is gone."""
        self._maintenance.stop(timeout)
        self.diagnoser.abandon("the memory manager stopped")

    @property
    def running(self) -> bool:
        return self._maintenance.running

    # ------------------------------------------------------------------ stats

    def get_memory_stats(self) -> dict[str, Any]:
        """Readings, caches, models and counters; O(number of caches), never walks the heap."""
        reading = self.read_memory()
        caches = {name: slot.cache.stats() for name, slot in list(self._slots.items())}
        records = self.models.records()
        leak = self.leaks.report()
        thrashing = self.thrash_watch.thrashing
        return {
            "timestamp": time.time(),
            "reading": reading,
            "pressure_level": self.policy.level.name,
            "pressure": self._pressure_stats(reading),
            "limits": limit_stats(reading),
            "thrashing": None if thrashing is None else self._thrashing_stats(thrashing),
            "usage_ratio": reading.usage_ratio,
            "limit_bytes": reading.limit_bytes,
            "unmanaged_bytes": self.unmanaged_bytes(reading),
            "cache_bytes": sum(s["total_bytes"] for s in caches.values()),
            "cache_budget_bytes": self.budget.max_bytes,
            "cache_entries": sum(s["entries"] for s in caches.values()),
            "caches": caches,
            "models": {r.name: {"loaded": r.loaded, "size_bytes": r.size_bytes, "pinned": r.pinned} for r in records},
            "model_bytes": self.models.loaded_bytes,
            "maintenance_runs": self.maintenance_runs,
            "pressure_events": self.pressure_events,
            "alerts_sent": self.alerts_sent,
            "leak_suspected": leak.suspected,
            "leak_slope_bytes_per_hour": leak.slope_bytes_per_unit,
            "leak": self.leak_stats(),
        }

    def _pressure_stats(self, reading: MemoryReading) -> dict[str, Any]:
        """The level with the figures it was computed from, and the level this reading would lead to.

        The level is the latest pass's, decided on that pass's reading: a newer reading beside it
        may well call for another one (the next pass moves there), and hysteresis holds a level
        until the ratio is a margin below the level's threshold.
        """
        policy = self.policy
        decision = policy.last_decision
        decided_by = None
        if decision is not None and self.level_reading is not None and self._level_decided_at is not None:
            limiting = self.level_reading.limiting
            decided_by = {
                "usage_ratio": decision.usage_ratio,
                "limiting": None if limiting is None else limiting.source,
                "used_bytes": None if limiting is None else limiting.used_bytes,
                "limit_bytes": _limiting_limit_bytes(self.level_reading),
                "seconds_ago": self._clock() - self._level_decided_at,
            }
        held = decision is not None and decision.held_by_hysteresis
        return {
            "level": policy.level.name,
            "decided_by": decided_by,
            "thresholds": {level.name: ratio for level, ratio in sorted(policy.thresholds.items())},
            "held_by_hysteresis": held,
            # Held: the level is left once the ratio falls below this (its threshold minus the margin).
            "held_until_below_ratio": policy.thresholds[policy.level] - policy.margin_ratio if held else None,
            "hysteresis_margin_ratio": policy.margin_ratio,
            "level_of_this_reading": None if reading.usage_ratio is None else policy.classify(reading.usage_ratio).name,
        }

    @staticmethod
    def _thrashing_stats(thrashing: Thrashing) -> dict[str, Any]:
        return {
            "level": thrashing.level.name,
            "passes": thrashing.passes,
            "limiting": thrashing.limit_source,
            "limit_bytes": thrashing.limit_bytes,
            "floor_bytes": thrashing.floor_bytes,
            "cache_reloaded_bytes": thrashing.cache_reloaded_bytes,
            "model_reloaded_bytes": thrashing.model_reloaded_bytes,
            "stopping_limit_bytes": thrashing.stopping_limit_bytes,
        }

    @contextmanager
    def memory_monitoring(self, label: str) -> Iterator[None]:
        """Record the duration and RSS change of the block in the bounded `history`."""
        rss_before = self.probe.rss_bytes()
        started_at, started = time.time(), self._clock()
        try:
            yield
        finally:
            rss_after = self.probe.rss_bytes()
            delta = 0 if rss_before is None or rss_after is None else rss_after - rss_before
            self.history.append(MonitoringRecord(label, started_at, self._clock() - started, delta))


def _limiting_limit_bytes(reading: MemoryReading) -> int | None:
    """The limit the usage ratio was measured against; the tightest limit where no source is named."""
    if reading.limiting is not None and reading.limiting.limit_bytes is not None:
        return reading.limiting.limit_bytes
    return reading.limit_bytes


def limit_stats(reading: MemoryReading) -> dict[str, Any]:
    """Each limit beside the memory it bounds (process RSS, cgroup working set, host usage), and the limiting one.

    A figure is listed even without its limit, so the process's and the cgroup's are always both shown.
    """

    def figure(usage: LimitUsage | None, measure: str, used_bytes: int | None) -> dict[str, Any]:
        if usage is None:
            return {"measure": measure, "used_bytes": used_bytes, "limit_bytes": None, "ratio": None}
        return {
            "measure": measure, "used_bytes": usage.used_bytes, "limit_bytes": usage.limit_bytes, "ratio": usage.ratio
        }

    host = reading.usage("host") or reading.usage("system_percent")
    return {
        "process": figure(reading.usage("process"), "rss", reading.rss_bytes),
        "cgroup": figure(reading.usage("cgroup"), "working_set", reading.working_set_bytes),
        "host": figure(host, "used", None),
        "limiting": None if reading.limiting is None else reading.limiting.source,
    }


def describe_thrashing(thrashing: Thrashing) -> str:
    """The warning for a thrashing budget: what is cleared and reloaded, against which limit, and what would stop it."""
    source = thrashing.limit_source
    message = (
        f"memory budget thrashing: {thrashing.passes} maintenance passes at up to {thrashing.level.name} cleared "
        f"caches and models that were loaded again since the previous clear, and usage never fell below "
        f"PRESSURE in between. "
        f"Limit: {_LIMIT_NAMES[source]}, {_mib(thrashing.limit_bytes)}; {_MEASURES.get(source, 'usage')} after "
        f"clearing {_mib(thrashing.floor_bytes)} (what the process needs without caches); reloaded between clears: "
        f"{_mib(thrashing.cache_reloaded_bytes)} of caches, {_mib(thrashing.model_reloaded_bytes)} of models. "
    )
    stopping_bytes = thrashing.stopping_limit_bytes
    if stopping_bytes is None:
        return message + "No limit in bytes to size one that would stop it: the host's percent used decides."
    stopping_mib = stopping_bytes // _MIB
    limit = {
        "process": f"process_memory_limit_mb: {stopping_mib} or more (or no process limit)",
        "cgroup": f"a cgroup memory limit of {stopping_mib} MiB or more",
        "host": f"{stopping_mib} MiB of host memory or more at today's other use",
    }.get(source, f"a limit of {stopping_mib} MiB or more")
    return message + (
        f"With {limit}, the {_mib(thrashing.needed_bytes)} it reloads to stays below "
        f"{thrashing.leave_ratio:.0%} (the PRESSURE threshold, {thrashing.memory_threshold:.0%}, less the "
        f"hysteresis margin) and the clearing stops."
    )
