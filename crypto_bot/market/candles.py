"""What a valid candle is: the one set of rules a response or a file row must pass before it is data.

Covers `candle_problem` (one candle's prices and volume; the CSV source checks each row with it)
and `checked_candles` (a whole ccxt response: its shape, types, times and every candle), which
raise or return the reason instead of letting NaN, NaT or a negative price reach a cache. Not
covered: the CSV file layout (timestamps aligned to the timeframe, a header line: `csv_market`),
and whether a candle has closed (`source.visible_slice`, the exchange clock in `exchange_clock`).

The rules, and why each holds for every exchange:
- open times are integers, strictly increasing (ccxt sorts a response; a repeated time is garbage),
  and not before 2000-01-01 (an earlier one is seconds taken for milliseconds);
- open, high, low and close are finite and > 0 (a price of 0 is no trade price; a bot cannot size on it);
- high >= max(open, close) and low <= min(open, close): enforced, not repaired. Every exchange ccxt
  serves builds a candle from the trades inside it, so its extremes enclose its first and last trade;
  a candle that breaks this is corrupt, and stops and ATR read high and low directly;
- volume is finite and >= 0 (0 is a candle without trades, which some exchanges send).
Alignment of open times to the timeframe is not required of exchanges (some open daily candles at a
local midnight); gaps are allowed (no trades, or an exchange outage).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from crypto_bot.market.errors import BadData
from crypto_bot.market.source import OHLCV_COLUMNS

EARLIEST_OPEN_MS = 946_684_800_000
"""2000-01-01T00:00Z: an open time before it is a unit mistake (seconds), not a candle."""

_FIELDS = 1 + len(OHLCV_COLUMNS)
_SHOWN_CHARACTERS = 80  # of a response that is not a list of candles, in the error


def candle_problem(open_: float, high: float, low: float, close: float, volume: float) -> str | None:
    """Why one candle's values are not a candle, or None when they are."""
    if not all(map(math.isfinite, (open_, high, low, close, volume))):
        return "non-finite value"
    if min(open_, high, low, close) <= 0:
        return "non-positive price"
    if low > min(open_, close) or high < max(open_, close):
        return "high/low do not enclose open and close (need low <= open, close <= high)"
    if volume < 0:
        return "negative volume"
    return None


def checked_candles(rows: Any, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """ccxt's `[[open_ms, o, h, l, c, v], ...]` as int64 opens and an (n, 5) float64 block; BadData naming
    `what` (e.g. "binance BTC/USDT 1h") and the first bad candle otherwise. An empty list is valid."""
    if not isinstance(rows, list):
        shown = repr(rows)[:_SHOWN_CHARACTERS]
        raise BadData(f"{what}: expected a list of candles, got {type(rows).__name__} {shown}")
    for position, row in enumerate(rows):
        if not _is_candle_row(row):
            shown = repr(row)[:_SHOWN_CHARACTERS]
            raise BadData(f"{what}: candle {position} is not [open_ms, open, high, low, close, volume]: {shown}")
    table = np.array([row[:_FIELDS] for row in rows], dtype=np.float64).reshape(-1, _FIELDS)
    return checked_arrays(table[:, 0], table[:, 1:], what=what)


def checked_arrays(opens: np.ndarray, values: np.ndarray, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """`checked_candles` for candles already in arrays (open times, an (n, 5) OHLCV block), e.g. decoded bytes."""
    opens = np.asarray(opens, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    bad_time = ~np.isfinite(opens) | (opens != np.floor(opens)) | (opens < EARLIEST_OPEN_MS)
    if bad_time.any():
        position = int(np.argmax(bad_time))
        raise BadData(f"{what}: candle {position} has open time {_shown(opens[position])}, not epoch milliseconds")
    unordered = np.diff(opens) <= 0
    if unordered.any():
        position = int(np.argmax(unordered)) + 1
        raise BadData(
            f"{what}: candle {position} opens at {int(opens[position])}, not after the previous one ({int(opens[position - 1])})"
        )
    open_, high, low, close, volume = values.T
    with np.errstate(invalid="ignore"):
        bad = (
            ~np.isfinite(values).all(axis=1)
            | (values[:, :4] <= 0).any(axis=1)
            | (low > np.minimum(open_, close))
            | (high < np.maximum(open_, close))
            | (volume < 0)
        )
    if bad.any():
        position = int(np.argmax(bad))
        problem = candle_problem(*map(float, values[position]))
        raise BadData(f"{what}: candle {position} (open {int(opens[position])}): {problem}")
    return opens.astype(np.int64), values


def _shown(value: float) -> str:
    """A number as it was written: 1704067200 rather than 1704067200.0."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _is_candle_row(row: Any) -> bool:
    return (
        isinstance(row, Sequence)
        and not isinstance(row, str | bytes)
        and len(row) >= _FIELDS
        and all(isinstance(value, int | float) and not isinstance(value, bool) for value in row[:_FIELDS])
    )
