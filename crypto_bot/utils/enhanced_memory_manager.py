"""The seed-compatible memory API: an adapter over a `crypto_bot.memory.MemoryManager` it holds.

Existing bot code imports these names and relies on their behaviour: `ml_models` records whose
`last_used` (epoch seconds) the code may write, `check_memory_pressure()` reading
`psutil.virtual_memory` at call time, seed-shaped stats and maintenance dicts, the seed's extra
pressure response (every evictable cache halved after the manager's own tiers) and one
process-wide manager. Nothing on the bot's path imports this module: the bot takes a
`MemoryManager` built from its settings, which applies one policy. New code should do the same.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from crypto_bot.memory import CacheEntry, ManagedCache, MemoryManager, MemoryProbe
from crypto_bot.memory import MemoryConfig as StrictMemoryConfig
from crypto_bot.memory.periodic import PeriodicThread
from crypto_bot.memory.reclaim import collect_garbage
from crypto_bot.memory.units import MIB as _MIB

logger = logging.getLogger(__name__)

__all__ = [
    "CacheEntry",
    "EnhancedMemoryManager",
    "ManagedCache",
    "MemoryConfig",
    "get_enhanced_memory_manager",
    "reset_enhanced_memory_manager",
]


class MemoryConfig(StrictMemoryConfig):
    """Seed-compatible config: an invalid value logs a warning naming the key and uses the default."""

    strict = False


class EnhancedMemoryManager:
    """The seed's manager API, adapting the `MemoryManager` it holds (`manager`).

    The rest of MemoryManager's public API (`caches`, `models`, `policy`, `budget`, `config`,
    `read_memory`, `apply_config`, `memory_monitoring`, ...) is the held manager's. Its own thread
    would run only the manager's pass, so the facade runs a thread of its own for the seed's pass.
    """

    manager: MemoryManager
    ml_models: dict[str, dict[str, Any]]
    cleanup_count: int
    memory_pressure_events: int

    def __init__(
        self,
        config: StrictMemoryConfig | None = None,
        *,
        probe: MemoryProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.manager = MemoryManager(config if config is not None else MemoryConfig(), probe=probe, clock=clock)
        self.ml_models = {}
        self.cleanup_count = 0
        self.memory_pressure_events = 0
        self._clock = clock
        self._last_gc_at = clock()
        self._last_gc_seconds = 0.0
        self._evictable: set[str] = set()  # names of the caches the seed's pressure response halves
        self._lock = threading.Lock()
        self._maintenance = PeriodicThread(
            self.perform_maintenance, lambda: self.config.maintenance_interval_seconds, name="memory-maintenance"
        )

    def __getattr__(self, name: str) -> Any:
        # Reached only for names the facade does not define.
        if name.startswith("_") or name == "manager":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.manager, name)

    @property
    def probe(self) -> MemoryProbe:
        return self.manager.probe

    @probe.setter
    def probe(self, probe: MemoryProbe) -> None:
        self.manager.probe = probe

    # ------------------------------------------------------------- caches

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
        """MemoryManager.register_cache, noting whether the seed's pressure response may halve it."""
        cache = self.manager.register_cache(
            name, max_size, ttl_seconds, max_bytes, priority=priority, evictable=evictable
        )
        self._note_evictable(name, evictable)
        return cache

    def add_cache(self, cache: ManagedCache, *, priority: int = 0, evictable: bool = True) -> None:
        self.manager.add_cache(cache, priority=priority, evictable=evictable)
        self._note_evictable(cache.name, evictable)

    def unregister_cache(self, name: str) -> bool:
        self._evictable.discard(name)
        return self.manager.unregister_cache(name)

    def _note_evictable(self, name: str, evictable: bool) -> None:
        if evictable:
            self._evictable.add(name)
        else:
            self._evictable.discard(name)

    # ------------------------------------------------------------- models

    def register_ml_model(self, name: str, model: Any, size_estimate_mb: float = 100) -> None:
        """Track `model` under `name`; it stays until unregistered or cleaned up when idle."""
        now = time.time()
        self.ml_models[name] = {"model": model, "created": now, "last_used": now, "size_estimate_mb": size_estimate_mb}
        self.models.register(name, model, size_bytes=int(size_estimate_mb * _MIB), pinned=True)

    def update_ml_model_usage(self, name: str) -> None:
        record = self.ml_models.get(name)
        if record is not None:
            record["last_used"] = time.time()
            if name in self.models:
                self.models.touch(name)

    def unregister_ml_model(self, name: str) -> bool:
        removed = self.ml_models.pop(name, None) is not None
        if name in self.models:
            self.models.unregister(name)
        return removed

    def _cleanup_ml_models(self, aggressive: bool = False) -> int:
        """Remove records idle longer than the idle limit (shorter when aggressive); returns how many."""
        idle_limit = self.config.model_idle_seconds
        if aggressive:
            idle_limit = min(idle_limit, self.config.model_cleanup_interval)
        cutoff = time.time() - idle_limit
        stale = [name for name, record in list(self.ml_models.items()) if record.get("last_used", 0) < cutoff]
        for name in stale:
            self.unregister_ml_model(name)
        return len(stale)

    # ----------------------------------------------------------- pressure

    def check_memory_pressure(self) -> bool:
        """True when the system, the container or the process exceeds memory_threshold."""
        threshold = self.config.memory_threshold
        system_percent = psutil.virtual_memory().percent
        reading = self.read_memory()
        return system_percent / 100 > threshold or (reading.usage_ratio is not None and reading.usage_ratio > threshold)

    def _cleanup_caches(self, aggressive: bool = False) -> int:
        """Drop expired entries; when aggressive also shrink every evictable cache to half. Returns entries removed."""
        removed = self.manager.cleanup_expired()
        if aggressive:
            for cache in [cache for name, cache in self.manager.caches.items() if name in self._evictable]:
                before = len(cache)
                cache.shrink_to(cache.total_bytes // 2)
                removed += before - len(cache)
        return removed

    def _handle_memory_pressure(self, results: dict[str, Any]) -> None:
        """Shrink caches and drop idle model records, recording what was freed in `results`."""
        self.memory_pressure_events += 1
        results["cache_cleanup"] = results.get("cache_cleanup", 0) + self._cleanup_caches(aggressive=True)
        results["ml_cleanup"] = results.get("ml_cleanup", 0) + self._cleanup_ml_models(aggressive=True)
        if self.should_force_gc():
            results["gc_collected"] = results.get("gc_collected", 0) + self.force_garbage_collection()

    def should_force_gc(self) -> bool:
        """True at most once per model_cleanup_interval, or whenever memory is above gc_threshold.

        Never more often than the GC time budget allows (`gc_time_fraction` of wall time): under
        steady pressure a full collection on every pass would take the CPU from trading.
        """
        since_last = self._clock() - self._last_gc_at
        if since_last < self._last_gc_seconds / self.config.gc_time_fraction:
            return False
        if since_last >= self.config.model_cleanup_interval:
            return True
        reading = self.last_reading
        return reading is not None and reading.usage_ratio is not None and reading.usage_ratio > self.config.gc_threshold

    def force_garbage_collection(self) -> int:
        self._last_gc_at = self._clock()
        result = collect_garbage()
        self._last_gc_seconds = result.seconds
        return result.collected

    # -------------------------------------------------------- maintenance

    def perform_maintenance(self) -> dict[str, Any]:
        """One pass of the manager's maintenance plus the seed's steps; never raises."""
        results: dict[str, Any] = {
            "timestamp": time.time(),
            "cache_cleanup": 0,
            "ml_cleanup": 0,
            "gc_collected": 0,
            "memory_pressure": False,
        }
        try:
            report = self.manager.perform_maintenance()
            results["pressure_level"] = report.level.name
            results["cache_cleanup"] += report.expired_entries
            results["ml_cleanup"] += report.models_unloaded + self._cleanup_ml_models()
            results["gc_collected"] += report.gc_collected
            if self.check_memory_pressure():
                results["memory_pressure"] = True
                self._handle_memory_pressure(results)
            elif self.should_force_gc():
                results["gc_collected"] += self.force_garbage_collection()
            self.cleanup_count += 1
        except Exception as error:
            logger.exception("memory maintenance failed")
            results["error"] = str(error)
        return results

    def get_memory_stats(self) -> dict[str, Any]:
        """Seed-shaped statistics; on a failed reading still a dict, with "error"."""
        try:
            system = psutil.virtual_memory()
            stats = self.manager.get_memory_stats()
            stats.update(
                system_memory_percent=system.percent,
                system_memory_used_mb=system.used / _MIB,
                system_memory_total_mb=system.total / _MIB,
                process_memory_mb=(stats["reading"].rss_bytes or 0) / _MIB,
                caches_count=len(stats["caches"]),
                total_cache_size_mb=stats["cache_bytes"] / _MIB,
                total_cache_entries=stats["cache_entries"],
                ml_models_count=len(self.ml_models),
                ml_models_total_size_mb=sum(r.get("size_estimate_mb", 0) for r in self.ml_models.values()),
                cleanup_count=self.cleanup_count,
                memory_pressure_events=self.memory_pressure_events,
            )
            stats["reading"] = dataclasses.asdict(stats["reading"])
            return stats
        except Exception as error:
            logger.exception("reading memory statistics failed")
            return {"error": str(error), "timestamp": time.time()}

    # -------------------------------------------------------------- thread

    def start(self) -> None:
        """Start the daemon thread running the seed's maintenance pass (no-op when it is running)."""
        self._maintenance.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; returns once it is gone (at once unless a pass is running)."""
        self._maintenance.stop(timeout)

    @property
    def running(self) -> bool:
        return self._maintenance.running

    def start_background_cleanup(self) -> None:
        self.start()

    def stop_background_cleanup(self) -> None:
        self.stop()


_instance: EnhancedMemoryManager | None = None
_instance_lock = threading.Lock()


def get_enhanced_memory_manager(config: StrictMemoryConfig | None = None) -> EnhancedMemoryManager:
    """The process-wide manager; a different `config` is applied to the running instance."""
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = EnhancedMemoryManager(config)
            if _instance.config.enable_background_cleanup:
                _instance.start()
            return _instance
        changed = [] if config is None else sorted(
            key for key, value in config.to_dict().items() if getattr(_instance.config, key) != value
        )
        if changed:
            logger.info("applying new memory configuration to the running manager: %s", ", ".join(changed))
            _instance.apply_config(config)  # type: ignore[arg-type]
            if config.enable_background_cleanup and not _instance.running:
                _instance.start()
            elif not config.enable_background_cleanup and _instance.running:
                _instance.stop()
        return _instance


def reset_enhanced_memory_manager() -> None:
    """Stop the process-wide manager; the next `get_enhanced_memory_manager` builds a new one."""
    global _instance
    with _instance_lock:
        instance, _instance = _instance, None
    if instance is not None:
        instance.stop()
