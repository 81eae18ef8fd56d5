"""The seed-compatible facade `crypto_bot.utils.enhanced_memory_manager`: names, shapes and behaviours item by item.

`psutil.virtual_memory` is replaced by SystemMemory and the process/container view by FakeProbe, so
pressure is reached on demand; the process-wide singleton is reset around every test that touches it.
"""

from __future__ import annotations

import gc
import logging
import time
import weakref
from collections.abc import Iterator
from unittest.mock import Mock

import psutil
import pytest

import crypto_bot.memory as memory
from crypto_bot.memory import GcResult, MemoryManager
from crypto_bot.memory.config import DEFAULTS
from crypto_bot.utils import enhanced_memory_manager as facade_module
from crypto_bot.utils.enhanced_memory_manager import (
    CacheEntry,
    EnhancedMemoryManager,
    ManagedCache,
    MemoryConfig,
    get_enhanced_memory_manager,
    reset_enhanced_memory_manager,
)
from tests.memory.support import MIB, FakeClock, FakeProbe, Payload, fill

GIB = 1024 * MIB
SEED_STATS_KEYS = {
    "system_memory_percent",
    "system_memory_used_mb",
    "system_memory_total_mb",
    "process_memory_mb",
    "caches_count",
    "total_cache_size_mb",
    "total_cache_entries",
    "ml_models_count",
    "ml_models_total_size_mb",
    "cleanup_count",
    "memory_pressure_events",
    "timestamp",
    "caches",
}
SEED_MAINTENANCE_KEYS = {"timestamp", "cache_cleanup", "ml_cleanup", "gc_collected", "memory_pressure"}


class SystemMemory:
    """Replaces `psutil.virtual_memory`: a 16 GiB host at `percent` used."""

    def __init__(self, percent: float = 40.0) -> None:
        self.percent = percent

    def __call__(self) -> Mock:
        used = int(16 * GIB * self.percent / 100)
        return Mock(percent=self.percent, total=16 * GIB, available=16 * GIB - used, used=used)


@pytest.fixture
def system_memory(monkeypatch: pytest.MonkeyPatch) -> SystemMemory:
    system = SystemMemory()
    monkeypatch.setattr(psutil, "virtual_memory", system)
    return system


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def probe() -> FakeProbe:
    return FakeProbe(usage_ratio=0.3)


@pytest.fixture
def manager(system_memory: SystemMemory, probe: FakeProbe, clock: FakeClock) -> Iterator[EnhancedMemoryManager]:
    manager = EnhancedMemoryManager(MemoryConfig(enable_background_cleanup=False), probe=probe, clock=clock)
    yield manager
    manager.stop_background_cleanup()


@pytest.fixture
def singleton(system_memory: SystemMemory) -> Iterator[None]:
    reset_enhanced_memory_manager()
    yield
    reset_enhanced_memory_manager()


# ------------------------------------------------------------------ names and config


def test_seed_names_are_importable_from_the_facade() -> None:
    assert (ManagedCache, CacheEntry) == (memory.ManagedCache, memory.CacheEntry)
    assert issubclass(MemoryConfig, memory.MemoryConfig)
    assert callable(get_enhanced_memory_manager) and callable(reset_enhanced_memory_manager)
    assert set(facade_module.__all__) >= {
        "EnhancedMemoryManager",
        "ManagedCache",
        "MemoryConfig",
        "CacheEntry",
        "get_enhanced_memory_manager",
        "reset_enhanced_memory_manager",
    }


def test_the_facade_holds_a_memory_manager_rather_than_being_one(manager: EnhancedMemoryManager) -> None:
    assert not issubclass(EnhancedMemoryManager, MemoryManager)
    assert isinstance(manager.manager, MemoryManager)
    assert manager.policy is manager.manager.policy and manager.config is manager.manager.config


def test_the_held_managers_api_is_reachable_through_the_facade(manager: EnhancedMemoryManager) -> None:
    cache = manager.register_cache("quotes")
    assert manager.manager.get_cache("quotes") is cache and manager.caches == {"quotes": cache}
    replacement = FakeProbe(usage_ratio=0.55)
    manager.probe = replacement
    assert manager.manager.probe is replacement and manager.read_memory().usage_ratio == 0.55
    with pytest.raises(AttributeError):
        manager._slots  # noqa: B018 - the manager's private state is not the facade's


