"""refresh_series: the bot's per-series step, on the simulated market and on a source that fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import pytest

from crypto_bot.market import ExchangeUnavailable, SimulatedMarket
from crypto_bot.market.series import newest_open_ms, refresh_series

MINUTE_MS = 60_000


class CountingMarket:
    """A simulated market that counts fetches and can be made to fail them."""

    def __init__(self) -> None:
        self.market = SimulatedMarket(["BTC/USDT"], timeframes=("1m", "5m"))
        self.fetches: list[dict[str, Any]] = []
        self.failing = False

    @property
    def now_ms(self) -> int:
        return self.market.now_ms

    async def fetch_ohlcv(self, symbol: str, timeframe: str, **kwargs: Any) -> pd.DataFrame:
        self.fetches.append({"timeframe": timeframe, **kwargs})
        if self.failing:
            raise ExchangeUnavailable("down", symbol=symbol, timeframe=timeframe, retry_after_seconds=5)
        return await self.market.fetch_ohlcv(symbol, timeframe, **kwargs)


@pytest.fixture
def market() -> CountingMarket:
    return CountingMarket()


def refresh(market: CountingMarket, timeframe: str, cached: pd.DataFrame | None, window: int = 50) -> Any:
    return asyncio.run(refresh_series(market, "BTC/USDT", timeframe, cached, window))  # type: ignore[arg-type]


def test_a_series_not_held_gets_the_newest_window(market):
    update = refresh(market, "1m", None)
    assert update.changed and update.requested and update.error is None
    assert len(update.frame) == 50 and not update.stale and update.age_ms == 0
    assert market.fetches == [{"timeframe": "1m", "since_ms": None, "limit": 50}]


def test_nothing_is_fetched_until_a_candle_closes(market):
    held = refresh(market, "5m", None).frame
    for _ in range(4):
        market.market.advance()
        update = refresh(market, "5m", held)
        assert not update.requested and update.frame is held and not update.stale
    assert len(market.fetches) == 1


def test_only_the_candles_closed_since_are_fetched_and_appended(market):
    held = refresh(market, "1m", None).frame
    for _ in range(3):
        market.market.advance()
    update = refresh(market, "1m", held)
    assert market.fetches[-1] == {"timeframe": "1m", "since_ms": newest_open_ms(held) + MINUTE_MS, "limit": 3}
    assert update.changed and len(update.frame) == 50
    assert newest_open_ms(update.frame) == newest_open_ms(held) + 3 * MINUTE_MS
    expected = asyncio.run(market.market.fetch_ohlcv("BTC/USDT", "1m", limit=50))
    pd.testing.assert_frame_equal(update.frame, expected)


def test_a_failed_fetch_keeps_the_window_returns_the_error_and_marks_it_stale(market):
    held = refresh(market, "1m", None).frame
    market.market.advance()
    market.market.advance()
    market.failing = True
    update = refresh(market, "1m", held)
    assert update.frame is held and not update.changed and update.requested
    assert isinstance(update.error, ExchangeUnavailable)
    assert update.stale and update.age_ms == 2 * MINUTE_MS


def test_a_failed_first_fetch_holds_nothing(market):
    market.failing = True
    update = refresh(market, "1m", None)
    assert update.frame is None and update.stale and update.age_ms is None and update.error is not None


def test_newest_open_ms_is_exact_whatever_the_index_unit():
    index = pd.DatetimeIndex([pd.Timestamp(1_704_067_200_123, unit="ms", tz="UTC")]).as_unit("ns")
    frame = pd.DataFrame({"close": [1.0]}, index=index)
    assert newest_open_ms(frame) == 1_704_067_200_123
    assert newest_open_ms(frame.iloc[:0]) is None and newest_open_ms(None) is None
