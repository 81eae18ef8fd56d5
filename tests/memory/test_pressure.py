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
from crypto_bot.memory.pressure import ClearingPass, PressureLevel, PressurePolicy, Thrashing, ThrashWatch
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


def test_decision_says_when_hysteresis_held_the_level(policy: PressurePolicy) -> None:
    entered = assess(policy, 0.82)
    held = assess(policy, 0.77)
    assert (entered.held_by_hysteresis, held.held_by_hysteresis, held.level) == (False, True, PRESSURE)


def test_a_level_the_ratio_enters_itself_is_not_held(policy: PressurePolicy) -> None:
    assess(policy, 0.95)
    decision = assess(policy, 0.82)
    assert (decision.level, decision.held_by_hysteresis) == (PRESSURE, False)


def test_last_decision_is_the_one_that_set_the_level(policy: PressurePolicy) -> None:
    assert policy.last_decision is None
    decision = assess(policy, 0.82)
    policy.classify(0.3)
    assert policy.last_decision is decision


def test_thresholds_name_the_entry_ratio_of_each_level(policy: PressurePolicy) -> None:
    assert policy.thresholds == {CRITICAL: 0.9, PRESSURE: 0.8, GC: 0.7}


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


# ThrashWatch: a budget that clears what the process loads again, pass after pass


CACHE_BYTES = 4 * MIB
MODEL_BYTES = MIB


@pytest.fixture
def watch() -> ThrashWatch:
    return ThrashWatch(memory_threshold=0.8, margin_ratio=0.05, passes=3)


def clearing(
    level: PressureLevel = CRITICAL, *, cache: int = CACHE_BYTES, model: int = MODEL_BYTES, floor: int = 200 * MIB
) -> ClearingPass:
    """A pass that found `cache` and `model` bytes loaded and freed all of them."""
    return ClearingPass(
        level, cache, model, cache, model, floor_bytes=floor, limit_bytes=50 * MIB, limit_source="process"
    )


def quiet(level: PressureLevel) -> ClearingPass:
    """A pass that freed nothing."""
    return ClearingPass(level, 0, 0)


def observe_all(watch: ThrashWatch, passes: list[ClearingPass]) -> list[str]:
    """What each pass changed: "started", "stopped" or ""."""
    changes = []
    for one in passes:
        verdict = watch.observe(one)
        changes.append("started" if verdict.started else "stopped" if verdict.stopped else "")
    return changes


def test_clearing_what_came_back_pass_after_pass_is_thrashing(watch: ThrashWatch) -> None:
    # The first clear starts the run; each later one cleared what the process had loaded again.
    assert observe_all(watch, [clearing()] * 4) == ["", "", "", "started"]


def test_thrashing_is_reported_once_while_it_lasts(watch: ThrashWatch) -> None:
    assert observe_all(watch, [clearing()] * 8).count("started") == 1
    assert watch.thrashing is not None and watch.thrashing.passes == 7


def test_a_pass_below_pressure_stops_it_and_a_new_run_starts_it_again(watch: ThrashWatch) -> None:
    changes = observe_all(watch, [clearing()] * 4 + [quiet(GC)] + [clearing()] * 4)
    assert changes == ["", "", "", "started", "stopped", "", "", "", "started"]


def test_a_pass_below_pressure_breaks_a_run_before_it_counts(watch: ThrashWatch) -> None:
    assert observe_all(watch, [clearing()] * 3 + [quiet(NORMAL)] + [clearing()] * 3) == [""] * 7


def test_passes_that_free_nothing_neither_count_nor_break_the_run(watch: ThrashWatch) -> None:
    # Several passes to a cycle: the ones that find nothing come back yet are neutral.
    run = [clearing(), quiet(CRITICAL), clearing(), quiet(CRITICAL), clearing(), quiet(PRESSURE), clearing()]
    assert observe_all(watch, run)[-1] == "started"


def test_freeing_what_was_never_cleared_before_is_not_thrashing(watch: ThrashWatch) -> None:
    # PRESSURE shrinking an old cache a slice at a time: nothing freed had come back after a clear.
    slices = [ClearingPass(PRESSURE, 40 * MIB - step * MIB, 0, MIB, 0) for step in range(8)]
    assert observe_all(watch, slices) == [""] * 8