def test_memory_config_accepts_the_seed_keys_as_keywords() -> None:
    seed = {
        "memory_threshold": 0.85,
        "gc_threshold": 0.75,
        "cache_size_limit_mb": 200,
        "model_cleanup_interval": 120,
        "cache_cleanup_interval": 60,
        "max_cache_entries": 50,
        "cache_ttl_seconds": 30,
        "enable_background_cleanup": False,
        "aggressive_cleanup_threshold": 0.95,
    }
    config = MemoryConfig(**seed)
    assert {key: getattr(config, key) for key in seed} == seed


@pytest.mark.parametrize("key", ["memory_threshold", "gc_threshold", "aggressive_cleanup_threshold"])
def test_invalid_threshold_logs_a_warning_naming_the_key_and_uses_the_default(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        config = MemoryConfig(**{key: "invalid"})
    assert getattr(config, key) == DEFAULTS[key]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert key in warning.getMessage() and "'invalid'" in warning.getMessage()


def test_invalid_size_falls_back_to_the_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        config = MemoryConfig(cache_size_limit_mb=-5)
    assert config.cache_size_limit_mb == 500
    assert "cache_size_limit_mb" in caplog.text


def test_thresholds_out_of_order_fall_back_to_the_default_thresholds(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        config = MemoryConfig(gc_threshold=0.85, memory_threshold=0.8)
    assert (config.gc_threshold, config.memory_threshold, config.aggressive_cleanup_threshold) == (0.7, 0.8, 0.9)
    assert "gc_threshold <= memory_threshold" in caplog.text


def test_unknown_keys_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        config = MemoryConfig.from_mapping({"memory_treshold": 0.5, "gc_threshold": 0.6})
    assert (config.gc_threshold, config.memory_threshold) == (0.6, 0.8)
    assert "memory_treshold" in caplog.text


def test_a_low_seed_gc_threshold_still_builds_a_manager(system_memory: SystemMemory, probe: FakeProbe) -> None:
    config = MemoryConfig(gc_threshold=0.5, memory_threshold=0.6, enable_background_cleanup=False)
    manager = EnhancedMemoryManager(config, probe=probe)
    assert manager.policy.target_ratio < manager.policy.gc_threshold == 0.5


def test_manager_without_config_uses_the_lenient_defaults(system_memory: SystemMemory) -> None:
    manager = EnhancedMemoryManager()
    assert isinstance(manager.config, MemoryConfig)
    assert manager.config.to_dict() == DEFAULTS
    assert not manager.running


# ------------------------------------------------------------------ caches


def test_register_cache_defaults_to_a_thousand_entries_and_one_hour(manager: EnhancedMemoryManager) -> None:
    cache = manager.register_cache("quotes")
    assert isinstance(cache, ManagedCache)
    assert (cache.max_size, cache.ttl_seconds) == (1000, 3600)


def test_register_cache_without_limits_follows_the_config(system_memory: SystemMemory, probe: FakeProbe) -> None:
    config = MemoryConfig(max_cache_entries=50, cache_ttl_seconds=60, enable_background_cleanup=False)
    cache = EnhancedMemoryManager(config, probe=probe).register_cache("quotes")
    assert (cache.max_size, cache.ttl_seconds) == (50, 60)


def test_register_cache_takes_max_size_and_ttl_positionally(manager: EnhancedMemoryManager) -> None:
    cache = manager.register_cache("quotes", 10, 60)
    assert (cache.max_size, cache.ttl_seconds) == (10, 60)


def test_get_cache_and_caches_find_registered_caches(manager: EnhancedMemoryManager) -> None:
    cache = manager.register_cache("quotes")
    assert manager.get_cache("quotes") is cache
    assert manager.get_cache("missing") is None
    assert manager.caches == {"quotes": cache}


# ------------------------------------------------------------------ ML models


def test_register_ml_model_keeps_a_seed_shaped_record(manager: EnhancedMemoryManager) -> None:
    model = Payload()
    before = time.time()
    manager.register_ml_model("signal", model, size_estimate_mb=25)
    record = manager.ml_models["signal"]
    assert set(record) == {"model", "created", "last_used", "size_estimate_mb"}
    assert (record["model"], record["size_estimate_mb"]) == (model, 25)
    assert before <= record["created"] == record["last_used"] <= time.time()


def test_size_estimate_defaults_to_100_mb(manager: EnhancedMemoryManager) -> None:
    manager.register_ml_model("signal", Payload())
    assert manager.ml_models["signal"]["size_estimate_mb"] == 100


@pytest.mark.parametrize("model", [{"weights": [1, 2]}, Mock(), [0.1, 0.2], lambda x: x, object()], ids=repr)
def test_any_object_can_be_a_model(manager: EnhancedMemoryManager, model: object) -> None:
    manager.register_ml_model("signal", model)
    assert manager.ml_models["signal"]["model"] is model


def test_update_ml_model_usage_moves_last_used_to_now(manager: EnhancedMemoryManager) -> None:
    manager.register_ml_model("signal", Payload())
    manager.ml_models["signal"]["last_used"] = 0.0
    before = time.time()
    manager.update_ml_model_usage("signal")
    assert manager.ml_models["signal"]["last_used"] >= before


def test_update_of_an_unknown_model_is_ignored(manager: EnhancedMemoryManager) -> None:
    manager.update_ml_model_usage("missing")
    assert manager.ml_models == {}


def test_unregister_ml_model_removes_the_record(manager: EnhancedMemoryManager) -> None:
    manager.register_ml_model("signal", Payload())
    assert manager.unregister_ml_model("signal") is True
    assert "signal" not in manager.ml_models
    assert manager.unregister_ml_model("signal") is False


def test_a_record_stays_after_every_outside_reference_is_dropped(manager: EnhancedMemoryManager) -> None:
    model = Payload()
    alive = weakref.ref(model)
    manager.register_ml_model("signal", model)
    del model
    gc.collect()
    assert "signal" in manager.ml_models
    assert manager.ml_models["signal"]["model"] is alive()


def test_cleanup_ml_models_removes_records_idle_beyond_the_limit(manager: EnhancedMemoryManager) -> None:
    manager.register_ml_model("stale", Payload())
    manager.register_ml_model("fresh", Payload())
    manager.ml_models["stale"]["last_used"] = time.time() - 7200
    assert manager._cleanup_ml_models() == 1
    assert list(manager.ml_models) == ["fresh"]


def test_aggressive_model_cleanup_also_removes_records_idle_beyond_the_model_cleanup_interval(
    manager: EnhancedMemoryManager,
) -> None:
    manager.register_ml_model("signal", Payload())
    manager.ml_models["signal"]["last_used"] = time.time() - 600  # model_cleanup_interval is 300 s
    assert manager._cleanup_ml_models() == 0
    assert manager._cleanup_ml_models(aggressive=True) == 1


def test_maintenance_honours_a_written_last_used(manager: EnhancedMemoryManager) -> None:
    manager.register_ml_model("stale", Payload())
    manager.ml_models["stale"]["last_used"] = time.time() - 7200
    results = manager.perform_maintenance()
    assert results["ml_cleanup"] == 1
    assert manager.ml_models == {}


# ------------------------------------------------------------------ memory pressure


def test_check_memory_pressure_reads_psutil_at_every_call(
    manager: EnhancedMemoryManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(psutil, "virtual_memory", SystemMemory(percent=50))
    assert manager.check_memory_pressure() is False
    monkeypatch.setattr(psutil, "virtual_memory", SystemMemory(percent=85))
    assert manager.check_memory_pressure() is True


def test_check_memory_pressure_sees_the_container_view(
    manager: EnhancedMemoryManager, system_memory: SystemMemory, probe: FakeProbe
) -> None:
    system_memory.percent = 10
    probe.usage_ratio = 0.9
    assert manager.check_memory_pressure() is True


def test_check_memory_pressure_is_false_when_every_view_is_below_the_threshold(
    manager: EnhancedMemoryManager, system_memory: SystemMemory, probe: FakeProbe
) -> None:
    system_memory.percent = 79
    probe.usage_ratio = 0.79
    assert manager.check_memory_pressure() is False


def test_handle_memory_pressure_leaves_a_full_cache_below_its_max(
    manager: EnhancedMemoryManager, clock: FakeClock
) -> None:
    cache = manager.register_cache("quotes", 10, 3600)
    fill(cache, clock, [f"k{i}" for i in range(10)], 1000)
    results: dict = {}
    manager._handle_memory_pressure(results)
    assert len(cache) < cache.max_size
    assert results["cache_cleanup"] == 10 - len(cache)
    assert manager.memory_pressure_events == 1


def test_cleanup_caches_drops_expired_entries(manager: EnhancedMemoryManager, clock: FakeClock) -> None:
    cache = manager.register_cache("quotes", 100, 10)
    fill(cache, clock, ["a", "b"], 100)
    clock.now += 20
    assert manager._cleanup_caches() == 2
    assert len(cache) == 0


def test_aggressive_cache_cleanup_halves_evictable_caches_and_spares_the_others(
    manager: EnhancedMemoryManager, clock: FakeClock
) -> None:
    quotes = manager.register_cache("quotes", 100, 3600)
    state = manager.register_cache("state", 100, 3600, evictable=False)
    for cache in (quotes, state):
        fill(cache, clock, [f"k{i}" for i in range(4)], 100)
    assert manager._cleanup_caches(aggressive=True) == 2
    assert (len(quotes), len(state)) == (2, 4)


def test_should_force_gc_when_usage_is_above_gc_threshold(manager: EnhancedMemoryManager, probe: FakeProbe) -> None:
    probe.usage_ratio = 0.75
    manager.read_memory()
    assert manager.should_force_gc() is True


def test_should_force_gc_once_per_model_cleanup_interval(manager: EnhancedMemoryManager, clock: FakeClock) -> None:
    manager.read_memory()
    assert manager.should_force_gc() is False
    clock.now += 300
    assert manager.should_force_gc() is True
    manager.force_garbage_collection()
    assert manager.should_force_gc() is False


def test_forced_collections_stay_within_the_gc_time_budget(
    manager: EnhancedMemoryManager, probe: FakeProbe, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(facade_module, "collect_garbage", lambda: GcResult(collected=7, seconds=2.0, trimmed=False))
    probe.usage_ratio = 0.95
    manager.read_memory()
    assert manager.force_garbage_collection() == 7
    clock.now += 39  # a 2 s collection may run again only after 2 / gc_time_fraction (0.05) = 40 s
    assert manager.should_force_gc() is False
    clock.now += 1
    assert manager.should_force_gc() is True


def test_force_garbage_collection_returns_the_objects_it_collected(manager: EnhancedMemoryManager) -> None:
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            cycle: list = []
            cycle.append(cycle)
        del cycle
        collected = manager.force_garbage_collection()
    finally:
        gc.enable()
    assert collected >= 5


# ------------------------------------------------------------------ stats


def test_get_memory_stats_has_the_seed_keys_and_figures(
    manager: EnhancedMemoryManager, clock: FakeClock, probe: FakeProbe
) -> None:
    fill(manager.register_cache("quotes"), clock, ["a", "b"], MIB)
    manager.register_ml_model("signal", Payload(), size_estimate_mb=25)
    stats = manager.get_memory_stats()
    assert set(stats) >= SEED_STATS_KEYS
    assert (stats["system_memory_percent"], stats["system_memory_total_mb"]) == (40.0, 16 * 1024)
    assert stats["system_memory_used_mb"] == pytest.approx(0.4 * 16 * 1024)
    assert stats["process_memory_mb"] == probe.rss / MIB
    assert (stats["caches_count"], stats["total_cache_entries"], stats["total_cache_size_mb"]) == (1, 2, 2.0)
    assert (stats["ml_models_count"], stats["ml_models_total_size_mb"]) == (1, 25)
    assert stats["caches"]["quotes"]["size"] == 2


def test_get_memory_stats_reports_a_failed_reading_under_error(
    manager: EnhancedMemoryManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise RuntimeError("no /proc/meminfo")

    monkeypatch.setattr(psutil, "virtual_memory", broken)
    stats = manager.get_memory_stats()
    assert stats["error"] == "no /proc/meminfo"
    assert isinstance(stats["timestamp"], float)


# ------------------------------------------------------------------ maintenance


def test_perform_maintenance_returns_the_seed_keys(manager: EnhancedMemoryManager) -> None:
    results = manager.perform_maintenance()
    assert set(results) >= SEED_MAINTENANCE_KEYS
    assert (results["memory_pressure"], results["cache_cleanup"], results["ml_cleanup"]) == (False, 0, 0)
    assert "error" not in results
    assert manager.cleanup_count == 1


def test_perform_maintenance_asks_check_memory_pressure_and_handles_pressure(
    manager: EnhancedMemoryManager, clock: FakeClock
) -> None:
    cache = manager.register_cache("quotes", 10, 3600)
    fill(cache, clock, [f"k{i}" for i in range(10)], 1000)
    manager.check_memory_pressure = lambda: True
    results = manager.perform_maintenance()
    assert results["memory_pressure"] is True
    assert len(cache) < 10
    assert manager.memory_pressure_events == 1


def test_perform_maintenance_never_raises_and_reports_the_failure(manager: EnhancedMemoryManager) -> None:
    def broken() -> bool:
        raise RuntimeError("reading failed")

    manager.check_memory_pressure = broken
    results = manager.perform_maintenance()
    assert results["error"] == "reading failed"
    assert set(results) >= SEED_MAINTENANCE_KEYS


# ------------------------------------------------------------------ thread and monitoring


def test_background_cleanup_starts_and_stops(manager: EnhancedMemoryManager) -> None:
    manager.start_background_cleanup()
    thread = manager._maintenance.thread
    assert manager.running
    manager.stop_background_cleanup()
    assert not manager.running
    assert not thread.is_alive()


def test_memory_monitoring_records_the_named_block(
    manager: EnhancedMemoryManager, clock: FakeClock, probe: FakeProbe
) -> None:
    with manager.memory_monitoring("analysis"):
        clock.now += 1.5
        probe.rss += MIB
    [record] = manager.history
    assert (record.label, record.seconds, record.rss_delta_bytes) == ("analysis", 1.5, MIB)


# ------------------------------------------------------------------ the process-wide instance


@pytest.mark.usefixtures("singleton")
def test_get_enhanced_memory_manager_returns_one_instance() -> None:
    assert get_enhanced_memory_manager() is get_enhanced_memory_manager()


@pytest.mark.usefixtures("singleton")
def test_default_singleton_runs_its_background_thread() -> None:
    manager = get_enhanced_memory_manager()
    assert manager.running
    assert manager._maintenance.thread.daemon


@pytest.mark.usefixtures("singleton")
def test_reset_stops_the_instance_and_the_next_call_builds_a_new_one() -> None:
    first = get_enhanced_memory_manager()
    thread = first._maintenance.thread
    reset_enhanced_memory_manager()
    assert not thread.is_alive()
    assert get_enhanced_memory_manager() is not first


@pytest.mark.usefixtures("singleton")
def test_a_different_config_is_applied_to_the_running_instance_and_logged(
    system_memory: SystemMemory, caplog: pytest.LogCaptureFixture
) -> None:
    manager = get_enhanced_memory_manager(MemoryConfig(enable_background_cleanup=False))
    manager.probe = FakeProbe(usage_ratio=0.1)
    system_memory.percent = 82
    assert manager.check_memory_pressure() is True
    with caplog.at_level(logging.INFO, logger=facade_module.__name__):
        same = get_enhanced_memory_manager(MemoryConfig(enable_background_cleanup=False, memory_threshold=0.85))
    assert same is manager
    assert manager.check_memory_pressure() is False
    assert manager.policy.memory_threshold == 0.85
    assert "memory_threshold" in caplog.text


@pytest.mark.usefixtures("singleton")
def test_the_same_config_again_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    config = MemoryConfig(enable_background_cleanup=False)
    manager = get_enhanced_memory_manager(config)
    with caplog.at_level(logging.INFO, logger=facade_module.__name__):
        assert get_enhanced_memory_manager(MemoryConfig(enable_background_cleanup=False)) is manager
    assert caplog.records == []


@pytest.mark.usefixtures("singleton")
def test_a_config_switching_background_cleanup_on_starts_the_thread() -> None:
    manager = get_enhanced_memory_manager(MemoryConfig(enable_background_cleanup=False))
    assert not manager.running
    get_enhanced_memory_manager(MemoryConfig(enable_background_cleanup=True))
    assert manager.running


@pytest.mark.usefixtures("singleton")
def test_a_config_switching_background_cleanup_off_stops_the_thread() -> None:
    manager = get_enhanced_memory_manager(MemoryConfig(enable_background_cleanup=True))
    thread = manager._maintenance.thread
    get_enhanced_memory_manager(MemoryConfig(enable_background_cleanup=False))
    assert not manager.running
    assert not thread.is_alive()
