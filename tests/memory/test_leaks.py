"""Leak detection: regression slope, leak detector verdicts and warnings, release watch, tracemalloc diagnosis."""

from __future__ import annotations

import gc
import inspect
import logging
import random
import tracemalloc

import pytest

from crypto_bot.memory.leaks import (
    LEAK_THRESHOLD_BYTES_PER_CYCLE,
    GrowthTracker,
    LeakDetector,
    LeakReport,
    ReleaseWatch,
    diagnose,
)
from tests.fakes import FakeClock

KIB = 1024
MIB = 1024 * 1024


class Model:
    """A weakly referenceable stand-in for a cached value."""


# ----------------------------------------------------------------- GrowthTracker


def test_slope_of_a_line_is_exact():
    tracker = GrowthTracker(window_size=10)
    for x in range(10):
        tracker.add(x, 7.0 + 2.5 * x)
    assert tracker.slope == pytest.approx(2.5, rel=1e-12)


def test_slope_handles_uneven_x_spacing():
    tracker = GrowthTracker(window_size=10)
    for x in (0.0, 0.5, 3.0, 3.25, 9.0, 20.0):
        tracker.add(x, -4.0 * x + 1.0)
    assert tracker.slope == pytest.approx(-4.0, rel=1e-12)


def test_slope_keeps_precision_with_large_offsets():
    tracker = GrowthTracker(window_size=120)
    for i in range(120):
        x = 1e6 + 30.0 * i  # seconds since an old epoch
        tracker.add(x, 1e9 + 3.25 * (x - 1e6))  # a GiB-sized working set
    assert tracker.slope == pytest.approx(3.25, rel=1e-9)


def test_slope_stays_exact_over_a_long_sliding_run():
    tracker = GrowthTracker(window_size=120)
    for i in range(50_000):
        x = 1.7e9 + 0.1 * i  # unix time, sampled ten times a second
        spike = 3e12 if i == 100 else 0.0  # must leave no residue once it leaves the window
        tracker.add(x, 1e9 + 7.3e4 * (x - 1.7e9) + spike)
    assert tracker.slope == pytest.approx(7.3e4, rel=1e-12)


def test_window_forgets_old_samples():
    tracker = GrowthTracker(window_size=5)
    for x in range(5):
        tracker.add(x, 100.0 * x)  # steep start
    for x in range(5, 10):
        tracker.add(x, 1.0 * x)  # gentle end fills the whole window
    assert tracker.count == 5
    assert tracker.slope == pytest.approx(1.0)
    assert tracker.x_span == 4


def test_slope_is_none_below_three_samples():
    tracker = GrowthTracker()
    tracker.add(0, 0)
    tracker.add(1, 5)
    assert tracker.slope is None


def test_slope_is_none_when_all_x_are_equal():
    tracker = GrowthTracker()
    for y in (1.0, 2.0, 3.0):
        tracker.add(1e6, y)
    assert tracker.slope is None


@pytest.mark.parametrize("x, y", [(float("nan"), 1.0), (1.0, float("inf")), ("1", 1.0)])
def test_tracker_rejects_non_finite_samples(x, y):
    with pytest.raises(ValueError, match="must be a finite number"):
        GrowthTracker().add(x, y)


@pytest.mark.parametrize("window_size", [2, 0, 3.5, True])
def test_tracker_rejects_bad_window_size(window_size):
    with pytest.raises(ValueError, match="window_size"):
        GrowthTracker(window_size)


# ----------------------------------------------------------------- LeakDetector


def bot_memory(cycles: int, leak_bytes_per_cycle: int, seed: int):
    """(cycle, working set, managed bytes) of a bot whose RSS churns like a real one's.

    Gaussian noise of 256 KiB, a managed cache that fills and evicts half of itself, a little
    garbage that grows until a collection, and occasional permanent step drops (memory handed back).
    """
    rng = random.Random(seed)
    cache_bytes = garbage_bytes = returned_bytes = 0
    for cycle in range(cycles):
        cache_bytes += rng.randint(0, 64 * KIB)
        if cache_bytes > 6 * MIB:
            cache_bytes -= 3 * MIB
        garbage_bytes = 0 if rng.random() < 0.02 else garbage_bytes + rng.randint(0, 2 * KIB)
        if rng.random() < 0.005:
            returned_bytes += rng.randint(64 * KIB, 256 * KIB)
        noise = rng.gauss(0, 256 * KIB)
        working_set = 400 * MIB + cache_bytes + garbage_bytes - returned_bytes + noise + leak_bytes_per_cycle * cycle
        yield cycle, working_set, cache_bytes


