"""What to fetch next for a series: nothing until a new candle has closed, then only the candles since the last held.

Covers `candles_closed_after` and `refresh_request`, pure functions of the source's clock
(`market.now_ms`: the exchange's time for ccxt, the replay clock for CSV and the simulator). Not
covered: the fetch itself (the sources) or keeping the window (the bot).

A candle opening at `t` closes at `t + timeframe`. Holding a window whose newest candle opens at
`last_open_ms`, the next one (opening at `last_open_ms + timeframe`) closes at
`last_open_ms + 2 * timeframe`; before then a fetch can only return what is held. With the default
config (6 symbols on 1m, 5m and 1h, one cycle a minute) that is 6 fetches a cycle for 1m, plus 6
every fifth cycle for 5m and 6 an hour for 1h, instead of 18 every cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto_bot.market.timeframes import timeframe_ms


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """The arguments of the one `fetch_ohlcv` call a series needs: `since_ms` None asks for the newest `limit`."""

    since_ms: int | None
    limit: int


def candles_closed_after(now_ms: int, timeframe: str, last_open_ms: int) -> int:
    """How many `timeframe` candles have closed by `now_ms` after the one opening at `last_open_ms`."""
    return max(0, (now_ms - last_open_ms) // timeframe_ms(timeframe) - 1)


def refresh_request(now_ms: int, timeframe: str, last_open_ms: int | None, window: int) -> FetchRequest | None:
    """The fetch that brings a `window`-candle series up to date, or None when no candle closed since the last held.

    Without a last candle, or when a whole window or more has closed since (a long outage), the
    newest `window` candles; otherwise exactly those that closed after the last one held.
    """
    if last_open_ms is None:
        return FetchRequest(None, window)
    closed = candles_closed_after(now_ms, timeframe, last_open_ms)
    if closed == 0:
        return None
    if closed >= window:
        return FetchRequest(None, window)
    return FetchRequest(last_open_ms + timeframe_ms(timeframe), closed)
