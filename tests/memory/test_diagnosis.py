"""Leak diagnosis: owner lines, the type census, the verdict, and windows that are bounded and never left on."""

from __future__ import annotations

import collections
import inspect
import json
import logging
import os
import sys
import threading
import time
import tracemalloc

import pytest

from crypto_bot.memory.diagnosis import (
    DiagnosisSettings,
    LeakDiagnoser,
    Verdict,
    allocation_sites,
    census,
    compare_snapshots,
    describe,
    growing_types,
    is_library_file,
    judge,
    managed_by_site,
)
from tests.fakes import FakeClock
from tests.memory.support import THREAD_WAIT_SECONDS

KIB = 1024
MIB = 1024 * KIB

_KEPT: list[object] = []


@pytest.fixture
def tracing():
    """tracemalloc on with enough frames to reach out of the standard library; off afterwards."""
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already tracing in this interpreter")
    tracemalloc.start(32)
    yield
    tracemalloc.stop()
    _KEPT.clear()


@pytest.fixture
def not_tracing():
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already tracing in this interpreter")
    yield
    assert not tracemalloc.is_tracing(), "a diagnosis left tracemalloc on"
    _KEPT.clear()


def line_of(function, marker: str) -> str:
    """`path:line` of the line of `function` that contains `marker`."""
    lines, first = inspect.getsourcelines(function)
    offset = next(index for index, line in enumerate(lines) if marker in line)
    return f"{inspect.getsourcefile(function)}:{first + offset}"


# ----------------------------------------------------------------- owner lines


def test_standard_library_and_installed_packages_are_library_files():
    assert is_library_file(collections.__file__)
    assert is_library_file(pytest.__file__)
    assert is_library_file("<frozen abc>")
    assert is_library_file("/opt/app/lib/python3.11/site-packages/somepkg/mod.py")


def test_the_project_and_its_tests_are_not_library_files():
    assert not is_library_file(__file__)
    assert not is_library_file(inspect.getsourcefile(LeakDiagnoser))


def grow_through_the_standard_library() -> None:
    _KEPT.append(collections.deque(range(20_000)))  # the owner line; the allocation happens inside deque


def test_a_site_is_the_first_line_outside_the_standard_library(tracing):
    before = tracemalloc.take_snapshot()
    grow_through_the_standard_library()
    after = tracemalloc.take_snapshot()

    sites, traced = compare_snapshots(before, after, top=3)

    assert sites[0].site == line_of(grow_through_the_standard_library, "deque(range")
    assert sites[0].owner_found
    assert sites[0].size_diff_bytes > 100 * KIB
    assert traced >= sites[0].size_diff_bytes


def test_a_site_reports_its_innermost_frame_beside_the_owner(tracing):
    before = tracemalloc.take_snapshot()
    _KEPT.append(json.loads("[" + ",".join(["[1.5, 2.5]"] * 5000) + "]"))  # parsed inside the json package
    after = tracemalloc.take_snapshot()

    site = compare_snapshots(before, after, top=1)[0][0]

    assert site.site.startswith(f"{__file__}:")
    assert site.innermost != site.site
    assert is_library_file(site.innermost.rpartition(":")[0])
    assert site.traceback[-1] == site.innermost


def test_rates_are_per_cycle(tracing):
    before = tracemalloc.take_snapshot()
    _KEPT.append(bytearray(400 * KIB))
    after = tracemalloc.take_snapshot()

    site = compare_snapshots(before, after, cycles=4, top=1)[0][0]

    assert site.bytes_per_cycle == pytest.approx(site.size_diff_bytes / 4)
    assert site.blocks_per_cycle == pytest.approx(site.count_diff / 4)


def cache_values() -> list[bytearray]:
    return [bytearray(64 * KIB) for _ in range(8)]  # what a managed cache holds