def first_suspicion(detector: LeakDetector, samples) -> int | None:
    for cycle, working_set, managed in samples:
        if detector.observe(cycle, working_set, managed):
            return cycle + 1
    return None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_detector_flags_a_10_kib_per_cycle_leak_within_300_cycles(seed):
    detector = LeakDetector(unit="cycle")
    assert first_suspicion(detector, bot_memory(300, 10 * KIB, seed)) is not None
    assert detector.report().slope_bytes_per_unit > LEAK_THRESHOLD_BYTES_PER_CYCLE


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_detector_never_flags_noisy_flat_memory(seed):
    detector = LeakDetector(unit="cycle")
    assert first_suspicion(detector, bot_memory(3000, 0, seed)) is None
    assert detector.report().samples == 3000


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_detector_tolerates_the_allocator_creep_of_a_healthy_soak(seed):
    """After warm-up a healthy soak's RSS creeps up to ~4.5 KiB/cycle with no Python objects growing."""
    detector = LeakDetector(unit="cycle")
    assert first_suspicion(detector, bot_memory(3000, 4.5 * KIB, seed)) is None


def test_cycle_detector_and_soak_share_one_leak_threshold():
    from crypto_bot import soak

    assert LeakDetector(unit="cycle").slope_threshold == LEAK_THRESHOLD_BYTES_PER_CYCLE
    assert soak.LEAK_THRESHOLD_BYTES_PER_CYCLE is LEAK_THRESHOLD_BYTES_PER_CYCLE


def test_detector_confirms_after_exactly_windows_to_confirm_windows():
    detector = LeakDetector(unit="cycle", window_size=50, windows_to_confirm=3)
    line = ((cycle, 100 * MIB + 8 * KIB * cycle, 0) for cycle in range(400))
    assert first_suspicion(detector, line) == 150


def test_detector_ignores_growth_of_managed_memory():
    detector = LeakDetector(unit="cycle", window_size=20, windows_to_confirm=1)
    for cycle in range(100):
        managed = 64 * KIB * cycle  # a cache filling up is accounted for, not leaked
        assert not detector.observe(cycle, 100 * MIB + managed, managed)
    report = detector.report()
    assert report.slope_bytes_per_unit == pytest.approx(0.0)
    assert report.working_set_slope_bytes_per_unit == pytest.approx(64 * KIB)


def test_a_window_below_threshold_clears_the_suspicion():
    detector = LeakDetector(unit="cycle", window_size=10, windows_to_confirm=1)
    for cycle in range(10):
        detector.observe(cycle, 8 * KIB * cycle, 0)
    assert detector.report().suspected
    for cycle in range(10, 20):
        detector.observe(cycle, 80 * KIB, 0)
    report = detector.report()
    assert not report.suspected
    assert report.windows_above == 0


def test_hour_unit_reports_bytes_per_hour_from_seconds():
    detector = LeakDetector(unit="hour", window_size=10)
    for i in range(10):
        seconds = 30.0 * i
        detector.observe(seconds, 100 * MIB + 2 * KIB * seconds, 0)  # 2 KiB per second
    report = detector.report()
    assert report.unit == "hour"
    assert report.slope_bytes_per_unit == pytest.approx(2 * KIB * 3600)


def test_unmanaged_bytes_are_relative_to_the_first_observation():
    detector = LeakDetector(unit="cycle")
    detector.observe(0, 300 * MIB, 100 * MIB)
    detector.observe(1, 305 * MIB, 101 * MIB)
    assert detector.report().unmanaged_bytes == 4 * MIB


def test_explicit_baseline_replaces_the_first_observation():
    detector = LeakDetector(unit="cycle", baseline_unmanaged_bytes=150 * MIB)
    detector.observe(0, 300 * MIB, 100 * MIB)
    assert detector.report().unmanaged_bytes == 50 * MIB


def test_report_before_a_full_window_has_no_slope():
    detector = LeakDetector(unit="cycle")
    detector.observe(0, 1 * MIB, 0)
    assert detector.report() == LeakReport(
        suspected=False,
        unit="cycle",
        slope_bytes_per_unit=None,
        working_set_slope_bytes_per_unit=None,
        unmanaged_bytes=0,
        windows_above=0,
        samples=1,
    )


