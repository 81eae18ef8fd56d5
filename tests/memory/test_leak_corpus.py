"""The leak corpus, each case a strategy run in a fresh interpreter under a MemoryManager with one
maintenance pass per cycle: every leak is named by the line marked `# LEAK` (or, for a native one,
reported as growth not explained by Python allocations), and a clean strategy never raises a diagnosis."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from tests.leak_corpus import CASES
from tests.leak_corpus.harness import Market, build_manager, cycles, load_case

REPO_ROOT = Path(__file__).resolve().parents[2]
# Leak detection confirms after two 10-reading windows and a diagnosis spans four passes: named by cycle 24.
MAX_CYCLES = 60
# A safety net for a hung child, not a speed target (a case takes a few seconds).
SUBPROCESS_TIMEOUT_SECONDS = 600


@pytest.fixture(params=CASES)
def named(request: pytest.FixtureRequest) -> dict:
    """The case run in a fresh interpreter until its leak is diagnosed (see tests/leak_corpus/run.py)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.leak_corpus.run", request.param, str(MAX_CYCLES)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["diagnosis"] is not None, f"{request.param} not named within {MAX_CYCLES} cycles"
    assert len(found["warnings"]) == 1, found["warnings"]
    return found


def test_each_leak_is_named_where_it_is_made(named):
    diagnosis, warning, marked = named["diagnosis"], named["warnings"][0], set(named["marked"])
    if named["expected"] == "python":
        assert diagnosis["verdict"] == "python", warning
        assert diagnosis["sites"][0]["site"] in marked, warning
        assert diagnosis["sites"][0]["site"] in warning
    elif named["expected"] == "type":
        grown = {growing["type"]: growing for growing in diagnosis["types"]}
        assert grown[named["growing_type"]]["allocated_at"][0]["site"] in marked, warning
        assert next(iter(marked)) in warning
    else:
        assert diagnosis["verdict"] == "unexplained", warning
        assert "unmanaged growth not explained by Python allocations" in warning
        assert "top growing sites" not in warning and ".py:" not in warning
    # The census shows the case's own type where it has one (its other objects are builtins that all code makes).
    if named["growing_type"] is not None:
        assert named["growing_type"] in {growing["type"] for growing in diagnosis["types"]}, warning
    assert ("gc is disabled" in warning) == (named["case"] == "gc_disabled_cycles")


def test_a_clean_strategy_never_raises_a_diagnosis():
    assert not tracemalloc.is_tracing()
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
