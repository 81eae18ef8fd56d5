"""The leak corpus, each case run as a strategy under a MemoryManager with one maintenance pass per cycle:
every leak is named by the line marked `# LEAK` (or, for a native one, reported as growth not explained by
Python allocations), and a clean strategy never raises a diagnosis."""

from __future__ import annotations

import logging
import tracemalloc
from collections.abc import Iterator

import pytest

from tests.leak_corpus import CASES
from tests.leak_corpus.harness import Market, build_manager, cycles, leak_lines, load_case, run_case

# Leak detection confirms after two 10-reading windows and a diagnosis spans four passes: named by cycle 24.
MAX_CYCLES = 60


@pytest.fixture(autouse=True)
def not_tracing() -> Iterator[None]:
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already tracing in this interpreter")
    yield
    assert not tracemalloc.is_tracing()


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest):
    return load_case(request.param)


@pytest.fixture
def named(case, caplog):
    """Run the case until its leak is diagnosed: (diagnosis, the warning's text)."""
    strategy = case.STRATEGY()
    run = None
    try:
        with caplog.at_level(logging.WARNING, logger="crypto_bot.memory"):
            run = run_case(strategy, max_cycles=MAX_CYCLES)
    finally:
        strategy.close()
        if run is not None:
            run.manager.stop()
    assert run.diagnosis is not None, f"{case.__name__} not named within {MAX_CYCLES} cycles"
    warnings = [record.getMessage() for record in caplog.records if record.getMessage().startswith("leak diagnosis")]
    assert len(warnings) == 1
    return run.diagnosis, warnings[0]


def test_each_leak_is_named_where_it_is_made(case, named):
    diagnosis, warning = named
    marked = leak_lines(case)
    if case.EXPECTED == "python":
        assert diagnosis.verdict == "python", warning
        assert diagnosis.sites[0].site in marked, warning
        assert diagnosis.sites[0].site in warning
    elif case.EXPECTED == "type":
        grown = {growing.name: growing for growing in diagnosis.types}
        assert grown[case.GROWING_TYPE].allocated_at[0][0] in marked, warning
        assert next(iter(marked)) in warning
    else:
        assert diagnosis.verdict == "unexplained", warning
        assert "unmanaged growth not explained by Python allocations" in warning
        assert "top growing sites" not in warning and ".py:" not in warning
    # The census shows the case's own type where it has one (its other objects are builtins that all code makes).
    if case.GROWING_TYPE is not None:
        assert case.GROWING_TYPE in {growing.name for growing in diagnosis.types}, warning
    assert ("gc is disabled" in warning) == case.__name__.endswith("gc_disabled_cycles")


def test_a_clean_strategy_never_raises_a_diagnosis():
    strategy = load_case("clean").STRATEGY()
    manager, clock = build_manager()
    try:
        for cycle in cycles(strategy, manager, clock, Market(manager)):
            assert not manager.last_report.leak_suspected, f"suspected at cycle {cycle}"
            assert not manager.diagnoser.window_open
            if cycle == 500:
                break
    finally:
        strategy.close()
        manager.stop()
    assert manager.diagnoser.diagnoses == 0