def test_what_managed_caches_hold_is_not_growth(tracing):
    before = tracemalloc.take_snapshot()
    managed_before = managed_by_site([])
    values = cache_values()
    after = tracemalloc.take_snapshot()
    managed_after = managed_by_site((value, sys.getsizeof(value)) for value in values)

    sites, traced = compare_snapshots(before, after, managed_before=managed_before, managed_after=managed_after)

    loader = line_of(cache_values, "bytearray(64")
    left = sum(site.size_diff_bytes for site in sites if site.site == loader)  # the list holding them
    assert left < KIB
    assert traced < 8 * KIB


def test_a_value_held_by_two_entries_counts_once(tracing):
    value = bytearray(10 * KIB)
    assert sum(managed_by_site([(value, 10 * KIB), (value, 10 * KIB)]).values()) == 10 * KIB


def test_values_allocated_before_tracing_are_not_managed_growth(tracing):
    assert managed_by_site([(b"interned before tracing", 100)]) == {}


# ----------------------------------------------------------------- census


class Widget:
    def __init__(self, label: str) -> None:
        self.label = label


def make_widgets(count: int) -> list[Widget]:
    return [Widget(f"widget number {index}" * 4) for index in range(count)]  # where the widgets are made


def test_the_census_counts_instances_by_type():
    widgets = make_widgets(300)
    assert census()[Widget] >= len(widgets)


def test_growing_types_lists_what_grew_most_first():
    before = census()
    widgets = make_widgets(300)
    after = census()

    grown = growing_types(before, after, cycles=3, top=50)

    widget = next(growing for growing in grown if growing.name.endswith("Widget"))
    assert widget.count_diff == len(widgets)
    assert widget.per_cycle == pytest.approx(100)
    assert widget.python_class
    assert [growing.count_diff for growing in grown] == sorted((growing.count_diff for growing in grown), reverse=True)
    assert all(growing.count_diff > 0 for growing in grown)


def test_allocation_sites_name_the_line_that_made_instances_of_a_python_class(tracing):
    # CPython 3.11 has no traceback for an instance with a managed __dict__; its attributes say where it was made.
    widgets = make_widgets(50)
    sites = allocation_sites([Widget])
    assert sites[Widget][0] == (line_of(make_widgets, "Widget(f"), len(widgets))


# ----------------------------------------------------------------- verdict


@pytest.mark.parametrize(
    "unmanaged, traced, verdict",
    [
        (100 * KIB, 90 * KIB, Verdict.PYTHON),
        (100 * KIB, 30 * KIB, Verdict.PYTHON),
        (100 * KIB, 10 * KIB, Verdict.UNEXPLAINED),
        (100 * KIB, -5 * KIB, Verdict.UNEXPLAINED),
        (0, 50 * KIB, Verdict.NO_GROWTH),
        (-10 * KIB, 0, Verdict.NO_GROWTH),
        (None, 50 * KIB, Verdict.PYTHON),
        (None, 0, Verdict.NO_GROWTH),
    ],
)
def test_judge_blames_python_only_when_its_allocations_explain_the_growth(unmanaged, traced, verdict):
    assert judge(unmanaged, traced, 0.25)[0] == verdict


# ----------------------------------------------------------------- windows


class Process:
    """What a diagnoser reads: unmanaged memory that grows by `step` bytes per pass, and cycles.

    As in a real process, tracemalloc's own memory is part of the unmanaged figure (the diagnoser
    takes it out again): without it, tracemalloc freeing traces during a window would read as growth.
    """

    def __init__(self, step: int = 100 * KIB) -> None:
        self.unmanaged = 50 * MIB
        self.step = step
        self.cycles = 0
        self.managed: list[tuple[object, int]] = []

    def advance(self) -> None:
        self.unmanaged += self.step
        self.cycles += 1

    def unmanaged_bytes(self) -> int:
        return self.unmanaged + tracemalloc.get_tracemalloc_memory()


@pytest.fixture
def process() -> Process:
    return Process()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def delivered() -> list:
    return []


