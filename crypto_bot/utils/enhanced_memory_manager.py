"""The seed-compatible memory API: a thin facade over `crypto_bot.memory`.

Existing bot code imports these names and relies on their behaviour: `ml_models` records whose
`last_used` (epoch seconds) the code may write, `check_memory_pressure()` reading
`psutil.virtual_memory` at call time, seed-shaped stats and maintenance dicts, and one
process-wide manager. New code should use `crypto_bot.memory.MemoryManager` directly.
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


class EnhancedMemoryManager(MemoryManager):
    """The seed's manager API on top of `MemoryManager`."""

    def __init__(
        self,
        config: StrictMemoryConfig | None = None,
        *,
        probe: MemoryProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config if config is not None else MemoryConfig(), probe=probe, clock=clock)
        self.ml_models: dict[str, dict[str, Any]] = {}
        self.cleanup_count = 0
        self.memory_pressure_events = 0
        self._last_gc_at = clock()
        self._last_gc_seconds = 0.0

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
        removed = self.cleanup_expired()
        if aggressive:
            for cache in [slot.cache for slot in list(self._slots.values()) if slot.evictable]:
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

    def perform_maintenance(self) -> dict[str, Any]:  # type: ignore[override]
        """One pass of the core maintenance plus the seed's steps; never raises."""
        results: dict[str, Any] = {
            "timestamp": time.time(),
            "cache_cleanup": 0,
            "ml_cleanup": 0,
            "gc_collected": 0,
            "memory_pressure": False,
        }
        try:
            report = super().perform_maintenance()
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

    def get_memory_stats(self) -> dict[str, Any]:  # type: ignore[override]
        """Seed-shaped statistics; on a failed reading still a dict, with "error"."""
        try:
            system = psutil.virtual_memory()
            stats = super().get_memory_stats()
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
