"""The market-data contract: the `MarketDataSource` protocol and the OHLCV frame every source returns.

Covers the protocol, the frame layout (`ohlcv_frame`) and the no-look-ahead window rule shared by
the sources (`visible_slice`). Does not cover any particular data origin: see `simulated`,
`csv_market` and `ccxt_market` in this package, `timeframes` for argument checks, `errors` for
what a failed request raises, `candles` for valid data and `schedule` for when to fetch.

Window rule, for every source: a candle is visible when its close time (open + timeframe) is
<= `now_ms`. Without `since_ms` a fetch returns the newest `limit` visible candles; with it, the
oldest `limit` visible candles whose open time is >= `since_ms` (as exchanges page forward).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


@runtime_checkable
class MarketDataSource(Protocol):
    """Where the bot reads candles from: simulated, replayed from files, or a live exchange."""

    name: str

    def universe(self) -> list[str]:
        """Symbols currently tradable, e.g. "BTC/USDT"."""
        ...

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 200
    ) -> pd.DataFrame:
        """Visible candles of `symbol`, oldest first, in the `ohlcv_frame` layout; a failure of this one
        request raises a `crypto_bot.market.errors.MarketDataError` (a KeyError for an unknown symbol,
        a ValueError for bad data) and fails no other."""
        ...

    def advance(self) -> None:
        """End the bot's cycle: move the market clock by one base-timeframe candle (live sources: only the stats cycle)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters read in O(1): at least those of `crypto_bot.market.stats.SourceStats.snapshot`."""
        ...

    @property
    def now_ms(self) -> int:
        """The market clock in epoch milliseconds."""
        ...

    async def close(self) -> None:
        """Release connections and files; safe to call twice."""
        ...


def ohlcv_frame(open_ms: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """Frame indexed by tz-aware UTC "timestamp" (candle open) with float64 OHLCV columns.

    `open_ms` holds int64 epoch milliseconds; `values` is a (n, 5) array in OHLCV column order.
    """
    index = pd.DatetimeIndex(pd.to_datetime(np.asarray(open_ms, dtype=np.int64), unit="ms", utc=True)).as_unit("ms")
    index.name = "timestamp"
    columns = np.asarray(values, dtype=np.float64).reshape(-1, len(OHLCV_COLUMNS))
    return pd.DataFrame({name: columns[:, position].copy() for position, name in enumerate(OHLCV_COLUMNS)}, index=index)


def visible_slice(open_ms: np.ndarray, now_ms: int, timeframe_ms: int, since_ms: int | None, limit: int) -> slice:
    """Rows of sorted candle opens `open_ms` that a fetch may return under the window rule."""
    end = int(np.searchsorted(open_ms, now_ms - timeframe_ms, side="right"))
    if since_ms is None:
        return slice(max(0, end - limit), end)
    start = int(np.searchsorted(open_ms, since_ms, side="left"))
    return slice(start, max(start, min(end, start + limit)))
