"""Runs a corpus case as the bot would run a strategy plugin: candles per symbol per cycle, one
maintenance pass per cycle, memory read from the real process.

The market keeps each symbol's candle windows in a ManagedCache under the manager and replaces
them every cycle (a new frame per window, as the bot's cache does), so cache churn is part of
every run: a diagnosis must see past it. Time is a FakeClock moved one minute per cycle; memory is
the process's real RSS (a leak must really grow it), with a fixed usage ratio so that no pressure
tier acts.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from crypto_bot.memory import MemoryConfig, MemoryManager, MemoryProbe, MemoryReading
from crypto_bot.memory.diagnosis import DiagnosisSettings, LeakDiagnosis
from crypto_bot.memory.reclaim import collect_garbage
from tests.fakes import FakeClock

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT")
WINDOWS = {"1m": 500, "5m": 200}  # candles kept per timeframe
CYCLE_SECONDS = 60.0
_STEP = {"1m": pd.Timedelta(minutes=1), "5m": pd.Timedelta(minutes=5)}
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


class Market:
    """Candle windows per (symbol, timeframe) in a managed cache, each replaced by a new frame every cycle."""

    def __init__(self, manager: MemoryManager, seed: int = 7) -> None:
        self._rng = np.random.default_rng(seed)
        self._cache = manager.register_cache("candles", max_size=len(SYMBOLS) * len(WINDOWS), ttl_seconds=None)
        self._now = pd.Timestamp("2026-01-01", tz="UTC")
        self._last_close = dict.fromkeys(SYMBOLS, 100.0)

    def advance(self) -> None:
        self._now += _STEP["1m"]
        for symbol in SYMBOLS:
            for timeframe, rows in WINDOWS.items():
                old = self._cache.get((symbol, timeframe))
                new = self._rows(symbol, timeframe, rows if old is None else 1)
                window = new if old is None else pd.concat([old.iloc[1:], new])
                self._cache.put((symbol, timeframe), window)

    def candles(self, symbol: str) -> dict[str, pd.DataFrame]:
        return {timeframe: self._cache.get((symbol, timeframe)) for timeframe in WINDOWS}

    def _rows(self, symbol: str, timeframe: str, count: int) -> pd.DataFrame:
        close = self._last_close[symbol] * np.exp(np.cumsum(self._rng.normal(0, 0.002, count)))
        self._last_close[symbol] = float(close[-1])
        index = pd.date_range(end=self._now, periods=count, freq=_STEP[timeframe], tz="UTC")
        spread = np.abs(self._rng.normal(0, 0.001, count)) * close
        return pd.DataFrame(
            {"open": close - spread / 2, "high": close + spread, "low": close - spread, "close": close,
             "volume": self._rng.uniform(1, 100, count)},
            index=index,
        )


def load_case(name: str) -> ModuleType:
    return importlib.import_module(f"tests.leak_corpus.{name}")


def leak_lines(module: ModuleType) -> set[str]:
    """`path:line` of every line marked `# LEAK` in the module's source."""
    path = inspect.getsourcefile(module)
    lines, _ = inspect.getsourcelines(module)
    return {f"{path}:{number}" for number, line in enumerate(lines, start=1) if _MARKER.search(line)}


def strategy_of(module: ModuleType) -> Any:
    return module.STRATEGY()


@dataclass
class Run:
    """What a run of a case found: the cycle at which the first diagnosis arrived (None if none did) and it."""

    cycles: int
    named_at_cycle: int | None
    diagnosis: LeakDiagnosis | None
    manager: MemoryManager


def corpus_config(**overrides: Any) -> MemoryConfig:
    """Leak detection tuned for minute cycles: 10-reading windows, 1 MiB/hour (~17 KiB/cycle) threshold."""
    settings = {
        "enable_background_cleanup": False,
        "leak_window_samples": 10,
        "leak_slope_threshold_mb_per_hour": 1.0,
        "cache_size_limit_mb": 64,
        **overrides,
    }
    return MemoryConfig(**settings)


def build_manager(
    config: MemoryConfig | None = None, diagnosis: DiagnosisSettings | None = None, **kwargs: Any
) -> tuple[MemoryManager, FakeClock]:
    clock = FakeClock()
    manager = MemoryManager(
        config if config is not None else corpus_config(),
        probe=RssProbe(),
        clock=clock,
        diagnosis=diagnosis if diagnosis is not None else DiagnosisSettings(window_passes=3),
        **kwargs,
    )
    return manager, clock


def cycles(strategy: Any, manager: MemoryManager, clock: FakeClock, market: Market) -> Iterator[int]:
    """One cycle per step: the market moves, the strategy sees every symbol, one maintenance pass."""
    cycle = 0
    while True:
        market.advance()
        for symbol in SYMBOLS:
            strategy.signal(symbol, market.candles(symbol))
        strategy.on_cycle_end()
        manager.note_cycle()
        clock.advance(CYCLE_SECONDS)
        manager.perform_maintenance()
        cycle += 1
        yield cycle


def run_case(
    strategy: Any, *, max_cycles: int = 120, manager: MemoryManager | None = None, clock: FakeClock | None = None
) -> Run:
    """Run until the first diagnosis (or `max_cycles`); the caller closes the strategy and stops the manager.

    Starts from a trimmed heap: memory an earlier run in this process freed would otherwise be
    reused without growing RSS, hiding a leak from the detector for a while.
    """
    collect_garbage()
    if manager is None:
        manager, clock = build_manager()
    market = Market(manager)
    for cycle in cycles(strategy, manager, clock, market):
        diagnosis = manager.diagnoser.last
        if diagnosis is not None:
            return Run(cycle, cycle, diagnosis, manager)
        if cycle >= max_cycles:
            return Run(cycle, None, None, manager)
    raise AssertionError("unreachable")
