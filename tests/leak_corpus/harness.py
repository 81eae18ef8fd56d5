"""Runs a corpus case in the real bot: the case is the strategy plugin of a `TradingBot` on the built-in
simulated market, driven cycle by cycle as `crypto-bot run` drives it.

Each cycle is `bot.run_cycle()` (candidates, candle windows refreshed in the bot's managed cache,
the plugin's `signal` per symbol through the plugin host, paper fills in a SQLite journal, exits,
`on_cycle_end`) then `manager.note_cycle()`, then one maintenance pass with the manager's clock moved
one cycle interval (a minute: the simulated market moves one 1m candle per cycle). The settings are
the bot's defaults (six symbols, timeframes 1m, 5m and 1h, 300-candle windows) with leak windows of
10 readings at 1 MiB/hour; memory is the process's real RSS (a leak must really grow it) with a fixed
usage ratio, so that no pressure tier acts. The phase runner's own maintenance, due every
`maintenance_interval_seconds` of real time, is set a day apart: it runs once, at the first cycle,
and every other pass is the per-cycle one (what the runner does in a bot whose cycles are a minute
apart). Journal and diagnosis reports go to the given folder.

One run is one case in one interpreter: `run.py` runs it in a fresh one for the tests and the bench.
"""

from __future__ import annotations

import importlib
import inspect
import re
import statistics
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from crypto_bot.memory import MemoryManager, MemoryProbe, MemoryReading
from crypto_bot.memory.config import MAX_SECONDS
from crypto_bot.memory.diagnosis import DEFAULT_FRAMES, DiagnosisSettings
from crypto_bot.memory.reclaim import collect_garbage
from crypto_bot.settings import Settings, parse_settings
from tests.bot.support import Session
from tests.fakes import FakeClock

CYCLE_SECONDS = 60.0
_MARKER = re.compile(r"#\s*LEAK\b")


class RssProbe:
    """The process's real RSS, with a fixed usage ratio (the pressure tiers stay at NORMAL)."""

    def __init__(self) -> None:
        self._probe = MemoryProbe()

    def rss_bytes(self) -> int | None:
        return self._probe.rss_bytes()

    def read(self) -> MemoryReading:
        return MemoryReading(
            rss_bytes=self.rss_bytes(),
            system_total_bytes=None,
            system_available_bytes=None,
            system_percent=None,
            cgroup_limit_bytes=None,
            cgroup_high_bytes=None,
            cgroup_usage_bytes=None,
            working_set_bytes=None,
            oom_kills=None,
            psi_some_avg10=None,
            limit_bytes=None,
            usage_ratio=0.3,
            cgroup_version=None,
        )


def load_case(name: str) -> ModuleType:
    return importlib.import_module(f"tests.leak_corpus.{name}")


def leak_lines(module: ModuleType) -> set[str]:
    """`path:line` of every line marked `# LEAK` in the module's source."""
    path = inspect.getsourcefile(module)
    lines, _ = inspect.getsourcelines(module)
    return {f"{path}:{number}" for number, line in enumerate(lines, start=1) if _MARKER.search(line)}


def corpus_settings(module: ModuleType, data_dir: Path) -> Settings:
    """The bot's default settings with the case as its plugin, leak detection tuned for minute cycles
    (10-reading windows, 1 MiB/hour: ~17 KiB/cycle), and the journal in `data_dir`."""
    raw = {
        "enable_background_cleanup": False,
        "maintenance_interval_seconds": MAX_SECONDS,
        "leak_window_samples": 10,
        "leak_slope_threshold_mb_per_hour": 1.0,
        "cache_size_limit_mb": 64,
        "market": {"source": "simulated"},
        "strategy": {"plugin": f"{module.__name__}:{module.STRATEGY.__name__}"},
        "storage": {"journal_path": str(data_dir / "journal.sqlite")},
    }
    return parse_settings(raw, config_dir=data_dir)


@dataclass
class Timings:
    """Wall time of the bot's cycles (apart by whether tracemalloc traced them) and of the maintenance passes."""

    cycle_seconds: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})
    window_pass_seconds: list[float] = field(default_factory=list)
    idle_pass_seconds: list[float] = field(default_factory=list)
    idle_diagnosis_seconds: list[float] = field(default_factory=list)  # the diagnoser's share of each idle pass

    def summary(self) -> dict[str, Any]:
        """Medians in ms (the diagnosis per idle pass in us), and every window pass."""
        return {
            "cycle_ms": _median_ms(self.cycle_seconds[False]),
            "cycle_in_window_ms": _median_ms(self.cycle_seconds[True]),
            "idle_pass_ms": _median_ms(self.idle_pass_seconds),
            "diagnosis_per_idle_pass_us": None
            if not self.idle_diagnosis_seconds
            else 1e6 * statistics.median(self.idle_diagnosis_seconds),
            "window_passes_ms": [1000 * seconds for seconds in self.window_pass_seconds],
        }


