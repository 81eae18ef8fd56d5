"""PressurePolicy with a fake clock (tiers, hysteresis, shrink sizing, GC throttle, alerts), and
collect_garbage, the I/O side of the GC tier."""

from __future__ import annotations

import gc
import math
import platform
import weakref
from collections.abc import Iterator

import pytest

from crypto_bot.memory import reclaim
from crypto_bot.memory.pressure import PressureLevel, PressurePolicy
from crypto_bot.memory.reclaim import collect_garbage
from tests.fakes import FakeClock

MIB = 1024**2
NORMAL, GC, PRESSURE, CRITICAL = (
    PressureLevel.NORMAL,
    PressureLevel.GC,
    PressureLevel.PRESSURE,
    PressureLevel.CRITICAL,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policy(clock: FakeClock) -> PressurePolicy:
    """Default thresholds: GC 0.7, PRESSURE 0.8, CRITICAL 0.9, margin 0.05, target 0.6."""
    return PressurePolicy(clock=clock)


def assess(policy: PressurePolicy, usage_ratio: float, *, limit_bytes: int | None = 1000 * MIB, managed_bytes: int = 0):
    return policy.assess(usage_ratio, limit_bytes=limit_bytes, managed_bytes=managed_bytes)


def walk(policy: PressurePolicy, ratios: list[float]) -> list[PressureLevel]:
    return [assess(policy, ratio).level for ratio in ratios]


# levels and hysteresis


@pytest.mark.parametrize(
    ("usage_ratio", "level"),
    [(0.0, NORMAL), (0.69, NORMAL), (0.7, GC), (0.79, GC), (0.8, PRESSURE), (0.9, CRITICAL), (1.3, CRITICAL)],
)
def test_level_is_entered_at_its_threshold(policy: PressurePolicy, usage_ratio: float, level: PressureLevel) -> None:
    assert assess(policy, usage_ratio).level is level


def test_walk_up_through_every_tier_and_back(policy: PressurePolicy) -> None:
    ratios = [0.5, 0.72, 0.82, 0.93, 0.87, 0.83, 0.77, 0.68, 0.6]
    assert walk(policy, ratios) == [NORMAL, GC, PRESSURE, CRITICAL, CRITICAL, PRESSURE, PRESSURE, GC, NORMAL]


@pytest.mark.parametrize(
    ("entry_ratio", "held_ratio", "held_level"),
    [(0.72, 0.66, GC), (0.82, 0.78, PRESSURE), (0.92, 0.86, CRITICAL)],
)
def test_level_is_held_within_margin_below_its_threshold(
    policy: PressurePolicy, entry_ratio: float, held_ratio: float, held_level: PressureLevel
) -> None:
    assert walk(policy, [entry_ratio, held_ratio]) == [held_level, held_level]


@pytest.mark.parametrize(
    ("entry_ratio", "left_ratio", "landing_level"),
    [(0.72, 0.64, NORMAL), (0.82, 0.74, GC), (0.92, 0.84, PRESSURE)],
)
def test_level_is_left_once_more_than_margin_below(
    policy: PressurePolicy, entry_ratio: float, left_ratio: float, landing_level: PressureLevel
) -> None:
    assert walk(policy, [entry_ratio, left_ratio])[1] is landing_level


def test_falling_from_pressure_keeps_gc_within_its_margin(policy: PressurePolicy) -> None:
    assert walk(policy, [0.82, 0.66]) == [PRESSURE, GC]


def test_rising_ratio_within_margin_does_not_enter_the_next_level(policy: PressurePolicy) -> None:
    assert walk(policy, [0.72, 0.78]) == [GC, GC]


def test_decision_reports_previous_level(policy: PressurePolicy) -> None:
    assess(policy, 0.82)
    decision = assess(policy, 0.95)
    assert (decision.previous, decision.level) == (PRESSURE, CRITICAL)


def test_level_property_follows_assess(policy: PressurePolicy) -> None:
    assess(policy, 0.82)
    assert policy.level is PRESSURE


def test_classify_applies_hysteresis_without_changing_level(policy: PressurePolicy) -> None:
    assess(policy, 0.82)
    assert (policy.classify(0.78), policy.classify(0.5), policy.level) == (PRESSURE, NORMAL, PRESSURE)


def test_zero_margin_leaves_a_level_just_below_its_threshold(clock: FakeClock) -> None:
    policy = PressurePolicy(margin_ratio=0.0, clock=clock)
    assert walk(policy, [0.8, 0.7999]) == [PRESSURE, GC]


# actions per tier


def test_normal_asks_for_nothing(policy: PressurePolicy) -> None:
    decision = assess(policy, 0.5, managed_bytes=500 * MIB)
    actions = (decision.collect_garbage, decision.shrink_bytes, decision.unload_idle_models, decision.clear_caches)
    assert actions == (False, 0, False, False)


def test_gc_tier_collects_but_keeps_caches_and_models(policy: PressurePolicy) -> None:
    decision = assess(policy, 0.75, managed_bytes=500 * MIB)
    actions = (decision.collect_garbage, decision.shrink_bytes, decision.unload_idle_models, decision.clear_caches)
    assert actions == (True, 0, False, False)


def test_pressure_tier_shrinks_and_unloads_idle_models(policy: PressurePolicy) -> None:
    decision = assess(policy, 0.85, managed_bytes=500 * MIB)
    assert (decision.unload_idle_models, decision.clear_caches, decision.unload_all_models) == (True, False, False)


def test_critical_tier_clears_caches_and_unloads_every_model(policy: PressurePolicy) -> None:
    decision = assess(policy, 0.95, managed_bytes=500 * MIB)
    assert (decision.unload_idle_models, decision.clear_caches, decision.unload_all_models) == (True, True, True)


# shrink sizing


def test_shrink_bytes_bring_the_ratio_back_to_target(clock: FakeClock) -> None:
    policy = PressurePolicy(target_ratio=0.5, clock=clock)
    decision = policy.assess(0.875, limit_bytes=1024 * MIB, managed_bytes=1024 * MIB)
    assert decision.shrink_bytes == 384 * MIB


def test_shrink_bytes_with_default_target(policy: PressurePolicy) -> None:
    decision = policy.assess(0.85, limit_bytes=1000 * MIB, managed_bytes=1000 * MIB)
    assert decision.shrink_bytes == 250 * MIB


def test_shrink_bytes_are_capped_at_managed_bytes(policy: PressurePolicy) -> None:
    decision = policy.assess(0.85, limit_bytes=1000 * MIB, managed_bytes=40 * MIB)
    assert decision.shrink_bytes == 40 * MIB


def test_shrink_bytes_are_zero_without_a_known_limit(policy: PressurePolicy) -> None:
    assert policy.assess(0.85, limit_bytes=None, managed_bytes=500 * MIB).shrink_bytes == 0


def test_shrink_bytes_are_zero_when_held_pressure_is_below_target(clock: FakeClock) -> None:
    policy = PressurePolicy(0.7, 0.7, 0.9, margin_ratio=0.1, target_ratio=0.65, clock=clock)
    assess(policy, 0.72, managed_bytes=500 * MIB)
    decision = assess(policy, 0.62, managed_bytes=500 * MIB)
    assert (decision.level, decision.shrink_bytes) == (PRESSURE, 0)


# GC throttle


def test_gc_is_throttled_to_its_share_of_wall_time(policy: PressurePolicy, clock: FakeClock) -> None:
    policy.record_gc(started_at=clock.now, seconds=0.5)  # 5 % budget: next one 10 s after this start
    clock.now += 9.9
    assert assess(policy, 0.75).collect_garbage is False


def test_gc_is_allowed_again_once_its_budget_refills(policy: PressurePolicy, clock: FakeClock) -> None:
    policy.record_gc(started_at=clock.now, seconds=0.5)
    clock.now += 10.0
    assert assess(policy, 0.75).collect_garbage is True


def test_gc_stays_due_until_a_collection_is_recorded(policy: PressurePolicy, clock: FakeClock) -> None:
    assess(policy, 0.75)
    clock.now += 0.001
    assert assess(policy, 0.75).collect_garbage is True


def test_gc_time_fraction_sets_the_wait(clock: FakeClock) -> None:
    policy = PressurePolicy(gc_time_fraction=0.5, clock=clock)
    policy.record_gc(started_at=clock.now, seconds=0.5)
    clock.now += 1.0
    assert assess(policy, 0.75).collect_garbage is True


# alerts


def test_entering_critical_alerts(policy: PressurePolicy) -> None:
    assess(policy, 0.85)
    assert assess(policy, 0.95).alert is True


def test_entering_pressure_does_not_alert(policy: PressurePolicy) -> None:
    assert [assess(policy, ratio).alert for ratio in (0.72, 0.85)] == [False, False]


def test_staying_critical_does_not_repeat_the_alert_within_the_interval(
    policy: PressurePolicy, clock: FakeClock
) -> None:
    assess(policy, 0.95)
    clock.now += 299.0
    assert assess(policy, 0.95).alert is False


def test_staying_critical_repeats_the_alert_after_the_interval(policy: PressurePolicy, clock: FakeClock) -> None:
    assess(policy, 0.95)
    clock.now += 300.0
    assert assess(policy, 0.95).alert is True


def test_flapping_into_critical_alerts_once_per_interval(policy: PressurePolicy, clock: FakeClock) -> None:
    alerts = []
    for ratio in (0.95, 0.8, 0.95, 0.8, 0.95):
        clock.now += 10.0
        alerts.append(assess(policy, ratio).alert)
    assert alerts == [True, False, False, False, False]


def test_alert_interval_is_configurable(clock: FakeClock) -> None:
    policy = PressurePolicy(alert_interval_seconds=5.0, clock=clock)
    assess(policy, 0.95)
    clock.now += 5.0
    assert assess(policy, 0.95).alert is True


# invalid arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gc_threshold": 0.0}, r"gc_threshold must be a finite number in \(0, 1\], got 0.0"),
        ({"gc_threshold": 1.5}, r"gc_threshold must be a finite number in \(0, 1\], got 1.5"),
        ({"gc_threshold": math.nan}, r"gc_threshold must be .*, got nan"),
        ({"gc_threshold": "0.7"}, r"gc_threshold must be .*, got '0.7'"),
        ({"memory_threshold": 0.6}, r"memory_threshold must be a finite number in \[0.7, 1\], got 0.6"),
        ({"critical_threshold": 0.75}, r"critical_threshold must be a finite number in \[0.8, 1\], got 0.75"),
        ({"critical_threshold": 1.01}, r"critical_threshold must be .*, got 1.01"),
        ({"margin_ratio": -0.01}, r"margin_ratio must be a finite number >= 0, got -0.01"),
        ({"margin_ratio": 0.5}, r"margin_ratio must be below 0.5 and below gc_threshold \(0.7\), got 0.5"),
        (
            {"gc_threshold": 0.05, "target_ratio": 0.01},
            r"margin_ratio must be below 0.5 and below gc_threshold \(0.05\), got 0.05",
        ),
        ({"target_ratio": 0.7}, r"target_ratio must be below gc_threshold \(0.7\), got 0.7"),
        ({"target_ratio": 0.0}, r"target_ratio must be a finite number > 0, got 0.0"),
        ({"gc_time_fraction": 0.0}, r"gc_time_fraction must be a finite number in \(0, 1\], got 0.0"),
        ({"alert_interval_seconds": -1.0}, r"alert_interval_seconds must be .*, got -1.0"),
        ({"alert_interval_seconds": math.inf}, r"alert_interval_seconds must be .*, got inf"),
    ],
)
def test_invalid_policy_argument_is_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PressurePolicy(**kwargs)