@pytest.fixture
def make_diagnoser(process, clock, delivered, not_tracing):
    made: list[LeakDiagnoser] = []

    def make(**settings) -> LeakDiagnoser:
        diagnoser = LeakDiagnoser(
            DiagnosisSettings(**{"window_passes": 2, "cooldown_seconds": 600, **settings}),
            clock=clock,
            read_unmanaged_bytes=process.unmanaged_bytes,
            read_cycles=lambda: process.cycles,
            read_managed_values=lambda: process.managed,
            on_diagnosis=delivered.append,
        )
        made.append(diagnoser)
        return diagnoser

    yield make
    for diagnoser in made:
        diagnoser.abandon("test over")


def leak_one_cycle() -> None:
    _KEPT.append(bytearray(100 * KIB))  # the leaking line of the window tests


def passes(diagnoser: LeakDiagnoser, process: Process, clock: FakeClock, count: int, *, suspected: bool = True, leak=leak_one_cycle):
    for _ in range(count):
        leak()
        process.advance()
        clock.advance(60)
        result = diagnoser.on_pass(suspected, process.unmanaged)
        if result is not None:
            return result
    return None


def test_no_window_opens_while_no_leak_is_suspected(make_diagnoser, process, clock, not_tracing):
    diagnoser = make_diagnoser()
    assert passes(diagnoser, process, clock, 50, suspected=False) is None
    assert not diagnoser.window_open
    assert diagnoser.diagnoses == 0


def test_a_suspected_leak_is_traced_for_a_bounded_number_of_passes_and_named(make_diagnoser, process, clock, not_tracing):
    diagnoser = make_diagnoser(window_passes=3)
    passes(diagnoser, process, clock, 5, suspected=False)  # the trend: 100 KiB per cycle

    opened = passes(diagnoser, process, clock, 1)
    assert opened is None and diagnoser.window_open and tracemalloc.is_tracing()
    result = passes(diagnoser, process, clock, 10)

    assert result is not None and not tracemalloc.is_tracing() and not diagnoser.window_open
    assert result.passes == 3 and result.cycles == 3 and result.cycle_unit == "cycle"
    assert result.verdict == Verdict.PYTHON
    assert result.sites[0].site == line_of(leak_one_cycle, "bytearray(100")
    assert result.sites[0].bytes_per_cycle == pytest.approx(100 * KIB, rel=0.05)
    assert result.unmanaged_bytes_per_cycle == pytest.approx(100 * KIB)
    assert 0.9 < result.explained_ratio < 1.1


def test_the_diagnosis_goes_to_the_callback_and_stays_as_last(make_diagnoser, process, clock, delivered, not_tracing):
    diagnoser = make_diagnoser()
    result = passes(diagnoser, process, clock, 10)
    assert delivered == [result]
    assert diagnoser.last is result
    assert diagnoser.diagnoses_by_verdict == {Verdict.PYTHON: 1}


def test_growth_python_does_not_allocate_is_not_blamed_on_a_line(make_diagnoser, process, clock, not_tracing):
    diagnoser = make_diagnoser()
    result = passes(diagnoser, process, clock, 10, leak=lambda: None)  # memory grows, no Python allocation

    assert result.verdict == Verdict.UNEXPLAINED
    assert "unmanaged growth not explained by Python allocations" in result.message
    assert "top growing sites" not in result.message
    assert __file__ not in result.message
    assert result.unexplained_bytes_per_cycle > 90 * KIB


def test_no_growth_during_the_window_is_said_so(make_diagnoser, process, clock, not_tracing):
    process.step = 0
    diagnoser = make_diagnoser()
    result = passes(diagnoser, process, clock, 10, leak=lambda: None)
    assert result.verdict == Verdict.NO_GROWTH
    assert "did not grow" in result.message


def test_rates_are_per_maintenance_pass_when_no_cycles_are_counted(make_diagnoser, process, clock, not_tracing):
    diagnoser = LeakDiagnoser(
        DiagnosisSettings(window_passes=2),
        clock=clock,
        read_unmanaged_bytes=process.unmanaged_bytes,
    )
    try:
        result = passes(diagnoser, process, clock, 10)
    finally:
        diagnoser.abandon("test over")
    assert result.cycle_unit == "maintenance pass"
    assert result.cycles == 2
    assert "maintenance passes" in result.message


