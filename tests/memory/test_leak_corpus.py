"""The leak corpus in the real bot: each case is the strategy plugin of a TradingBot on the simulated
market, run in a fresh interpreter with one maintenance pass per cycle (tests/leak_corpus/harness.py).
Every leak is named by the line marked `# LEAK` (or, for a native one, reported as growth not
explained by Python allocations) while the plugin stays enabled, and the clean plugin never raises
a diagnosis."""

from __future__ import annotations

from typing import Any

import pytest

from tests.leak_corpus import CASES
from tests.leak_corpus.harness import judge
from tests.leak_corpus.run import fresh_run

# Leak detection confirms after two 10-reading windows and a diagnosis spans four passes: 24 passes, which
# is cycle 23 (the phase runner adds a pass of its own at the first cycle).
MAX_CYCLES = 60


@pytest.fixture(params=CASES)
def named(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The case run in the bot in a fresh interpreter until its leak is diagnosed (see tests/leak_corpus/run.py)."""
    found = fresh_run(request.param, max_cycles=MAX_CYCLES)
    # A plugin that kept failing would be disabled by the bot, and its leak would stop with it.
    assert found["plugin_enabled"] and found["plugin_failures"] == [], found["plugin_failures"]
    assert found["diagnosis"] is not None, f"{request.param} not named within {MAX_CYCLES} cycles"
    assert len(found["warnings"]) == 1, found["warnings"]
    return found


def test_each_leak_is_named_where_it_is_made(named: dict[str, Any]) -> None:
    diagnosis, warning = named["diagnosis"], named["warnings"][0]
    line, right = judge(named)
    assert right, warning
    if named["expected"] == "native":
        assert "unmanaged growth not explained by Python allocations" in warning
        assert "top growing sites" not in warning and ".py:" not in warning
    else:
        assert line in warning
    # The census shows the case's own type where it has one (its other objects are builtins that all code makes).
    if named["growing_type"] is not None:
        assert named["growing_type"] in {growing["type"] for growing in diagnosis["types"]}, warning
    assert ("gc is disabled" in warning) == (named["case"] == "gc_disabled_cycles")


@pytest.mark.parametrize("cycles", [300, pytest.param(3000, marks=pytest.mark.proof)])
def test_the_clean_plugin_runs_without_a_leak_suspected_or_diagnosed(cycles: int) -> None:
    found = fresh_run("clean", max_cycles=cycles)

    assert found["cycles"] == cycles
    assert found["suspected_cycles"] == []
    assert found["diagnosis"] is None and found["abandoned_windows"] == 0 and found["warnings"] == []
    assert found["plugin_enabled"] and found["plugin_failures"] == []
