"""SimulatedMarket: determinism, no look-ahead, aggregation, realistic regimes, flat memory."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from pympler.asizeof import asizeof

from crypto_bot.market import (
    DEFAULT_SYMBOLS,
    MAX_LIMIT,
    MarketDataSource,
    SimulatedMarket,
    generated_symbols,
    timeframe_ms,
)

START_MS = 1_717_200_000_000  # 2024-06-01T00:00:00Z
MINUTE_MS = 60_000
DAY_CANDLES_1M = 1_440


def fetch(market: SimulatedMarket, symbol: str = "BTC/USDT", timeframe: str = "1m", **kwargs) -> pd.DataFrame:
    return asyncio.run(market.fetch_ohlcv(symbol, timeframe, **kwargs))


@pytest.fixture
def market() -> SimulatedMarket:
    return SimulatedMarket(seed=7, start_ms=START_MS, timeframes=("1m", "5m", "1h", "4h"))


@pytest.fixture
def long_history_market() -> SimulatedMarket:
    """Forty days of history before the clock."""
    return SimulatedMarket(
        seed=11, start_ms=START_MS, timeframes=("1m", "5m", "1h"), history_candles=40 * DAY_CANDLES_1M
    )


def test_satisfies_the_market_data_source_protocol(market):
    assert isinstance(market, MarketDataSource)


def test_frame_has_utc_timestamp_index_and_float64_ohlcv_columns(market):
    frame = fetch(market, limit=10)
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC"
    assert frame.index.name == "timestamp"
    assert frame.index.is_monotonic_increasing


def test_same_seed_gives_identical_candles():
    first = SimulatedMarket(seed=5, start_ms=START_MS)
    second = SimulatedMarket(seed=5, start_ms=START_MS)
    pd.testing.assert_frame_equal(fetch(first, "ETH/USDT", "5m"), fetch(second, "ETH/USDT", "5m"))


def test_different_seeds_give_different_candles():
    first = fetch(SimulatedMarket(seed=5, start_ms=START_MS), limit=100)
    second = fetch(SimulatedMarket(seed=6, start_ms=START_MS), limit=100)
    assert not np.allclose(first["close"].to_numpy(), second["close"].to_numpy())


def test_symbols_follow_different_paths(market):
    btc = fetch(market, "BTC/USDT", limit=200)["close"].pct_change().dropna()
    eth = fetch(market, "ETH/USDT", limit=200)["close"].pct_change().dropna()
    assert abs(np.corrcoef(btc, eth)[0, 1]) < 0.5


def test_candles_do_not_depend_on_the_window_requested(market):
    latest = fetch(market, "SOL/USDT", "1h", limit=50)
    paged = fetch(market, "SOL/USDT", "1h", since_ms=int(latest.index[10].timestamp() * 1000), limit=5)
    pd.testing.assert_frame_equal(paged, latest.iloc[10:15], check_exact=False, rtol=1e-12)


@pytest.mark.parametrize("timeframe", ["1m", "5m", "1h", "4h"])
def test_fetch_returns_only_candles_closed_by_now(market, timeframe):
    for _ in range(7):
        market.advance()
    frame = fetch(market, timeframe=timeframe, limit=3)
    last_close_ms = int(frame.index[-1].timestamp() * 1000) + timeframe_ms(timeframe)
    assert last_close_ms <= market.now_ms < last_close_ms + timeframe_ms(timeframe)


def test_advance_moves_the_clock_by_one_base_candle(market):
    market.advance()
    assert market.now_ms == START_MS + MINUTE_MS


def test_advance_reveals_the_next_candle_and_keeps_past_ones(market):
    before = fetch(market, limit=5)
    market.advance()
    after = fetch(market, limit=5)
    assert after.index[-1] == before.index[-1] + pd.Timedelta(minutes=1)
    pd.testing.assert_frame_equal(after.iloc[:4], before.iloc[1:], check_exact=False, rtol=1e-12)


def test_higher_timeframe_candle_appears_only_once_closed(market):
    last_5m_before = fetch(market, timeframe="5m", limit=1).index[-1]
    for _ in range(4):
        market.advance()
    assert fetch(market, timeframe="5m", limit=1).index[-1] == last_5m_before
    market.advance()
    assert fetch(market, timeframe="5m", limit=1).index[-1] == last_5m_before + pd.Timedelta(minutes=5)


@pytest.mark.parametrize(("timeframe", "minutes"), [("5m", 5), ("1h", 60), ("4h", 240)])
def test_higher_timeframes_aggregate_the_base_candles(market, timeframe, minutes):
    higher = fetch(market, "ETH/USDT", timeframe, limit=4)
    base = fetch(market, "ETH/USDT", "1m", since_ms=int(higher.index[0].timestamp() * 1000), limit=4 * minutes)
    groups = base.groupby(np.arange(len(base)) // minutes)
    expected = pd.DataFrame(
        {
            "open": groups["open"].first().to_numpy(),
            "high": groups["high"].max().to_numpy(),
            "low": groups["low"].min().to_numpy(),
            "close": groups["close"].last().to_numpy(),
            "volume": groups["volume"].sum().to_numpy(),
        },
        index=higher.index,
    )
    pd.testing.assert_frame_equal(higher, expected, check_exact=False, rtol=1e-9)


@pytest.mark.parametrize("symbol", [*DEFAULT_SYMBOLS, "SIM0042/USDT"])
def test_ohlc_is_valid_with_positive_prices_and_volume(long_history_market, symbol):
    frame = fetch(long_history_market, symbol, "5m", limit=MAX_LIMIT)
    assert (frame["low"] > 0).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["volume"] > 0).all()


def test_each_candle_opens_at_the_previous_close(market):
    frame = fetch(market, limit=300)
    np.testing.assert_allclose(frame["open"].to_numpy()[1:], frame["close"].to_numpy()[:-1], rtol=1e-12)


@pytest.mark.parametrize(
    ("symbol", "low", "high"),
    [("BTC/USDT", 20_000, 200_000), ("ETH/USDT", 1_000, 10_000), ("SOL/USDT", 40, 500), ("DOGE/USDT", 0.03, 0.5)],
)
def test_default_symbols_trade_at_realistic_price_levels(long_history_market, symbol, low, high):
    closes = fetch(long_history_market, symbol, "1h", limit=40 * 24)["close"]
    assert low < closes.min() and closes.max() < high


def test_realized_volatility_varies_between_calm_and_bursty_windows(long_history_market):
    closes = fetch(long_history_market, "BTC/USDT", "5m", limit=MAX_LIMIT)["close"].to_numpy()
    returns = np.diff(np.log(closes))
    six_hour_windows = returns[: len(returns) // 72 * 72].reshape(-1, 72)
    volatility = six_hour_windows.std(axis=1)
    assert volatility.max() / volatility.min() > 3.0


def test_some_days_trend_while_others_range(long_history_market):
    closes = fetch(long_history_market, "BTC/USDT", "1h", limit=40 * 24)["close"].to_numpy()
    daily_returns = np.diff(np.log(closes))[: 39 * 24].reshape(39, 24)
    efficiency_ratio = np.abs(daily_returns.sum(axis=1)) / np.abs(daily_returns).sum(axis=1)
    assert efficiency_ratio.max() > 0.6
    assert efficiency_ratio.min() < 0.15


def test_latest_window_is_limited_and_ends_at_now(market):
    frame = fetch(market, limit=30)
    assert len(frame) == 30
    assert int(frame.index[-1].timestamp() * 1000) == START_MS - MINUTE_MS


def test_since_returns_the_oldest_candles_from_that_time(market):
    since_ms = START_MS - 100 * MINUTE_MS + 1
    frame = fetch(market, since_ms=since_ms, limit=10)
    assert len(frame) == 10
    assert int(frame.index[0].timestamp() * 1000) == START_MS - 99 * MINUTE_MS


def test_since_near_now_returns_only_closed_candles(market):
    frame = fetch(market, since_ms=START_MS - 3 * MINUTE_MS, limit=100)
    assert len(frame) == 3


def test_history_starts_at_history_candles_before_start():
    market = SimulatedMarket(start_ms=START_MS, history_candles=12)
    assert len(fetch(market, limit=100)) == 12
    assert len(fetch(market, since_ms=0, limit=100)) == 12
    assert len(fetch(market, timeframe="5m", limit=100)) == 2


def test_default_history_covers_two_hundred_candles_of_the_largest_timeframe(market):
    assert len(fetch(market, timeframe="4h", limit=200)) == 200


def test_unlisted_well_formed_symbol_is_simulated_from_its_name(market):
    assert "NEW/USDT" not in market.universe()
    first = fetch(market, "NEW/USDT", limit=20)
    second = fetch(SimulatedMarket(seed=7, start_ms=START_MS), "NEW/USDT", limit=20)
    pd.testing.assert_frame_equal(first, second)
    assert not np.allclose(first["close"].to_numpy(), fetch(market, "NEW2/USDT", limit=20)["close"].to_numpy())


@pytest.mark.parametrize("symbol", ["btc/usdt", "BTCUSDT", "BTC/USDT/X", "", "BTC-USDT"])
def test_malformed_symbol_raises_value_error_naming_it(market, symbol):
    with pytest.raises(ValueError, match="symbol must look like"):
        fetch(market, symbol)


def test_default_universe_has_several_major_symbols():
    assert SimulatedMarket().universe()[:3] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert len(DEFAULT_SYMBOLS) >= 6


def test_add_symbols_appends_new_names_once(market):
    market.add_symbols(["BTC/USDT", "SIM0001/USDT", "SIM0001/USDT"])
    assert market.universe() == [*DEFAULT_SYMBOLS, "SIM0001/USDT"]


def test_set_universe_replaces_the_listed_symbols(market):
    market.set_universe(["XRP/USDT", "SIM0002/USDT"])
    assert market.universe() == ["XRP/USDT", "SIM0002/USDT"]


def test_universe_returns_a_copy(market):
    market.universe().append("X/USDT")
    assert "X/USDT" not in market.universe()


def test_generated_symbols_are_numbered_scanner_names():
    assert generated_symbols(3) == ["SIM0001/USDT", "SIM0002/USDT", "SIM0003/USDT"]
    assert generated_symbols(1, quote="BTC", first_number=12345) == ["SIM12345/BTC"]
    assert generated_symbols(0) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: fetch(m, timeframe="2m"), "timeframe must be one of 1m, 5m, 15m, 1h, 4h, 1d"),
        (lambda m: fetch(m, timeframe="15m"), r"timeframe must be one of 1m, 5m, 1h, 4h for this source"),
        (lambda m: fetch(m, limit=0), "limit must be an int in 1..5000"),
        (lambda m: fetch(m, limit=MAX_LIMIT + 1), "limit must be an int in 1..5000"),
        (lambda m: fetch(m, since_ms=-1), "since_ms must be None or an int >= 0"),
        (lambda m: m.set_universe("BTC/USDT"), "not one string"),
        (lambda m: m.add_symbols(["bad"]), "symbol must look like"),
    ],
)
def test_invalid_fetch_and_universe_arguments_raise_value_error(market, call, message):
    with pytest.raises(ValueError, match=message):
        call(market)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": "42"}, "seed must be an int"),
        ({"start_ms": START_MS + 1}, "start_ms must be an int multiple of base_timeframe"),
        ({"base_timeframe": "5m", "timeframes": ("1m",)}, "multiples of base_timeframe '5m'"),
        ({"base_timeframe": "3m"}, "timeframe must be one of"),
        ({"history_candles": -1}, "history_candles must be None or an int >= 0"),
        ({"start_ms": 0, "history_candles": 1}, "history_candles must reach no earlier than 1970"),
        ({"symbols": ["BTC/USDT", "nope"]}, "symbol must look like"),
    ],
)
def test_invalid_constructor_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimulatedMarket(**kwargs)


def test_generated_symbols_rejects_negative_count():
    with pytest.raises(ValueError, match="count must be an int >= 0"):
        generated_symbols(-1)


def test_fetching_many_symbols_over_many_advances_stores_nothing(market):
    for _ in range(300):  # the clock's count past CPython's shared small ints, which asizeof counts once
        market.advance()
    size_before = asizeof(market)

    async def run() -> None:
        for symbol in generated_symbols(500):
            market.advance()
            await market.fetch_ohlcv(symbol, "1m", limit=20)
            await market.fetch_ohlcv(symbol, "1h", limit=2)

    asyncio.run(run())
    assert asizeof(market) == size_before


def test_traced_memory_stays_flat_over_a_thousand_advances_on_two_hundred_symbols():
    market = SimulatedMarket(generated_symbols(200), seed=3, start_ms=START_MS)
    symbols = market.universe()

    async def run(steps: int) -> None:
        for step in range(steps):
            market.advance()
            if step % 5 == 0:
                await market.fetch_ohlcv(symbols[step // 5 % len(symbols)], "1m", limit=50)

    async def measure() -> int:
        await run(100)
        gc.collect()
        tracemalloc.start()
        try:
            baseline_bytes = tracemalloc.get_traced_memory()[0]
            await run(1_000)
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - baseline_bytes
        finally:
            tracemalloc.stop()

    assert asyncio.run(measure()) < 64 * 1024