def test_thrashing_carries_the_limit_floor_and_reloaded_bytes(watch: ThrashWatch) -> None:
    observe_all(watch, [clearing(floor=210 * MIB), clearing(floor=200 * MIB), clearing(), clearing(model=2 * MIB)])
    assert watch.thrashing == Thrashing(
        passes=3,
        level=CRITICAL,
        limit_source="process",
        limit_bytes=50 * MIB,
        floor_bytes=200 * MIB,
        cache_reloaded_bytes=CACHE_BYTES,
        model_reloaded_bytes=2 * MIB,
        memory_threshold=0.8,
        margin_ratio=0.05,
    )


def test_only_what_came_back_since_the_previous_clear_counts_as_reloaded(watch: ThrashWatch) -> None:
    # A model that stayed loaded (pinned) is not reloaded: it was left by the previous clear.
    pinned = 3 * MIB
    run = [ClearingPass(CRITICAL, CACHE_BYTES, pinned + MODEL_BYTES, CACHE_BYTES, MODEL_BYTES)] * 4
    observe_all(watch, run)
    assert (watch.thrashing.cache_reloaded_bytes, watch.thrashing.model_reloaded_bytes) == (CACHE_BYTES, MODEL_BYTES)


@pytest.mark.parametrize(
    ("floor_bytes", "cache_bytes", "model_bytes", "stopping_mib"),
    [
        (200 * MIB, MIB, MIB // 2, 269),  # 201.5 MiB / 0.75 = 268.7 MiB, rounded up
        (73 * MIB, 2 * MIB, 0, 101),  # 75 MiB / 0.75 = 100 MiB exactly: at 100 MiB a held PRESSURE stays
    ],
)
def test_stopping_limit_holds_the_reloaded_working_set_below_where_pressure_is_left(
    floor_bytes: int, cache_bytes: int, model_bytes: int, stopping_mib: int
) -> None:
    thrashing = Thrashing(3, CRITICAL, "process", 50 * MIB, floor_bytes, cache_bytes, model_bytes, 0.8, 0.05)
    assert thrashing.needed_bytes == floor_bytes + cache_bytes + model_bytes
    assert thrashing.stopping_limit_bytes == stopping_mib * MIB


def test_at_the_stopping_limit_the_policy_leaves_pressure_and_one_mib_less_it_does_not(clock: FakeClock) -> None:
    # A held PRESSURE (after CRITICAL) is what a running process sees when its limit is raised.
    thrashing = Thrashing(3, CRITICAL, "process", 50 * MIB, 200 * MIB, MIB, MIB // 2, 0.8, 0.05)
    levels = []
    for limit_bytes in (thrashing.stopping_limit_bytes - MIB, thrashing.stopping_limit_bytes):
        policy = PressurePolicy(clock=clock)
        assess(policy, 0.95)
        levels.append(assess(policy, thrashing.needed_bytes / limit_bytes).level)
    assert levels == [PRESSURE, GC]


def test_stopping_limit_is_unknown_without_a_floor() -> None:
    thrashing = Thrashing(3, CRITICAL, "system_percent", None, None, MIB, 0, 0.8, 0.05)
    assert (thrashing.needed_bytes, thrashing.stopping_limit_bytes) == (None, None)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"memory_threshold": 0.0, "margin_ratio": 0.0}, "memory_threshold"),
        ({"memory_threshold": 0.8, "margin_ratio": -0.1}, "margin_ratio"),
        ({"memory_threshold": 0.8, "margin_ratio": 0.8}, "margin_ratio"),
        ({"memory_threshold": 0.8, "margin_ratio": 0.05, "passes": 0}, "passes"),
    ],
)
def test_invalid_watch_argument_is_named(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be"):
        ThrashWatch(**kwargs)


def test_invalid_pass_figure_is_named(watch: ThrashWatch) -> None:
    with pytest.raises(ValueError, match="cache_bytes_freed must be a number of bytes"):
        watch.observe(ClearingPass(CRITICAL, 0, 0, cache_bytes_freed=-1))


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