def test_windows_never_run_back_to_back(make_diagnoser, process, clock, not_tracing):
    diagnoser = make_diagnoser(cooldown_seconds=3600)
    assert passes(diagnoser, process, clock, 10) is not None
    assert passes(diagnoser, process, clock, 55) is None  # 55 minutes later, still suspected
    assert not diagnoser.window_open
    assert passes(diagnoser, process, clock, 10) is not None
    assert diagnoser.diagnoses == 2


def test_a_window_older_than_its_cap_closes_at_the_next_pass(make_diagnoser, process, clock, not_tracing):
    diagnoser = make_diagnoser(window_passes=10, max_window_seconds=150)
    result = passes(diagnoser, process, clock, 20)
    assert result is not None
    assert result.passes < 10
    assert "cut short" in result.message and "cap is 150 s" in result.cut_short
    assert not tracemalloc.is_tracing()


def test_a_window_over_its_trace_memory_cap_is_abandoned_before_its_baseline(make_diagnoser, process, clock, not_tracing):
    diagnoser = make_diagnoser(max_trace_memory_bytes=1)
    assert passes(diagnoser, process, clock, 5) is None
    assert diagnoser.abandoned >= 1
    assert "cap" in diagnoser.last_abandon_reason
    assert not tracemalloc.is_tracing()


def test_the_watchdog_stops_tracing_when_no_pass_comes(make_diagnoser, process, clock, not_tracing):
    diagnoser = make_diagnoser(max_window_seconds=0.05, watchdog_interval_seconds=0.01)
    passes(diagnoser, process, clock, 1)
    assert tracemalloc.is_tracing()

    deadline = time.monotonic() + THREAD_WAIT_SECONDS
    while tracemalloc.is_tracing() and time.monotonic() < deadline:
        time.sleep(0.01)

    assert not tracemalloc.is_tracing()
    assert diagnoser.abandoned == 1 and "no maintenance pass" in diagnoser.last_abandon_reason


def test_abandon_stops_tracing(make_diagnoser, process, clock, not_tracing):
    diagnoser = make_diagnoser()
    passes(diagnoser, process, clock, 2)
    assert diagnoser.abandon("stopping")
    assert not tracemalloc.is_tracing()
    assert not diagnoser.abandon("again")


def test_tracing_someone_else_started_is_used_and_left_on(make_diagnoser, process, clock, not_tracing):
    tracemalloc.start(5)
    try:
        result = passes(make_diagnoser(), process, clock, 10)
        assert tracemalloc.is_tracing()
        assert result is not None and not result.tracing_started_here and result.frames == 5
    finally:
        tracemalloc.stop()


def test_a_failing_step_abandons_the_window_and_stops_tracing(process, clock, caplog, not_tracing):
    def broken() -> int:
        raise OSError("statm unreadable")

    diagnoser = LeakDiagnoser(DiagnosisSettings(window_passes=2), clock=clock, read_unmanaged_bytes=broken)
    with caplog.at_level(logging.ERROR, logger="crypto_bot.memory.diagnosis"):
        assert passes(diagnoser, process, clock, 5) is None
    assert diagnoser.abandoned >= 1 and "statm unreadable" in diagnoser.last_abandon_reason
    assert not tracemalloc.is_tracing()


def test_a_disabled_diagnoser_never_traces(make_diagnoser, process, clock, not_tracing):
    diagnoser = make_diagnoser(enabled=False)
    assert passes(diagnoser, process, clock, 20) is None
    assert diagnoser.diagnoses == 0


