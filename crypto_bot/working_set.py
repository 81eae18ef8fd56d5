"""The bot's working set: what one cycle's caches must hold, measured on real entries.

Covers the values the bot caches (a window frame per series in `df_cache`, a `RegimeResult` per
symbol in `regime_cache`), what each costs as the cache charges it (`crypto_bot.memory.sizeof` of a
real entry built the way the bot builds it, measured once per window length), and the minimum
working set of a config: the windows of one cycle's symbols on every timeframe, plus their regimes.
A cache budget below it evicts a cycle's windows before the cycle reads them: the bot would run and
never trade, so `crypto_bot.settings` refuses it. `working_set_bound_bytes` is an upper bound of it
computed without pandas: a budget above the bound needs no measurement, so `config check` of a usual
config imports neither pandas nor numpy.
Not covered: the caches themselves (`crypto_bot.phase_runner.BotContext`, `crypto_bot.memory`) or
memory outside them (models, the interpreter): the working set is a floor, not a sizing guide.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crypto_bot.memory.units import KIB, MIB
from crypto_bot.strategy.regime import Regime

if TYPE_CHECKING:
    import pandas as pd

_CANDLE_ARRAY_BYTES = 8 * 6  # a window's arrays per candle: the int64 open time and five float64 values (OHLCV)
_FRAME_OBJECTS_BOUND_BYTES = 16 * KIB  # pandas' objects around them: measured 3.6-4.0 KiB (pandas 2 and 3)
_REGIME_BOUND_BYTES = 1 * KIB  # measured 176 B


@dataclass(frozen=True, slots=True)
class RegimeResult:
    """A symbol's regime on the regime timeframe, as of that timeframe's latest closed candle."""

    regime: Regime
    as_of: pd.Timestamp


@functools.lru_cache(maxsize=16)
def window_bytes(candles: int) -> int:
    """What the cache charges for one series' window of `candles` candles: `sizeof` of a frame built as the
    sources build one and kept as the bot keeps it (a copy of the window's rows); measured once per length."""
    import numpy as np

    from crypto_bot.market.source import OHLCV_COLUMNS, ohlcv_frame
    from crypto_bot.memory import sizeof

    open_ms = np.arange(candles, dtype=np.int64) * 60_000
    frame = ohlcv_frame(open_ms, np.ones((candles, len(OHLCV_COLUMNS))))
    return sizeof(frame.iloc[-candles:].copy())


@functools.lru_cache(maxsize=1)
def regime_bytes() -> int:
    """What the cache charges for one symbol's RegimeResult (measured once)."""
    import pandas as pd

    from crypto_bot.memory import sizeof

    return sizeof(RegimeResult(Regime.RANGING, pd.Timestamp(0, unit="ms", tz="UTC")))


@dataclass(frozen=True, slots=True)
class WorkingSet:
    """The cache bytes one cycle needs: `symbols` x `timeframes` windows of `candles` candles, and a regime per symbol."""

    symbols: int
    timeframes: int
    candles: int
    window_bytes: int
    regime_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.symbols * (self.timeframes * self.window_bytes + self.regime_bytes)

    def describe(self) -> str:
        """"6 symbols per cycle x 3 timeframes x 300 candles x 60 B + 6 regimes x 176 B = 0.31 MiB"."""
        candle_bytes = self.window_bytes / self.candles
        windows = (
            f"{_count(self.symbols, 'symbol')} per cycle x {_count(self.timeframes, 'timeframe')} x "
            f"{_count(self.candles, 'candle')}"
        )
        regimes = f"{_count(self.symbols, 'regime')} x {self.regime_bytes} B"
        return f"{windows} x {candle_bytes:.0f} B + {regimes} = {self.total_bytes / MIB:.2f} MiB"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def working_set_bound_bytes(symbols: int, timeframes: int, candles: int) -> int:
    """At least `minimum_working_set(symbols, timeframes, candles).total_bytes`, without importing pandas: the
    arrays' own bytes plus four times the objects around them as measured (a test holds it to the measurement)."""
    window_bound_bytes = candles * _CANDLE_ARRAY_BYTES + _FRAME_OBJECTS_BOUND_BYTES
    return symbols * (timeframes * window_bound_bytes + _REGIME_BOUND_BYTES)


def minimum_working_set(symbols: int, timeframes: int, candles: int) -> WorkingSet:
    """The working set of `symbols` analysed per cycle on `timeframes` timeframes with `candles`-candle windows."""
    return WorkingSet(symbols, timeframes, candles, window_bytes(candles), regime_bytes())
