"""MemoryConfig: the seed's keys and defaults, strict validation naming the key, and every key changing behaviour.

The "every key is used" section has one `test_key_<key>_...` per setting, and a meta test fails when a
key is added without one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import pytest

from crypto_bot.memory import manager as manager_module
from crypto_bot.memory.config import DEFAULTS, KEYS, ConfigError, MemoryConfig
from crypto_bot.memory.manager import MemoryManager
from crypto_bot.memory.pressure import PressureLevel
from crypto_bot.memory.reclaim import GcResult
from crypto_bot.utils.enhanced_memory_manager import get_enhanced_memory_manager, reset_enhanced_memory_manager
from tests.memory.support import (
    KIB,
    MIB,
    THREAD_WAIT_SECONDS,
    FakeClock,
    FakeProbe,
    ManagerFactory,
    PassCountingManager,
    Payload,
    fill,
)

THRESHOLDS = ("gc_threshold", "memory_threshold", "aggressive_cleanup_threshold")
POSITIVE_KEYS = (
    "cache_size_limit_mb",
    "model_cleanup_interval",
    "cache_cleanup_interval",
    "max_cache_entries",
    "cache_ttl_seconds",
    "process_memory_limit_mb",
    "maintenance_interval_seconds",
    "model_idle_seconds",
    "leak_slope_threshold_mb_per_hour",
)


# ------------------------------------------------------------------ keys and defaults


def test_seed_keys_keep_the_seed_defaults() -> None:
    config = MemoryConfig()
    seed = {
        "memory_threshold": 0.8,
        "gc_threshold": 0.7,
        "cache_size_limit_mb": 500,
        "model_cleanup_interval": 300,
        "cache_cleanup_interval": 600,
        "max_cache_entries": 1000,
        "cache_ttl_seconds": 3600,
        "enable_background_cleanup": True,
        "aggressive_cleanup_threshold": 0.9,
    }
    assert {key: getattr(config, key) for key in seed} == seed


def test_new_keys_have_their_documented_defaults() -> None:
    config = MemoryConfig()
    assert config.process_memory_limit_mb is None
    assert (config.pressure_target_ratio, config.hysteresis_margin_ratio) == (0.6, 0.05)
    assert (config.maintenance_interval_seconds, config.model_idle_seconds) == (30, 3600)
    assert config.track_evicted_values is False


def test_sizes_are_exposed_in_bytes() -> None:
    config = MemoryConfig(cache_size_limit_mb=1.5, process_memory_limit_mb=64)
    assert (config.cache_size_limit_bytes, config.process_memory_limit_bytes) == (1536 * KIB, 64 * MIB)
    assert MemoryConfig().process_memory_limit_bytes is None


# ------------------------------------------------------------------ strict validation


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("key", THRESHOLDS)
@pytest.mark.parametrize("value", [0, -0.1, 1.01, math.nan, "invalid", None, True])
def test_threshold_outside_zero_to_one_is_rejected_naming_key_and_range(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"{key}=.*\(0, 1\]"):
        MemoryConfig(**{key: value})


def test_thresholds_of_exactly_one_are_allowed() -> None:
    config = MemoryConfig(gc_threshold=1, memory_threshold=1, aggressive_cleanup_threshold=1)
    assert config.gc_threshold == 1


def test_gc_threshold_above_memory_threshold_is_rejected() -> None:
    with pytest.raises(ConfigError, match="gc_threshold <= memory_threshold <= aggressive_cleanup_threshold"):
        MemoryConfig(gc_threshold=0.85)


def test_memory_threshold_above_aggressive_threshold_is_rejected() -> None:
    with pytest.raises(ConfigError, match="gc_threshold <= memory_threshold <= aggressive_cleanup_threshold"):
        MemoryConfig(memory_threshold=0.95)


def test_equal_thresholds_are_allowed() -> None:
    config = MemoryConfig(gc_threshold=0.8, memory_threshold=0.8, aggressive_cleanup_threshold=0.8)
    assert config.memory_threshold == 0.8


@pytest.mark.parametrize("key", POSITIVE_KEYS)
@pytest.mark.parametrize("value", [0, -1, math.inf, "10"])
def test_size_or_interval_that_is_not_positive_is_rejected_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"{key}=.*(positive|in \(0, |in \[1, )"):
        MemoryConfig(**{key: value})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cache_size_limit_mb", 2**28 + 1),
        ("process_memory_limit_mb", 2**28 + 1),
        ("maintenance_interval_seconds", 366 * 24 * 3600),
        ("cache_ttl_seconds", 1e12),
    ],
)
def test_sizes_and_seconds_beyond_what_the_runtime_accepts_are_rejected(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"invalid {key}=.*: allowed a number in \(0, "):
        MemoryConfig(**{key: value})


def test_max_cache_entries_must_be_an_integer() -> None:
    with pytest.raises(ConfigError, match=r"max_cache_entries=1.5.*an integer in \[1, "):
        MemoryConfig(max_cache_entries=1.5)


def test_leak_window_samples_below_three_is_rejected() -> None:
    with pytest.raises(ConfigError, match="leak_window_samples=2.*>= 3"):
        MemoryConfig(leak_window_samples=2)


@pytest.mark.parametrize("key", ["enable_background_cleanup", "track_evicted_values"])
def test_flags_must_be_booleans(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}='yes'.*true or false"):
        MemoryConfig(**{key: "yes"})


def test_pressure_target_ratio_must_be_below_gc_threshold() -> None:
    with pytest.raises(ConfigError, match=r"pressure_target_ratio=0.7.*below gc_threshold \(0.7\)"):
        MemoryConfig(pressure_target_ratio=0.7)


def test_hysteresis_margin_ratio_must_be_below_one_half() -> None:
    with pytest.raises(ConfigError, match=r"hysteresis_margin_ratio=0.5.*\[0, 0.5\)"):
        MemoryConfig(hysteresis_margin_ratio=0.5)


def test_hysteresis_margin_ratio_must_be_below_gc_threshold() -> None:
    with pytest.raises(ConfigError, match=r"hysteresis_margin_ratio=0.4.*below gc_threshold \(0.3\)"):
        MemoryConfig(gc_threshold=0.3, memory_threshold=0.5, pressure_target_ratio=0.2, hysteresis_margin_ratio=0.4)


def test_from_mapping_rejects_a_misspelt_key_suggesting_the_right_one() -> None:
    with pytest.raises(ConfigError, match="unknown key memory_treshold: did you mean memory_threshold"):
        MemoryConfig.from_mapping({"memory_treshold": 0.8})


def test_from_mapping_lists_the_allowed_keys_for_an_unrecognisable_key() -> None:
    with pytest.raises(ConfigError, match="unknown key colour; allowed: memory_threshold, gc_threshold"):
        MemoryConfig.from_mapping({"colour": "red"})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as error:
        MemoryConfig.from_mapping({"memory_treshold": 0.8, "gc_threshold": 2, "max_cache_entries": 0})
    assert [problem.split("=")[0].split(":")[0] for problem in error.value.problems] == [
        "unknown key memory_treshold",
        "invalid gc_threshold",
        "invalid max_cache_entries",
    ]


def test_cross_field_rules_are_reported_together() -> None:
    with pytest.raises(ConfigError) as error:
        MemoryConfig(gc_threshold=0.3, memory_threshold=0.95, pressure_target_ratio=0.5, hysteresis_margin_ratio=0.4)
    assert [problem.split()[0:2] for problem in error.value.problems] == [
        ["thresholds", "must"],
        ["invalid", "pressure_target_ratio=0.5:"],
        ["invalid", "hysteresis_margin_ratio=0.4:"],
    ]


def test_the_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        MemoryConfig().gc_threshold = 0.5  # type: ignore[misc]


def test_from_mapping_validates_values() -> None:
    with pytest.raises(ConfigError, match="gc_threshold"):
        MemoryConfig.from_mapping({"gc_threshold": 2})


def test_from_mapping_round_trips_to_dict() -> None:
    config = MemoryConfig(cache_size_limit_mb=64, track_evicted_values=True)
    assert MemoryConfig.from_mapping(config.to_dict()) == config


def test_to_dict_lists_every_key() -> None:
    assert set(MemoryConfig().to_dict()) == KEYS == set(DEFAULTS)


# ------------------------------------------------------------------ every key is used


def test_every_key_has_a_behaviour_test() -> None:
    tested = {key for key in KEYS if any(name.startswith(f"test_key_{key}_") for name in globals())}
    assert sorted(KEYS - tested) == []


def level_at(manager: MemoryManager, probe: FakeProbe, *ratios: float) -> PressureLevel:
    """The level after one maintenance pass per ratio."""
    for ratio in ratios:
        probe.usage_ratio = ratio
        level = manager.perform_maintenance().level
    return level


def test_key_memory_threshold_sets_where_pressure_begins(make_manager: ManagerFactory, probe: FakeProbe) -> None:
    assert level_at(make_manager(), probe, 0.77) is PressureLevel.GC
    assert level_at(make_manager(memory_threshold=0.75), probe, 0.77) is PressureLevel.PRESSURE


def test_key_gc_threshold_sets_where_collection_begins(make_manager: ManagerFactory, probe: FakeProbe) -> None:
    assert level_at(make_manager(), probe, 0.65) is PressureLevel.NORMAL
    assert level_at(make_manager(gc_threshold=0.62), probe, 0.65) is PressureLevel.GC


def test_key_aggressive_cleanup_threshold_sets_where_critical_begins(
    make_manager: ManagerFactory, probe: FakeProbe
) -> None:
    assert level_at(make_manager(), probe, 0.87) is PressureLevel.PRESSURE
    assert level_at(make_manager(aggressive_cleanup_threshold=0.85), probe, 0.87) is PressureLevel.CRITICAL


def test_key_hysteresis_margin_ratio_sets_how_far_below_a_level_it_is_left(
    make_manager: ManagerFactory, probe: FakeProbe
) -> None:
    assert level_at(make_manager(), probe, 0.82, 0.78) is PressureLevel.PRESSURE
    assert level_at(make_manager(hysteresis_margin_ratio=0.01), probe, 0.82, 0.78) is PressureLevel.GC


def test_key_pressure_target_ratio_sets_how_much_pressure_sheds(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe
) -> None:
    freed = {}
    for target in (0.6, 0.5):
        manager = make_manager(pressure_target_ratio=target)
        fill(manager.register_cache(f"quotes-{target}"), clock, [f"k{i}" for i in range(10)], 5 * MIB)
        probe.usage_ratio = 0.83
        freed[target] = manager.perform_maintenance().cache_bytes_freed
    assert freed == {0.6: 25 * MIB, 0.5: 35 * MIB}


def test_key_cache_size_limit_mb_caps_the_caches_together(make_manager: ManagerFactory, clock: FakeClock) -> None:
    default = make_manager().register_cache("quotes")
    limited = make_manager(cache_size_limit_mb=1).register_cache("quotes")
    for cache in (default, limited):
        fill(cache, clock, ["a", "b", "c"], 400 * KIB)
    assert (len(default), len(limited)) == (3, 2)


def test_key_max_cache_entries_is_the_default_max_size(make_manager: ManagerFactory, clock: FakeClock) -> None:
    quotes = make_manager(max_cache_entries=7).register_cache("quotes")
    fill(quotes, clock, [f"k{i}" for i in range(10)], 10)
    assert (quotes.max_size, len(quotes)) == (7, 7)


def test_key_cache_ttl_seconds_is_the_default_ttl(make_manager: ManagerFactory, clock: FakeClock) -> None:
    short = make_manager(cache_ttl_seconds=10).register_cache("short")
    default = make_manager().register_cache("default")
    for cache in (short, default):
        cache.put("k", "v")
    clock.now += 11
    assert (short.get("k"), default.get("k")) == (None, "v")


def test_key_cache_cleanup_interval_is_the_expiry_cadence(make_manager: ManagerFactory, clock: FakeClock) -> None:
    managers = [make_manager(), make_manager(cache_cleanup_interval=100)]
    for manager in managers:
        manager.register_cache("quotes", ttl_seconds=10).put("k", "v")
    clock.now += 100
    assert [manager.perform_maintenance().expired_entries for manager in managers] == [0, 1]


def test_key_model_cleanup_interval_is_the_idle_model_cadence(make_manager: ManagerFactory, clock: FakeClock) -> None:
    managers = [make_manager(model_idle_seconds=50), make_manager(model_idle_seconds=50, model_cleanup_interval=100)]
    for manager in managers:
        manager.models.register("signal", Payload(), size_bytes=MIB)
    clock.now += 100
    assert [manager.perform_maintenance().models_unloaded for manager in managers] == [0, 1]


def test_key_model_idle_seconds_is_how_long_a_model_may_idle(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe
) -> None:
    managers = [make_manager(), make_manager(model_idle_seconds=100)]
    for manager in managers:
        manager.models.register("signal", Payload(), size_bytes=MIB)
    clock.now += 200
    probe.usage_ratio = 0.85  # PRESSURE unloads idle models
    assert [manager.perform_maintenance().models_unloaded for manager in managers] == [0, 1]


def test_key_gc_time_fraction_throttles_collections(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    collections = []

    def one_second_collection() -> GcResult:
        collections.append(clock.now)
        return GcResult(collected=0, seconds=1.0, trimmed=False)

    monkeypatch.setattr(manager_module, "collect_garbage", one_second_collection)
    probe.usage_ratio = 0.72  # GC tier
    counts = []
    for fraction in (0.05, 1.0):  # next collection allowed 20 s, or 1 s, after the start of the last
        manager = make_manager(gc_time_fraction=fraction)
        collections.clear()
        for _ in range(2):
            manager.perform_maintenance()
            clock.now += 10
        counts.append(len(collections))
    assert counts == [1, 2]


def leak_suspected_after_growth(manager: MemoryManager, clock: FakeClock, probe: FakeProbe, passes: int) -> bool:
    """Grow RSS by 10 MiB a minute (600 MiB/hour) over `passes` maintenance passes."""
    for _ in range(passes):
        clock.now += 60
        probe.rss += 10 * MIB
        report = manager.perform_maintenance()
    return report.leak_suspected


def test_key_leak_window_samples_sets_the_leak_window(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe
) -> None:
    assert not leak_suspected_after_growth(make_manager(), clock, probe, 6)
    assert leak_suspected_after_growth(make_manager(leak_window_samples=3), clock, probe, 6)


def test_key_leak_slope_threshold_mb_per_hour_sets_the_leak_slope(
    make_manager: ManagerFactory, clock: FakeClock, probe: FakeProbe
) -> None:
    assert leak_suspected_after_growth(make_manager(leak_window_samples=3), clock, probe, 6)
    relaxed = make_manager(leak_window_samples=3, leak_slope_threshold_mb_per_hour=1000)
    assert not leak_suspected_after_growth(relaxed, clock, probe, 6)


def test_key_track_evicted_values_watches_evicted_values(make_manager: ManagerFactory, clock: FakeClock) -> None:
    managers = [make_manager(model_cleanup_interval=100, track_evicted_values=flag) for flag in (False, True)]
    held = Payload()
    for manager in managers:
        manager.register_cache("quotes").put("BTC/USD", held, size_bytes=100)
        manager.clear_caches()
    clock.now += 100
    assert [len(manager.perform_maintenance().not_released) for manager in managers] == [0, 1]


def test_key_process_memory_limit_mb_caps_limit_bytes() -> None:
    manager = MemoryManager(MemoryConfig(enable_background_cleanup=False, process_memory_limit_mb=64))
    try:
        assert manager.read_memory().limit_bytes == 64 * MIB
        manager.apply_config(dataclasses.replace(manager.config, process_memory_limit_mb=32))
        assert manager.read_memory().limit_bytes == 32 * MIB
    finally:
        manager.probe.close()


def test_key_maintenance_interval_seconds_sets_the_thread_cadence(make_manager: ManagerFactory) -> None:
    slow = make_manager(PassCountingManager, maintenance_interval_seconds=3600)
    fast = make_manager(PassCountingManager, maintenance_interval_seconds=0.001)
    slow.start()
    fast.start()
    assert fast.enough.wait(THREAD_WAIT_SECONDS)
    slow.stop()
    fast.stop()
    assert fast.maintenance_runs >= 2
    assert slow.maintenance_runs == 0


@pytest.fixture
def singleton() -> Iterator[None]:
    reset_enhanced_memory_manager()
    yield
    reset_enhanced_memory_manager()


@pytest.mark.usefixtures("singleton")
def test_key_enable_background_cleanup_starts_the_singleton_thread() -> None:
    assert get_enhanced_memory_manager(MemoryConfig(enable_background_cleanup=True)).running
    reset_enhanced_memory_manager()
    assert not get_enhanced_memory_manager(MemoryConfig(enable_background_cleanup=False)).running
