"""Candle timeframes: the allowed names, their lengths, and argument checks shared by all sources.

Covers parsing and validating timeframe names, limits and symbols. Does not cover fetching or
building candles (see `crypto_bot.market.source` for the frame format and the sources themselves).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

TIMEFRAME_MS: dict[str, int] = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
"""Every timeframe a source may serve, smallest first, with its candle length in milliseconds."""

MAX_LIMIT = 5_000
"""Upper bound on candles per fetch: keeps one request's transient memory bounded."""

_SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{2,10}$")


def timeframe_ms(timeframe: str) -> int:
    """Length of one `timeframe` candle in milliseconds; ValueError naming the allowed values."""
    try:
        return TIMEFRAME_MS[timeframe]
    except (KeyError, TypeError):
        allowed = ", ".join(TIMEFRAME_MS)
        raise ValueError(f"timeframe must be one of {allowed}; got {timeframe!r}") from None


def validate_timeframes(timeframes: Iterable[str], base_timeframe: str) -> tuple[str, ...]:
    """Checked, de-duplicated `timeframes` sorted by length, each a multiple of `base_timeframe`."""
    base_ms = timeframe_ms(base_timeframe)
    checked = sorted({*timeframes, base_timeframe}, key=timeframe_ms)
    for timeframe in checked:
        length_ms = timeframe_ms(timeframe)
        if length_ms < base_ms or length_ms % base_ms:
            raise ValueError(f"timeframes must be multiples of base_timeframe {base_timeframe!r}; got {timeframe!r}")
    return tuple(checked)


def require_served(timeframe: str, served: tuple[str, ...]) -> int:
    """Length in ms of `timeframe`, or ValueError if this source was not configured to serve it."""
    length_ms = timeframe_ms(timeframe)
    if timeframe not in served:
        raise ValueError(f"timeframe must be one of {', '.join(served)} for this source; got {timeframe!r}")
    return length_ms


def checked_fetch(timeframe: str, served: tuple[str, ...], *, since_ms: int | None, limit: int) -> int:
    """The checks of every source's `fetch_ohlcv` arguments: `timeframe` served, `since_ms` and `limit` valid;
    the timeframe's length in ms."""
    length_ms = require_served(timeframe, served)
    validate_limit(limit)
    validate_since_ms(since_ms)
    return length_ms


def validate_limit(limit: int) -> int:
    """`limit` if it is an int in 1..MAX_LIMIT, else ValueError naming the range."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an int in 1..{MAX_LIMIT}; got {limit!r}")
    return limit


def validate_since_ms(since_ms: int | None) -> int | None:
    """`since_ms` if None or a non-negative int (epoch milliseconds), else ValueError."""
    if since_ms is None:
        return None
    if isinstance(since_ms, bool) or not isinstance(since_ms, int) or since_ms < 0:
        raise ValueError(f"since_ms must be None or an int >= 0 (epoch ms); got {since_ms!r}")
    return since_ms


def validate_symbol(symbol: str) -> str:
    """`symbol` if it has the form BASE/QUOTE (upper-case letters and digits), else ValueError."""
    if not isinstance(symbol, str) or not _SYMBOL_PATTERN.match(symbol):
        raise ValueError(f"symbol must look like 'BTC/USDT' (A-Z, 0-9, one '/'); got {symbol!r}")
    return symbol