def _median_ms(values: list[float]) -> float | None:
    return 1000 * statistics.median(values) if values else None


@dataclass
class Run:
    """What a run of a case found: the cycle whose pass delivered the first diagnosis (None if none did),
    the cycles whose pass suspected a leak, whether the plugin was still enabled at the end, the timings."""

    cycles: int
    named_at_cycle: int | None
    diagnosis: dict[str, Any] | None
    suspected_cycles: list[int]
    abandoned_windows: int
    plugin_enabled: bool
    timings: Timings


def run_case(name: str, data_dir: Path, *, max_cycles: int, frames: int = DEFAULT_FRAMES) -> Run:
    """Run the case in the bot until the first diagnosis or `max_cycles`; the bot is closed on return.

    Starts from a trimmed heap, so that memory freed while building the bot is not reused by the
    leak without growing RSS (which would hide it from the detector for a while).
    """
    settings = corpus_settings(load_case(name), data_dir)
    clock = FakeClock()
    manager = MemoryManager(
        settings.memory,
        probe=RssProbe(),
        clock=clock,
        diagnosis=DiagnosisSettings(frames=frames),
        report_dir=data_dir,
    )
    timings = Timings()
    diagnosis_seconds = _time_diagnosis(manager)
    session = Session(settings, memory=manager)
    collect_garbage()
    named_at, suspected = None, []
    try:
        for cycle in range(1, max_cycles + 1):
            tracing = tracemalloc.is_tracing()
            started = time.perf_counter()
            session.cycle()
            timings.cycle_seconds[tracing].append(time.perf_counter() - started)
            manager.note_cycle()
            clock.advance(CYCLE_SECONDS)
            window_before = manager.diagnoser.window_open
            started = time.perf_counter()
            report = manager.perform_maintenance()
            pass_seconds = time.perf_counter() - started
            if window_before or manager.diagnoser.window_open:
                timings.window_pass_seconds.append(pass_seconds)
            else:
                timings.idle_pass_seconds.append(pass_seconds)
                timings.idle_diagnosis_seconds.append(diagnosis_seconds[-1])
            if report.leak_suspected:
                suspected.append(cycle)
            if manager.diagnoser.last is not None:
                named_at = cycle
                break
        plugin_enabled = session.bot.strategy.enabled
    finally:
        session.close()
        manager.stop()
    last = manager.diagnoser.last
    return Run(
        cycles=cycle,
        named_at_cycle=named_at,
        diagnosis=None if last is None else last.to_dict(),
        suspected_cycles=suspected,
        abandoned_windows=manager.diagnoser.abandoned,
        plugin_enabled=plugin_enabled,
        timings=timings,
    )


def _time_diagnosis(manager: MemoryManager) -> list[float]:
    """Time every call of the manager's diagnoser (its share of a maintenance pass); the list fills as passes run."""
    seconds: list[float] = []
    on_pass = manager.diagnoser.on_pass

    def timed(suspected: bool, unmanaged_bytes: float | None = None) -> Any:
        started = time.perf_counter()
        try:
            return on_pass(suspected, unmanaged_bytes)
        finally:
            seconds.append(time.perf_counter() - started)

    manager.diagnoser.on_pass = timed  # type: ignore[method-assign]
    return seconds


def judge(found: dict[str, Any]) -> tuple[str | None, bool]:
    """(the line a run's diagnosis names, whether that is right): the case's `# LEAK` line as the top
    growing site (EXPECTED "python") or as where its growing type was allocated ("type"), or, for a
    native leak, the "unexplained" verdict and no line of the case in the message."""
    diagnosis, marked = found["diagnosis"], set(found["marked"])
    if diagnosis is None:
        return None, False
    if found["expected"] == "native":
        return None, diagnosis["verdict"] == "unexplained" and not any(line in diagnosis["message"] for line in marked)
    if found["expected"] == "type":
        grown = {growing["type"]: growing for growing in diagnosis["types"]}
        sites = grown.get(found["growing_type"], {}).get("allocated_at", [])
        line = sites[0]["site"] if sites else None
        return line, line in marked
    line = diagnosis["sites"][0]["site"] if diagnosis["sites"] else None
    return line, diagnosis["verdict"] == "python" and line in marked