def test_state_reports_the_window_and_the_trend(make_diagnoser, process, clock, not_tracing):
    diagnoser = make_diagnoser()
    passes(diagnoser, process, clock, 5, suspected=False)
    state = diagnoser.state()
    assert state["window_open"] is False
    assert state["unmanaged_trend_bytes_per_cycle"] == pytest.approx(100 * KIB)
    assert state["trend_unit"] == "cycle"
    passes(diagnoser, process, clock, 1)
    assert diagnoser.state()["window_open"] is True


def test_concurrent_passes_and_abandons_never_leave_tracing_on(make_diagnoser, process, clock, not_tracing):
    diagnoser = make_diagnoser(cooldown_seconds=0)
    stop = threading.Event()
    errors: list[BaseException] = []

    def abandon_repeatedly() -> None:
        try:
            while not stop.is_set():
                diagnoser.abandon("race")
        except BaseException as error:
            errors.append(error)

    racer = threading.Thread(target=abandon_repeatedly)
    racer.start()
    try:
        passes(diagnoser, process, clock, 200, leak=lambda: None)
    finally:
        stop.set()
        racer.join(THREAD_WAIT_SECONDS)
    diagnoser.abandon("test over")
    assert errors == []
    assert not tracemalloc.is_tracing()


# ----------------------------------------------------------------- settings and message


@pytest.mark.parametrize(
    "settings, name",
    [
        ({"window_passes": 0}, "window_passes"),
        ({"frames": 0}, "frames"),
        ({"max_window_seconds": 0}, "max_window_seconds"),
        ({"max_trace_memory_bytes": -1}, "max_trace_memory_bytes"),
        ({"cooldown_seconds": -1}, "cooldown_seconds"),
        ({"explained_ratio": 0}, "explained_ratio"),
        ({"explained_ratio": 1.5}, "explained_ratio"),
        ({"trend_samples": 2}, "trend_samples"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
def test_settings_refuse_values_that_cannot_work(settings, name):
    with pytest.raises(ValueError, match=name):
        DiagnosisSettings(**settings)


def test_the_message_names_sites_types_and_a_disabled_gc(make_diagnoser, process, clock, not_tracing):
    result = passes(make_diagnoser(), process, clock, 10)
    text = describe(type(result)(**{**{f: getattr(result, f) for f in result.__dataclass_fields__}, "gc_enabled": False}))
    assert line_of(leak_one_cycle, "bytearray(100") in text
    assert "KiB/cycle" in text and "blocks/cycle" in text
    assert "gc is disabled" in text


def test_a_diagnosis_serializes_to_json(make_diagnoser, process, clock, not_tracing):
    result = passes(make_diagnoser(), process, clock, 10)
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["verdict"] == "python"
    assert payload["sites"][0]["site"] == line_of(leak_one_cycle, "bytearray(100")
    assert payload["message"] == result.message
    assert os.path.isabs(payload["sites"][0]["site"].rpartition(":")[0])


def test_per_pass_a_leak_slowed_by_tracing_is_still_blamed_on_its_line(process, clock, not_tracing):
    """Without counted cycles, a pass during the window covers fewer cycles than one before it."""
    diagnoser = LeakDiagnoser(DiagnosisSettings(window_passes=2), clock=clock, read_unmanaged_bytes=lambda: process.unmanaged)
    process.cycles = 0  # never counted: rates per maintenance pass
    try:
        for _ in range(6):  # before the window: 100 KiB per pass
            process.unmanaged += 100 * KIB
            clock.advance(60)
            diagnoser.on_pass(False, process.unmanaged)
        process.step = 10 * KIB  # tracing slows the work tenfold: a tenth of the cycles per pass

        def slowed_leak() -> None:
            _KEPT.append(bytearray(10 * KIB))  # the slowed leak

        result = None
        for _ in range(6):
            slowed_leak()
            process.unmanaged += process.step
            clock.advance(60)
            result = diagnoser.on_pass(True, process.unmanaged) or result
    finally:
        diagnoser.abandon("test over")
    assert result.cycle_unit == "maintenance pass"
    assert result.verdict == Verdict.PYTHON
    assert result.sites[0].site == line_of(slowed_leak, "bytearray(10")