def test_leak_warning_is_rate_limited_and_carries_the_numbers(caplog):
    clock = FakeClock()
    detector = LeakDetector(
        unit="cycle", window_size=10, windows_to_confirm=1, warn_interval_seconds=600, clock=clock
    )
    cycles = iter(range(10_000))

    def leak_one_window() -> None:
        for _ in range(10):
            cycle = next(cycles)
            detector.observe(cycle, 100 * MIB + 10 * KIB * cycle, 0)

    with caplog.at_level(logging.WARNING, logger="crypto_bot.memory.leaks"):
        leak_one_window()
        clock.now += 599
        leak_one_window()
        assert len(caplog.records) == 1
        clock.now += 1
        leak_one_window()
    assert len(caplog.records) == 2
    message = caplog.records[0].getMessage()
    assert "10.0 KiB/cycle" in message
    assert "threshold 6.0 KiB/cycle" in message
    assert "of 10 samples" in message
    assert "MiB above baseline" in message


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"unit": "day"}, "unit"),
        ({"window_size": 1}, "window_size"),
        ({"windows_to_confirm": 0}, "windows_to_confirm"),
        ({"slope_threshold": float("nan")}, "slope_threshold"),
        ({"warn_interval_seconds": -1}, "warn_interval_seconds"),
    ],
)
def test_detector_rejects_bad_settings(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        LeakDetector(**kwargs)


@pytest.mark.parametrize(
    "sample, argument",
    [
        ((float("nan"), 1, 0), "x"),
        ((0, -1, 0), "working_set_bytes"),
        ((0, 1, float("inf")), "managed_bytes"),
    ],
)
def test_detector_rejects_bad_samples(sample, argument):
    with pytest.raises(ValueError, match=argument):
        LeakDetector().observe(*sample)


# ----------------------------------------------------------------- ReleaseWatch


def test_release_watch_reports_an_object_still_held():
    watch = ReleaseWatch()
    held = Model()
    assert watch.watch("held", held)
    assert watch.check() == ["held"]


def test_release_watch_is_silent_about_a_released_object():
    watch = ReleaseWatch()
    watch.watch("released", Model())
    assert watch.check() == []


def test_release_watch_reports_each_object_once():
    watch = ReleaseWatch()
    held = Model()
    watch.watch("held", held)
    watch.check()
    assert watch.check() == []
    assert len(watch) == 0


@pytest.fixture
def gc_disabled():
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_release_watch_collects_cycles_before_judging(gc_disabled):
    watch = ReleaseWatch()
    cyclic = Model()
    cyclic.self = cyclic
    watch.watch("cycle", cyclic)
    del cyclic
    assert watch.check(collect=True) == []


def test_release_watch_without_collect_sees_uncollected_cycles(gc_disabled):
    watch = ReleaseWatch()
    cyclic = Model()
    cyclic.self = cyclic
    watch.watch("cycle", cyclic)
    del cyclic
    assert watch.check(collect=False) == ["cycle"]
    gc.collect()


def test_release_watch_skips_objects_without_weakref_support():
    watch = ReleaseWatch()
    assert not watch.watch("dict", {"a": 1})
    assert len(watch) == 0


def test_release_watch_drops_the_oldest_beyond_max_pending():
    watch = ReleaseWatch(max_pending=2)
    held = [Model(), Model(), Model()]
    for index, obj in enumerate(held):
        watch.watch(index, obj)
    assert len(watch) == 2
    assert watch.check() == [1, 2]


def test_release_watch_collects_only_when_something_is_pending(monkeypatch):
    collections = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(args) or 0)
    watch = ReleaseWatch()
    watch.check()
    assert collections == []
    held = Model()
    watch.watch("held", held)
    watch.check()
    assert len(collections) == 1


# ----------------------------------------------------------------- diagnose

_KEPT_ALIVE: list[bytearray] = []


def allocating_sleep(seconds: float) -> None:
    """Stands in for time.sleep: allocates 4 MiB that outlive the window."""
    _KEPT_ALIVE.append(bytearray(4 * MIB))


def allocation_site() -> str:
    lines, first_line = inspect.getsourcelines(allocating_sleep)
    offset = next(index for index, line in enumerate(lines) if "bytearray(" in line)
    return f"{inspect.getsourcefile(allocating_sleep)}:{first_line + offset}"


@pytest.fixture
def not_tracing():
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already tracing in this interpreter")
    yield
    _KEPT_ALIVE.clear()


def test_diagnose_names_the_line_that_allocated_during_the_window(not_tracing):
    growth = diagnose(1.0, top=5, sleep=allocating_sleep)
    assert growth[0].location == allocation_site()
    assert growth[0].size_diff_bytes >= 4 * MIB
    assert growth[0].count_diff >= 1
    assert len(growth) <= 5


def test_diagnose_stops_tracemalloc_it_started(not_tracing):
    diagnose(0.5, sleep=allocating_sleep)
    assert not tracemalloc.is_tracing()


def test_diagnose_leaves_running_tracemalloc_running(not_tracing):
    tracemalloc.start()
    try:
        diagnose(0.5, sleep=allocating_sleep)
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


def test_diagnose_passes_the_window_to_sleep(not_tracing):
    slept = []
    diagnose(2.5, sleep=slept.append)
    assert slept == [2.5]


@pytest.mark.parametrize("seconds", [0, -1, 601, float("nan"), float("inf")])
def test_diagnose_rejects_a_bad_window(seconds):
    with pytest.raises(ValueError, match="seconds"):
        diagnose(seconds, sleep=lambda _: None)


def test_diagnose_rejects_a_bad_top():
    with pytest.raises(ValueError, match="top"):
        diagnose(1.0, top=0, sleep=lambda _: None)