def test_margin_below_a_low_gc_threshold_is_accepted() -> None:
    assert PressurePolicy(0.3, 0.4, 0.5, margin_ratio=0.29, target_ratio=0.1).margin_ratio == 0.29


@pytest.mark.parametrize("usage_ratio", [math.nan, -0.01, math.inf, "0.5", None, True])
def test_invalid_usage_ratio_is_named(policy: PressurePolicy, usage_ratio: object) -> None:
    with pytest.raises(ValueError, match="usage_ratio"):
        policy.assess(usage_ratio, limit_bytes=MIB, managed_bytes=0)  # type: ignore[arg-type]


def test_invalid_usage_ratio_leaves_level_unchanged(policy: PressurePolicy) -> None:
    assess(policy, 0.85)
    with pytest.raises(ValueError):
        assess(policy, math.nan)
    assert policy.level is PRESSURE


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"limit_bytes": 0, "managed_bytes": 0}, "limit_bytes"),
        ({"limit_bytes": 1.5, "managed_bytes": 0}, "limit_bytes"),
        ({"limit_bytes": MIB, "managed_bytes": -1}, "managed_bytes"),
        ({"limit_bytes": MIB, "managed_bytes": None}, "managed_bytes"),
    ],
)
def test_invalid_sizes_are_named(policy: PressurePolicy, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        policy.assess(0.5, **kwargs)


@pytest.mark.parametrize(("started_at", "seconds", "name"), [(0.0, -1.0, "seconds"), (math.nan, 1.0, "started_at")])
def test_invalid_gc_record_is_named(policy: PressurePolicy, started_at: float, seconds: float, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        policy.record_gc(started_at, seconds)


# collect_garbage (reclaim.py)


def test_collect_garbage_frees_reference_cycles() -> None:
    class Node:
        pass

    first, second = Node(), Node()
    first.other, second.other = second, first  # type: ignore[attr-defined]
    alive = weakref.ref(first)
    del first, second
    gc.disable()
    try:
        result = collect_garbage()
    finally:
        gc.enable()
    assert (alive(), result.collected >= 2) == (None, True)


def test_collect_garbage_times_collection_and_trim_on_the_given_clock() -> None:
    ticks: Iterator[float] = iter([10.0, 10.25])
    assert collect_garbage(clock=lambda: next(ticks)).seconds == 0.25


def test_trimmed_is_false_without_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reclaim, "_malloc_trim", lambda: None)
    assert collect_garbage().trimmed is False


@pytest.mark.parametrize(("returned", "trimmed"), [(1, True), (0, False)])
def test_trimmed_reports_whether_malloc_trim_released_memory(
    monkeypatch: pytest.MonkeyPatch, returned: int, trimmed: bool
) -> None:
    calls = []
    monkeypatch.setattr(reclaim, "_malloc_trim", lambda: lambda pad: calls.append(pad) or returned)
    assert (collect_garbage().trimmed, calls) == (trimmed, [0])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is a glibc extension")
def test_malloc_trim_is_found_on_glibc() -> None:
    assert reclaim._malloc_trim() is not None
