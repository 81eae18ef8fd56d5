"""MemoryManager behaviour: the global cache budget, maintenance cadences, pressure tiers, the thread, stats, leaks.

Memory readings come from FakeProbe and time from FakeClock, so every tier is reached on demand and
nothing sleeps; only the background-thread tests run a real thread (always stopped in teardown).
The fakes live in support.py and the fixtures in conftest.py, shared with test_config.py and test_facade.py.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import random

import pytest

from crypto_bot.memory import manager as manager_module
from crypto_bot.memory.cache import ManagedCache
from crypto_bot.memory.config import MemoryConfig
from crypto_bot.memory.manager import MaintenanceReport, MemoryManager
from crypto_bot.memory.pressure import PressureLevel
from tests.fakes import FakeClock
from tests.memory.support import (
    KIB,
    LIMIT_BYTES,
    MIB,
    THREAD_WAIT_SECONDS,
    FakeProbe,
    ManagerFactory,
    PassCountingManager,
    Payload,
    fill,
    forbidden,
)

# ------------------------------------------------------------------ caches and the global budget


def test_register_cache_returns_the_existing_cache_for_a_known_name(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    first = manager.register_cache("quotes", max_size=10)
    assert manager.register_cache("quotes", max_size=99) is first
    assert first.max_size == 10


def test_register_cache_rejects_an_empty_name(make_manager: ManagerFactory) -> None:
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        make_manager().register_cache("")


def test_caches_maps_names_to_registered_caches(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    quotes = manager.register_cache("quotes")
    trades = manager.register_cache("trades")
    assert manager.caches == {"quotes": quotes, "trades": trades}
    assert manager.get_cache("quotes") is quotes
    assert manager.get_cache("missing") is None


def test_unregistered_cache_leaves_the_budget(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager()
    quotes = manager.register_cache("quotes")
    fill(quotes, clock, ["a"], 100)
    assert manager.unregister_cache("quotes") is True
    assert manager.cache_bytes == 0
    assert manager.unregister_cache("quotes") is False


def test_add_cache_puts_an_existing_cache_under_the_budget(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager(cache_size_limit_mb=1)
    cache = ManagedCache(name="external", ttl_seconds=None, clock=clock)
    fill(cache, clock, ["a", "b", "c"], 400 * KIB)
    manager.add_cache(cache)
    assert manager.get_cache("external") is cache
    assert cache.total_bytes <= MIB


def test_sum_of_cache_bytes_never_exceeds_the_global_budget(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager(cache_size_limit_mb=1)
    caches = [manager.register_cache(name) for name in ("quotes", "trades", "signals")]
    rng = random.Random(7)
    for i in range(500):
        clock.now += 1
        rng.choice(caches).put(i, Payload(), size_bytes=rng.randrange(1, 300 * KIB))
        assert manager.cache_bytes <= MIB
        assert manager.cache_bytes == sum(cache.total_bytes for cache in caches)


def test_put_past_the_budget_evicts_the_coldest_entry_across_caches(
    make_manager: ManagerFactory, clock: FakeClock
) -> None:
    manager = make_manager(cache_size_limit_mb=1)
    quotes = manager.register_cache("quotes")
    trades = manager.register_cache("trades")
    fill(quotes, clock, ["q1"], 400 * KIB)
    fill(trades, clock, ["t1"], 400 * KIB)
    clock.now += 1
    quotes.get("q1")  # q1 is now warmer than t1
    fill(quotes, clock, ["q2"], 400 * KIB)
    assert quotes.keys() == ["q1", "q2"]
    assert trades.keys() == []


def test_put_larger_than_the_budget_is_refused(make_manager: ManagerFactory) -> None:
    quotes = make_manager(cache_size_limit_mb=1).register_cache("quotes")
    with pytest.raises(ValueError, match="shared cache budget"):
        quotes.put("big", Payload(), size_bytes=2 * MIB)
    assert len(quotes) == 0


# ------------------------------------------------------------------ maintenance cadences


def test_maintenance_with_nothing_due_evicts_and_collects_nothing(
    make_manager: ManagerFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = make_manager(model_idle_seconds=50)
    quotes = manager.register_cache("quotes", ttl_seconds=10)
    fill(quotes, clock, ["a"], 100)
    manager.models.register("signal", Payload(), size_bytes=MIB)
    clock.now += 100  # the entry has expired and the model is idle, but neither cadence is due
    monkeypatch.setattr(gc, "collect", forbidden("gc.collect"))
    report = manager.perform_maintenance()
    freed = (report.expired_entries, report.cache_bytes_freed, report.models_unloaded, report.gc_collected)
    assert freed == (0, 0, 0, 0)
    assert len(quotes) == 1
    assert manager.models.record("signal").loaded


def test_expiry_runs_on_the_cache_cleanup_interval(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager(cache_cleanup_interval=600)
    start = clock.now
    quotes = manager.register_cache("quotes", ttl_seconds=10)
    fill(quotes, clock, ["a", "b"], 100)
    clock.now = start + 599
    assert manager.perform_maintenance().expired_entries == 0
    clock.now = start + 600
    assert manager.perform_maintenance().expired_entries == 2
    assert len(quotes) == 0


def test_idle_models_are_unloaded_on_the_model_cleanup_interval(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager(model_cleanup_interval=300, model_idle_seconds=100)
    start = clock.now
    manager.models.register("idle", Payload(), size_bytes=MIB)
    clock.now = start + 299
    assert manager.perform_maintenance().models_unloaded == 0
    clock.now = start + 300
    report = manager.perform_maintenance()
    assert (report.models_unloaded, report.model_bytes_freed) == (1, MIB)
    assert not manager.models.record("idle").loaded


def test_recently_used_models_stay_loaded_at_the_model_cadence(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager(model_cleanup_interval=300, model_idle_seconds=100)
    start = clock.now
    manager.models.register("busy", Payload(), size_bytes=MIB)
    clock.now = start + 250
    manager.models.touch("busy")
    clock.now = start + 300
    assert manager.perform_maintenance().models_unloaded == 0
    assert manager.models.record("busy").loaded


def test_maintenance_without_a_usage_ratio_still_expires_entries(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe
) -> None:
    manager = make_manager(cache_cleanup_interval=60)
    quotes = manager.register_cache("quotes", ttl_seconds=10)
    fill(quotes, clock, ["a"], 100)
    probe.usage_ratio = None
    clock.now += 60
    report = manager.perform_maintenance()
    assert (report.level, report.usage_ratio, report.expired_entries) == (PressureLevel.NORMAL, None, 1)


def test_maintenance_counts_its_runs_and_keeps_the_last_report(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    report = manager.perform_maintenance()
    assert isinstance(report, MaintenanceReport)
    assert (manager.maintenance_runs, manager.last_report) == (1, report)


# ------------------------------------------------------------------ pressure tiers


def test_gc_tier_collects_garbage(make_manager: ManagerFactory, probe: FakeProbe, gc_calls: list[int]) -> None:
    manager = make_manager()
    probe.usage_ratio = 0.72
    report = manager.perform_maintenance()
    assert report.level is PressureLevel.GC
    assert gc_calls == [report.gc_collected]
    assert report.cache_bytes_freed == 0


def test_normal_level_collects_no_garbage(make_manager: ManagerFactory, probe: FakeProbe, gc_calls: list[int]) -> None:
    probe.usage_ratio = 0.5
    make_manager().perform_maintenance()
    assert gc_calls == []


def test_pressure_shrinks_the_lowest_priority_cache_first_until_the_target_ratio(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe
) -> None:
    manager = make_manager()
    high = manager.register_cache("high", priority=1)
    low = manager.register_cache("low", priority=0)
    fill(high, clock, ["h0", "h1", "h2", "h3"], 5 * MIB)  # older than low's entries, yet kept longer
    fill(low, clock, ["l0", "l1", "l2", "l3"], 5 * MIB)
    probe.usage_ratio = 0.83  # 23% of the limit above the 0.6 target: 23 MiB to shed
    report = manager.perform_maintenance()
    assert report.level is PressureLevel.PRESSURE
    assert report.cache_bytes_freed >= (0.83 - 0.6) * LIMIT_BYTES
    assert low.keys() == []
    assert high.keys() == ["h1", "h2", "h3"]
    assert report.cache_bytes_freed == 25 * MIB


def test_pressure_evicts_the_coldest_entries_first_across_caches_of_one_priority(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe
) -> None:
    manager = make_manager()
    quotes = manager.register_cache("quotes")
    trades = manager.register_cache("trades")
    for i in range(3):
        fill(quotes, clock, [f"q{i}"], 7 * MIB)
        fill(trades, clock, [f"t{i}"], 7 * MIB)
    clock.now += 1
    quotes.get("q0")  # from the coldest to the warmest entry
    probe.usage_ratio = 0.82  # 22 MiB to shed: the four coldest 7 MiB entries
    assert manager.perform_maintenance().cache_bytes_freed == 28 * MIB
    assert quotes.keys() == ["q0"]
    assert trades.keys() == ["t2"]


def test_pressure_unloads_idle_models_and_keeps_fresh_and_pinned_ones(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe
) -> None:
    manager = make_manager(model_idle_seconds=100, model_cleanup_interval=300)
    manager.models.register("idle", Payload(), size_bytes=MIB)
    manager.models.register("pinned", Payload(), size_bytes=MIB, pinned=True)
    clock.now += 150  # idle beyond model_idle_seconds, before the model cadence
    manager.models.register("fresh", Payload(), size_bytes=MIB)
    probe.usage_ratio = 0.83
    report = manager.perform_maintenance()
    assert (report.models_unloaded, report.model_bytes_freed) == (1, MIB)
    assert [r.name for r in manager.models.records() if r.loaded] == ["pinned", "fresh"]


def test_critical_clears_every_evictable_cache_and_unloads_every_unpinned_model(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe
) -> None:
    manager = make_manager()
    quotes = manager.register_cache("quotes", priority=5)
    trades = manager.register_cache("trades", priority=9)
    fill(quotes, clock, ["q0", "q1"], MIB)
    fill(trades, clock, ["t0", "t1"], MIB)
    manager.models.register("fresh", Payload(), size_bytes=2 * MIB)
    manager.models.register("pinned", Payload(), size_bytes=3 * MIB, pinned=True)
    probe.usage_ratio = 0.95
    report = manager.perform_maintenance()
    assert report.level is PressureLevel.CRITICAL
    assert (len(quotes), len(trades), report.cache_bytes_freed) == (0, 0, 4 * MIB)
    assert (report.models_unloaded, report.model_bytes_freed) == (1, 2 * MIB)
    assert manager.models.record("pinned").loaded


def test_critical_alerts_through_the_callback_with_the_numbers(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe, alerts: list
) -> None:
    manager = make_manager()
    fill(manager.register_cache("quotes"), clock, ["q0"], 2 * MIB)
    probe.usage_ratio = 0.95
    manager.perform_maintenance()
    assert manager.alerts_sent == 1
    [(message, details)] = alerts
    assert "CRITICAL" in message and "95%" in message
    assert details["level"] == "CRITICAL"
    assert details["usage_ratio"] == 0.95
    assert details["limit_bytes"] == LIMIT_BYTES
    assert details["rss_bytes"] == probe.rss
    assert details["cache_bytes_freed"] == 2 * MIB


def test_critical_alert_is_logged_as_a_warning(
    make_manager: ManagerFactory, probe: FakeProbe, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager()
    probe.usage_ratio = 0.95
    with caplog.at_level(logging.WARNING, logger=manager_module.__name__):
        manager.perform_maintenance()
    [message] = [r.getMessage() for r in caplog.records if "CRITICAL" in r.getMessage()]
    assert "at 95% of the limit" in message and "limit 100.0 MiB" in message


def test_pressure_below_critical_sends_no_alert(make_manager: ManagerFactory, probe: FakeProbe, alerts: list) -> None:
    probe.usage_ratio = 0.85
    make_manager().perform_maintenance()
    assert alerts == []


def test_a_failing_alert_callback_does_not_fail_maintenance(make_manager: ManagerFactory, probe: FakeProbe) -> None:
    manager = make_manager()
    manager.add_alert_callback(lambda message, details: 1 / 0)
    probe.usage_ratio = 0.95
    assert manager.perform_maintenance().level is PressureLevel.CRITICAL
    assert manager.alerts_sent == 1


def test_tiers_never_touch_a_non_evictable_cache(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe
) -> None:
    manager = make_manager()
    state = manager.register_cache("state", priority=-10, evictable=False)
    fill(state, clock, ["s0", "s1"], 5 * MIB)
    for ratio in (0.83, 0.95):
        probe.usage_ratio = ratio
        manager.perform_maintenance()
    assert state.keys() == ["s0", "s1"]


def test_entering_a_level_needs_its_threshold(make_manager: ManagerFactory, probe: FakeProbe) -> None:
    manager = make_manager()
    probe.usage_ratio = 0.78
    assert manager.perform_maintenance().level is PressureLevel.GC


def test_leaving_pressure_needs_the_ratio_a_margin_below_the_threshold(
    make_manager: ManagerFactory, probe: FakeProbe
) -> None:
    manager = make_manager()  # memory_threshold 0.8, hysteresis margin 0.05
    levels = []
    for ratio in (0.82, 0.78, 0.76, 0.74):
        probe.usage_ratio = ratio
        levels.append(manager.perform_maintenance().level)
    assert levels == [PressureLevel.PRESSURE, PressureLevel.PRESSURE, PressureLevel.PRESSURE, PressureLevel.GC]


def test_pressure_events_count_entries_into_pressure_not_passes(make_manager: ManagerFactory, probe: FakeProbe) -> None:
    manager = make_manager()
    for ratio in (0.85, 0.85, 0.5, 0.85):
        probe.usage_ratio = ratio
        manager.perform_maintenance()
    assert manager.pressure_events == 2


# ------------------------------------------------------------------ background thread


def test_background_thread_is_a_daemon(make_manager: ManagerFactory) -> None:
    manager = make_manager(maintenance_interval_seconds=3600)
    manager.start()
    assert manager.running
    assert manager._maintenance.thread.daemon


def test_stop_returns_with_the_thread_gone_in_the_middle_of_an_interval(make_manager: ManagerFactory) -> None:
    manager = make_manager(maintenance_interval_seconds=3600)
    manager.start()
    thread = manager._maintenance.thread
    manager.stop()
    assert not thread.is_alive()
    assert not manager.running
    assert manager.maintenance_runs == 0


def test_start_twice_keeps_one_thread(make_manager: ManagerFactory) -> None:
    manager = make_manager(maintenance_interval_seconds=3600)
    manager.start()
    thread = manager._maintenance.thread
    manager.start()
    assert manager._maintenance.thread is thread


def test_manager_can_start_again_after_stop(make_manager: ManagerFactory) -> None:
    manager = make_manager(maintenance_interval_seconds=3600)
    manager.start()
    manager.stop()
    manager.start()
    assert manager.running


class FailingOnceManager(PassCountingManager):
    failures = 1
    wanted = 1


def test_background_thread_runs_maintenance_every_interval(make_manager: ManagerFactory) -> None:
    manager = make_manager(PassCountingManager, maintenance_interval_seconds=0.001)
    manager.start()
    assert manager.enough.wait(THREAD_WAIT_SECONDS)
    manager.stop()
    assert manager.maintenance_runs >= 2


def test_a_failing_pass_is_logged_and_the_loop_goes_on(
    make_manager: ManagerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager(FailingOnceManager, maintenance_interval_seconds=0.001)
    with caplog.at_level(logging.ERROR, logger=manager_module.__name__):
        manager.start()
        assert manager.enough.wait(THREAD_WAIT_SECONDS)
        manager.stop()
    [failure] = [r for r in caplog.records if "maintenance pass failed" in r.getMessage()]
    assert "pass 1 broke" in str(failure.exc_info[1])
    assert manager.maintenance_runs >= 1


# ------------------------------------------------------------------ stats


def test_get_memory_stats_never_walks_the_heap(
    make_manager: ManagerFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = make_manager()
    fill(manager.register_cache("quotes"), clock, ["a", "b"], 100)
    for name in ("get_objects", "get_referents", "collect"):
        monkeypatch.setattr(gc, name, forbidden(f"gc.{name}"))
    stats = manager.get_memory_stats()
    assert stats["caches"]["quotes"]["entries"] == 2


def test_get_memory_stats_sums_caches_and_models(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager()
    fill(manager.register_cache("quotes"), clock, ["a", "b"], 100)
    fill(manager.register_cache("trades"), clock, ["c"], 300)
    manager.models.register("signal", Payload(), size_bytes=MIB)
    stats = manager.get_memory_stats()
    assert sorted(stats["caches"]) == ["quotes", "trades"]
    assert (stats["cache_bytes"], stats["cache_entries"], stats["model_bytes"]) == (500, 3, MIB)
    assert stats["usage_ratio"] == 0.3
    assert stats["limit_bytes"] == LIMIT_BYTES
    assert stats["pressure_level"] == "NORMAL"


# ------------------------------------------------------------------ memory_monitoring


def test_memory_monitoring_records_duration_and_rss_delta(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe
) -> None:
    manager = make_manager()
    with manager.memory_monitoring("analysis"):
        clock.now += 2.5
        probe.rss += 3 * MIB
    [record] = manager.history
    assert (record.label, record.seconds, record.rss_delta_bytes) == ("analysis", 2.5, 3 * MIB)


def test_memory_monitoring_history_keeps_the_latest_history_size_records(clock: FakeClock, probe: FakeProbe) -> None:
    manager = MemoryManager(MemoryConfig(enable_background_cleanup=False), probe=probe, clock=clock, history_size=3)
    for label in "abcde":
        with manager.memory_monitoring(label):
            pass
    assert [record.label for record in manager.history] == ["c", "d", "e"]


def test_memory_monitoring_records_a_block_that_raises(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    with pytest.raises(KeyError), manager.memory_monitoring("broken"):
        raise KeyError("x")
    assert [record.label for record in manager.history] == ["broken"]


# ------------------------------------------------------------------ leak detection wiring


def test_evicted_value_held_elsewhere_is_reported_naming_cache_and_key(
    make_manager: ManagerFactory, clock: FakeClock
) -> None:
    manager = make_manager(track_evicted_values=True, model_cleanup_interval=300)
    start = clock.now
    quotes = manager.register_cache("quotes")
    held = Payload()
    quotes.put("BTC/USD", held, size_bytes=100)
    quotes.put("ETH/USD", Payload(), size_bytes=100)
    manager.shrink_caches(200)
    clock.now = start + 300
    assert manager.perform_maintenance().not_released == ["cache 'quotes': evicted 'BTC/USD' (pressure)"]


def test_evicted_values_are_not_watched_without_track_evicted_values(
    make_manager: ManagerFactory, clock: FakeClock
) -> None:
    manager = make_manager(model_cleanup_interval=300)
    start = clock.now
    quotes = manager.register_cache("quotes")
    held = Payload()
    quotes.put("BTC/USD", held, size_bytes=100)
    manager.shrink_caches(100)
    clock.now = start + 300
    assert manager.perform_maintenance().not_released == []


def test_replaced_and_explicitly_removed_values_are_not_reported(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager(track_evicted_values=True, model_cleanup_interval=300)
    start = clock.now
    quotes = manager.register_cache("quotes")
    held = [Payload() for _ in range(4)]
    quotes.put("BTC/USD", held[0], size_bytes=100)
    quotes.put("BTC/USD", held[1], size_bytes=100)  # replaced
    popped = quotes.pop("BTC/USD")  # handed back to the caller, who keeps it
    quotes.put("ETH/USD", held[2], size_bytes=100)
    quotes.delete("ETH/USD")
    quotes.put("SOL/USD", held[3], size_bytes=100)
    quotes.clear()
    clock.now = start + 300
    assert popped is held[1]
    assert manager.perform_maintenance().not_released == []


def test_unloaded_model_held_elsewhere_is_reported_at_the_model_cadence(
    make_manager: ManagerFactory, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager(model_cleanup_interval=300, model_idle_seconds=100)
    start = clock.now
    held = Payload()
    manager.models.register("signal", held, size_bytes=MIB)
    clock.now = start + 300
    with caplog.at_level(logging.WARNING):
        report = manager.perform_maintenance()
    assert report.not_released == ["signal"]
    assert any("'signal'" in r.getMessage() and "still" in r.getMessage() for r in caplog.records)


def test_unloaded_model_that_died_is_not_reported(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager(model_cleanup_interval=300, model_idle_seconds=100)
    start = clock.now
    manager.models.register("signal", Payload(), size_bytes=MIB)
    clock.now = start + 300
    report = manager.perform_maintenance()
    assert (report.models_unloaded, report.not_released) == (1, [])


# ------------------------------------------------------------------ apply_config


def test_apply_config_shrinks_the_budget_at_once(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager()
    fill(manager.register_cache("quotes"), clock, [f"k{i}" for i in range(10)], 100 * KIB)
    manager.apply_config(dataclasses.replace(manager.config, cache_size_limit_mb=0.5))
    assert manager.cache_bytes <= 512 * KIB


def test_apply_config_changes_the_pressure_thresholds(make_manager: ManagerFactory, probe: FakeProbe) -> None:
    manager = make_manager()
    probe.usage_ratio = 0.77
    assert manager.perform_maintenance().level is PressureLevel.GC
    manager.apply_config(dataclasses.replace(manager.config, memory_threshold=0.75))
    assert manager.perform_maintenance().level is PressureLevel.PRESSURE


def test_apply_config_changes_the_model_idle_time(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe
) -> None:
    manager = make_manager()
    manager.models.register("signal", Payload(), size_bytes=MIB)
    clock.now += 200
    manager.apply_config(dataclasses.replace(manager.config, model_idle_seconds=100))
    probe.usage_ratio = 0.85  # PRESSURE unloads idle models
    assert manager.perform_maintenance().models_unloaded == 1


def test_apply_config_shorter_cleanup_interval_takes_effect_now(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager(cache_cleanup_interval=600)
    start = clock.now
    fill(manager.register_cache("quotes", ttl_seconds=10), clock, ["a"], 100)
    clock.now = start + 100
    manager.apply_config(dataclasses.replace(manager.config, cache_cleanup_interval=50))
    clock.now = start + 150
    assert manager.perform_maintenance().expired_entries == 1


def test_apply_config_keeps_an_injected_probe(make_manager: ManagerFactory, probe: FakeProbe) -> None:
    manager = make_manager()
    manager.apply_config(dataclasses.replace(manager.config, process_memory_limit_mb=64))
    assert manager.probe is probe


def test_apply_config_switches_evicted_value_tracking_on(make_manager: ManagerFactory, clock: FakeClock) -> None:
    manager = make_manager(model_cleanup_interval=300)
    start = clock.now
    quotes = manager.register_cache("quotes")
    manager.apply_config(dataclasses.replace(manager.config, track_evicted_values=True))
    held = Payload()
    quotes.put("BTC/USD", held, size_bytes=100)
    manager.shrink_caches(100)
    clock.now = start + 300
    assert manager.perform_maintenance().not_released == ["cache 'quotes': evicted 'BTC/USD' (pressure)"]
