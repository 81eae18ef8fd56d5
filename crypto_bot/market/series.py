"""Bring one bounded candle window up to date: fetch only what closed, keep the window on a failure, say how stale it is.

Covers `refresh_series`, the step the bot's `update_caches` runs for each (symbol, timeframe),
and `SeriesUpdate`, its outcome. It asks the source for nothing until a new candle has closed by the
source's clock (`schedule.refresh_request`), then only for the candles since the last one held;
a request that fails (`errors.MarketDataError`, any source) leaves the window as it was and is
returned, not raised, so one series never fails another. Not covered: caching the window (the
bot's `df_cache`), or what to do with a stale series (the bot: no signal from it).

Staleness: a window is stale when a candle of its timeframe has closed that it does not hold
(`candles_closed_after(...) >= 1`, i.e. its newest candle closed one candle or more ago). A
refresh that succeeds can still leave it stale, when the exchange has no candle yet for a closed
period (a gap); `age_ms` says for how long.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from crypto_bot.market.errors import MarketDataError
from crypto_bot.market.schedule import candles_closed_after, refresh_request
from crypto_bot.market.source import MarketDataSource
from crypto_bot.market.timeframes import timeframe_ms


@dataclass(frozen=True, slots=True)
class SeriesUpdate:
    """The window to use now, and how it came about."""

    frame: pd.DataFrame | None  # the window: the cached one unless `changed`; None when nothing is held
    changed: bool  # new candles were added: keep `frame` in the cache
    requested: bool  # a fetch was sent to the source (whatever its outcome)
    error: MarketDataError | None  # the fetch's failure; the cached window stands
    age_ms: int | None  # how long ago the newest candle held closed (None: nothing held)
    stale: bool  # a closed candle is missing from the window: no signal from it


def newest_open_ms(frame: pd.DataFrame | None) -> int | None:
    """Open time (epoch ms) of the newest candle of an `ohlcv_frame`, or None for none."""
    if frame is None or frame.empty:
        return None
    return int(frame.index[-1].value // 1_000_000)  # ns since the epoch, exact at any unit


async def refresh_series(
    market: MarketDataSource, symbol: str, timeframe: str, cached: pd.DataFrame | None, window: int
) -> SeriesUpdate:
    """`cached` (the window held, or None) with the candles closed since, newest `window` kept."""
    now_ms = market.now_ms
    last_open_ms = newest_open_ms(cached)
    request = refresh_request(now_ms, timeframe, last_open_ms, window)
    if request is None:
        return _outcome(cached, now_ms, timeframe, changed=False, requested=False)
    try:
        fresh = await market.fetch_ohlcv(symbol, timeframe, since_ms=request.since_ms, limit=request.limit)
    except MarketDataError as error:
        return _outcome(cached, now_ms, timeframe, changed=False, requested=True, error=error)
    fresh_open_ms = newest_open_ms(fresh)
    if fresh_open_ms is None or (last_open_ms is not None and fresh_open_ms <= last_open_ms):
        return _outcome(cached, now_ms, timeframe, changed=False, requested=True)
    if last_open_ms is not None:
        fresh = pd.concat([cached, fresh])
        fresh = fresh[~fresh.index.duplicated(keep="last")]
    frame = fresh.iloc[-window:].copy()  # a copy, so the window does not pin the concatenated buffer
    return _outcome(frame, market.now_ms, timeframe, changed=True, requested=True)


def _outcome(
    frame: pd.DataFrame | None, now_ms: int, timeframe: str, *, changed: bool, requested: bool,
    error: MarketDataError | None = None,
) -> SeriesUpdate:
    last_open_ms = newest_open_ms(frame)
    if last_open_ms is None:
        return SeriesUpdate(frame, changed, requested, error, None, stale=True)
    age_ms = max(0, now_ms - last_open_ms - timeframe_ms(timeframe))
    stale = candles_closed_after(now_ms, timeframe, last_open_ms) > 0
    return SeriesUpdate(frame, changed, requested, error, age_ms, stale)
