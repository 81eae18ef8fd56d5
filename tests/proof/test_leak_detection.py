"""Leak detection that works: an injected 10 KiB/cycle leak is flagged, a clean run never is."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.proof.conftest import read_rows, run_soak, soak_command

pytestmark = pytest.mark.proof

CYCLES = 300
# A light scanner workload: one new pair a cycle, two timeframes, short windows.
LIGHT = ("--new-symbols-per-cycle", "1", "--history-candles", "300", "--symbols", "40")


@pytest.fixture(scope="module")
def config(soak_config) -> Path:
    # A 2 MB cache budget fills during the warm-up (the first 60 cycles), so what grows after it is not cache.
    return soak_config("leaks", timeframes=["1m", "5m"], strategy__batch_size=2, cache_size_limit_mb=2)


def soak(config: Path, out: Path, *extra: str) -> tuple[dict, str]:
    result = run_soak(soak_command(config, out, CYCLES, *LIGHT, *extra), cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "summary.json").read_text()), result.stderr + result.stdout


def test_injected_leak_is_flagged_within_300_cycles_with_its_rate(config: Path, tmp_path: Path) -> None:
    summary, output = soak(config, tmp_path / "leaky", "--inject-leak-kib", "10")

    assert summary["leak_suspected"] is True
    flagged = [int(row["cycle"]) for row in read_rows(tmp_path / "leaky") if row["leak_suspected"] == "1"]
    assert flagged and flagged[0] <= CYCLES
    warning = re.search(r"suspected memory leak: unmanaged memory grew ([\d.]+) KiB/cycle", output)
    assert warning is not None, output[-3000:]
    assert 5.0 < float(warning.group(1)) < 20.0


def test_clean_run_never_raises_the_alarm(config: Path, tmp_path: Path) -> None:
    summary, output = soak(config, tmp_path / "clean")

    assert summary["leak_suspected"] is False
    assert all(row["leak_suspected"] == "0" for row in read_rows(tmp_path / "clean"))
    assert "suspected memory leak" not in output

