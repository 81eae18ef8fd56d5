"""CcxtMarket against a loopback exchange that misbehaves: rate limits, outages, timeouts, garbage, gaps, caps, skew.

A real ccxt client talks HTTP to `exchange_stub.LoopbackBinance` on 127.0.0.1. Time is a `FakeTime`:
the market's wall clock, monotonic clock and back-off sleeps all read it, so an outage of half an
hour runs in a moment and the requests it cost are counted exactly. Only a client timeout waits for
real (a tenth of a second).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
import pytest

pytest.importorskip("ccxt")

from crypto_bot.market import (
    AuthenticationFailed,
    BackoffPolicy,
    BadData,
    CcxtMarket,
    ExchangeUnavailable,
    NetworkFailure,
    RateLimited,
    UnknownSymbol,
    refresh_request,
)
from tests.bot.exchange_stub import (
    HOUR_MS,
    LOOPBACK_CONFIG,
    SERVER_NOW_MS,
    Fault,
    LoopbackBinance,
    kline,
    point_at,
    rate_limited,
    running_server,
    unavailable,
)

MINUTE_MS = 60_000
_T = TypeVar("_T")


class FakeTime:
    """Seconds since the test began; the wall clock is `wall_start_ms` plus them. Sleeping moves time on."""

    def __init__(self, wall_start_ms: int) -> None:
        self.seconds = 0.0
        self.wall_start_ms = wall_start_ms
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.seconds

    def wall_ms(self) -> int:
        return self.wall_start_ms + int(self.seconds * 1000)

    def advance(self, seconds: float) -> None:
        self.seconds += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.seconds += seconds
        await asyncio.sleep(0)


@pytest.fixture
def server() -> Iterator[LoopbackBinance]:
    with running_server() as httpd:
        yield httpd


@pytest.fixture
def fake_time(server: LoopbackBinance) -> FakeTime:
    """The machine's clock at the server's 10:00 (the 10:00 candle just opened); the server follows it."""
    time = FakeTime(SERVER_NOW_MS)
    server.clock_ms = time.wall_ms
    return time


@asynccontextmanager
async def faulty_market(server: LoopbackBinance, time: FakeTime, **kwargs: Any) -> AsyncIterator[CcxtMarket]:
    options = {
        "config": LOOPBACK_CONFIG,
        "clock_ms": time.wall_ms,
        "monotonic": time.monotonic,
        "sleep": time.sleep,
        "rng": random.Random(13),
        "symbols": ["BTC/USDT"],
        **kwargs,
    }
    market = CcxtMarket("binance", **options)
    point_at(market, server)
    try:
        yield market
    finally:
        await market.close()


def run(server: LoopbackBinance, time: FakeTime, scenario: Callable[[CcxtMarket], Awaitable[_T]], **kwargs: Any) -> _T:
    async def main() -> _T:
        async with faulty_market(server, time, **kwargs) as market:
            return await scenario(market)

    return asyncio.run(main())


async def outcome(call: Awaitable[Any]) -> Any:
    """The call's result, or the exception it raised (as a gather with return_exceptions would give)."""
    try:
        return await call
    except Exception as error:
        return error


# ------------------------------------------------------------------ rate limits


def test_a_429_with_a_short_retry_after_is_waited_out_and_the_request_retried(server, fake_time):
    server.faults.append(rate_limited(retry_after_seconds=3))

    async def scenario(market: CcxtMarket) -> Any:
        return await market.fetch_ohlcv("BTC/USDT", "1h", limit=3), market.stats()

    frame, stats = run(server, fake_time, scenario)
    assert len(frame) == 3
    assert len(server.klines_requests()) == 2
    assert max(fake_time.sleeps) >= 3.0  # Retry-After honoured, on the injected clock
    assert stats["retries"] == 1 and stats["errors"]["rate_limited"] == 0


def test_a_429_with_a_long_retry_after_fails_the_fetch_and_gates_the_source_until_then(server, fake_time):
    server.faults.append(rate_limited(retry_after_seconds=120))

    async def scenario(market: CcxtMarket) -> Any:
        first = await outcome(market.fetch_ohlcv("BTC/USDT", "1h", limit=3))
        requests_after_the_429 = len(server.klines_requests())
        fake_time.advance(60)
        during = await outcome(market.fetch_ohlcv("BTC/USDT", "1h", limit=3))
        requests_during_the_pause = len(server.klines_requests()) - requests_after_the_429
        fake_time.advance(61)
        after = await market.fetch_ohlcv("BTC/USDT", "1h", limit=3)
        return first, during, requests_during_the_pause, after, market.stats()

    first, during, requests_during_the_pause, after, stats = run(server, fake_time, scenario)
    assert isinstance(first, RateLimited) and first.retry_after_seconds == pytest.approx(120, abs=1)
    assert (first.symbol, first.timeframe) == ("BTC/USDT", "1h")
    assert isinstance(during, RateLimited) and during.retry_after_seconds == pytest.approx(60, abs=1)
    assert requests_during_the_pause == 0
    assert len(after) == 3
    assert stats["errors"]["rate_limited"] == 2


def test_without_retry_after_the_rate_limit_waits_double_from_the_exchange_rate_limit_with_jitter(server, fake_time):
    for _ in range(3):
        server.faults.append(rate_limited())

    async def scenario(market: CcxtMarket) -> Any:
        return await market.fetch_ohlcv("BTC/USDT", "1h", limit=3)

    config = {**LOOPBACK_CONFIG, "rateLimit": 40}
    run(server, fake_time, scenario, config=config)
    waits = [wait for wait in fake_time.sleeps if wait > 0]  # tenacity's own sleep(0) between attempts aside
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):  # 40 ms, 80 ms, 160 ms, each drawn from [half, whole]
        assert 0.04 * 2**attempt / 2 <= wait <= 0.04 * 2**attempt


def test_rate_limit_answers_beyond_the_retries_fail_the_fetch(server, fake_time):
    for _ in range(10):
        server.faults.append(rate_limited(retry_after_seconds=1))

    async def scenario(market: CcxtMarket) -> Any:
        return await outcome(market.fetch_ohlcv("BTC/USDT", "1h", limit=3))

    error = run(server, fake_time, scenario, backoff=BackoffPolicy(rate_limit_retries=2))
    assert isinstance(error, RateLimited)
    assert len(server.klines_requests()) == 3


# ------------------------------------------------------------------ outages and the network


def test_a_5xx_pauses_the_source_and_fetches_fail_at_once_without_requests(server, fake_time):
    server.faults.append(unavailable())

    async def scenario(market: CcxtMarket) -> Any:
        first = await outcome(market.fetch_ohlcv("BTC/USDT", "1h", limit=3))
        stats = market.stats()
        sent = len(server.requests)
        second = await outcome(market.fetch_ohlcv("BTC/USDT", "5m", limit=3))
        return first, stats, len(server.requests) - sent, second

    first, stats, sent_while_paused, second = run(server, fake_time, scenario)
    assert isinstance(first, ExchangeUnavailable)
    assert stats["paused"] and 2.5 <= stats["resume_in_seconds"] <= 5.0  # 5 s with equal jitter
    assert "binance unavailable" in stats["pause_reason"]
    assert sent_while_paused == 0
    assert isinstance(second, ExchangeUnavailable) and "requests paused for another" in str(second)


def test_after_a_pause_one_probe_goes_first_and_the_others_wait_for_its_answer(server, fake_time):
    server.faults.append(unavailable())

    async def scenario(market: CcxtMarket) -> Any:
        await outcome(market.fetch_ohlcv("BTC/USDT", "1h", limit=3))
        fake_time.advance(10)
        sent = len(server.klines_requests())
        frames = await asyncio.gather(*(market.fetch_ohlcv("BTC/USDT", tf, limit=3) for tf in ("1m", "5m", "1h")))
        return sent, frames, market.stats()

    sent, frames, stats = run(server, fake_time, scenario)
    assert [len(frame) for frame in frames] == [3, 3, 3]
    assert len(server.klines_requests()) - sent == 3
    assert not stats["paused"]


def test_a_timeout_is_retried_a_bounded_number_of_times_then_pauses_the_source(server, fake_time):
    for _ in range(5):
        server.faults.append(Fault(hang_seconds=0.3))

    async def scenario(market: CcxtMarket) -> Any:
        error = await outcome(market.fetch_ohlcv("BTC/USDT", "1h", limit=3))
        return error, market.stats()

    error, stats = run(server, fake_time, scenario, timeout_ms=100, backoff=BackoffPolicy(network_retries=2))
    assert isinstance(error, NetworkFailure) and "RequestTimeout after 2 retries" in str(error)
    assert len(server.klines_requests()) == 3
    assert stats["retries"] == 2 and stats["paused"] and stats["errors"]["network"] == 1


def test_a_single_timeout_is_retried_and_the_fetch_succeeds(server, fake_time):
    server.faults.append(Fault(hang_seconds=0.3))

    async def scenario(market: CcxtMarket) -> Any:
        return await market.fetch_ohlcv("BTC/USDT", "1h", limit=3)

    assert len(run(server, fake_time, scenario, timeout_ms=100)) == 3
    assert len(server.klines_requests()) == 2


def test_connections_dropped_without_an_answer_are_an_outage(server, fake_time):
    server.outage = Fault(drop=True)

    async def scenario(market: CcxtMarket) -> Any:
        return await outcome(market.fetch_ohlcv("BTC/USDT", "1h", limit=3))

    error = run(server, fake_time, scenario)
    assert isinstance(error, ExchangeUnavailable | NetworkFailure)


def test_an_outage_costs_a_request_per_pause_and_never_busy_loops_then_trading_resumes(server, fake_time):
    """Half an hour of 503s while the bot asks for 3 series every second: the requests are counted."""
    series = [("BTC/USDT", tf) for tf in ("1m", "5m", "1h")]

    async def scenario(market: CcxtMarket) -> Any:
        await asyncio.gather(*(market.fetch_ohlcv(symbol, tf, limit=5) for symbol, tf in series))  # healthy
        server.outage = unavailable()
        sent_before = len(server.requests)
        failures = 0
        for _ in range(1800):
            results = await asyncio.gather(*(outcome(market.fetch_ohlcv(s, tf, limit=5)) for s, tf in series))
            failures += sum(isinstance(result, ExchangeUnavailable) for result in results)
            fake_time.advance(1.0)
        sent_during = len(server.requests) - sent_before
        server.outage = None
        fake_time.advance(market.resume_in_seconds)
        frames = await asyncio.gather(*(market.fetch_ohlcv(symbol, tf, limit=5) for symbol, tf in series))
        return failures, sent_during, frames, market.stats()

    failures, sent_during, frames, stats = run(server, fake_time, scenario)
    assert failures == 1800 * 3  # every fetch failed alone, with a typed error
    # Pauses of 5, 10, 20, ... capped at 300 s (jittered to half): one probe each, about a dozen in 30 min.
    assert 6 <= sent_during <= 20, sent_during
    assert [len(frame) for frame in frames] == [5, 5, 5]
    assert not stats["paused"]


# ------------------------------------------------------------------ bad answers


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault(raw=b'[[1704067200000,"1.5","2",'), "not a list of candles|could not be read|unreadable"),
        (Fault(raw=b"<html>502 Bad Gateway</html>"), "not a list of candles|could not be read|unreadable"),
        (Fault(body={"unexpected": "object"}), "not a list of candles|could not be read|unreadable"),
        (Fault(rows=[kline(SERVER_NOW_MS - 2 * HOUR_MS)[:3]]), "not a list of candles|could not be read|not \\[open_ms"),
    ],
    ids=["truncated-json", "html", "object", "short-row"],
)
def test_garbage_is_an_error_of_that_request_not_data(server, fake_time, fault, message):
    server.faults.append(fault)

    async def scenario(market: CcxtMarket) -> Any:
        error = await outcome(market.fetch_ohlcv("BTC/USDT", "1h", limit=3))
        frame = await market.fetch_ohlcv("BTC/USDT", "1h", limit=3)
        return error, frame, market.stats()

    error, frame, stats = run(server, fake_time, scenario)
    assert isinstance(error, BadData), error
    assert error.symbol == "BTC/USDT"
    assert len(frame) == 3 and not frame.index.hasnans
    assert stats["errors"]["bad_data"] == 1 and not stats["paused"]


def bad_rows(change: Callable[[list[list[Any]]], None]) -> list[list[Any]]:
    rows = [kline(SERVER_NOW_MS - hours * HOUR_MS) for hours in (3, 2, 1)]
    change(rows)
    return rows


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (bad_rows(lambda rows: rows[1].__setitem__(4, "nan")), "candle 1 .*non-finite value"),
        (bad_rows(lambda rows: rows[1].__setitem__(3, "-1")), "candle 1 .*non-positive price"),
        (bad_rows(lambda rows: rows[2].__setitem__(2, "0.5")), "candle 2 .*high/low do not enclose"),
        (bad_rows(lambda rows: rows[0].__setitem__(5, "-3")), "candle 0 .*negative volume"),
        (bad_rows(lambda rows: rows[2].__setitem__(0, rows[1][0])), "candle 2 opens at .* not after the previous"),
        (bad_rows(lambda rows: rows[0].__setitem__(0, rows[0][0] // 1000)), "candle 0 has open time .* not epoch"),
    ],
    ids=["nan", "negative-price", "high-below-close", "negative-volume", "repeated-time", "seconds"],
)
def test_a_bad_candle_fails_the_request_naming_the_candle(server, fake_time, rows, message):
    server.faults.append(Fault(rows=rows))

    async def scenario(market: CcxtMarket) -> Any:
        return await outcome(market.fetch_ohlcv("BTC/USDT", "1h", limit=2))

    error = run(server, fake_time, scenario)
    assert isinstance(error, BadData)
    assert error.message.startswith("binance BTC/USDT 1h: ")
    assert error.args and __import__("re").search(message, error.message), error.message


def test_a_candle_far_in_the_future_is_garbage_and_does_not_move_the_clock(server, fake_time):
    server.faults.append(Fault(rows=[kline(SERVER_NOW_MS + 48 * HOUR_MS)]))

    async def scenario(market: CcxtMarket) -> Any:
        error = await outcome(market.fetch_ohlcv("BTC/USDT", "1h", limit=2))
        return error, market.clock_offset_ms

    error, offset_ms = run(server, fake_time, scenario)
    assert isinstance(error, BadData) and "after the exchange's clock" in str(error)
    assert offset_ms == 0


def test_an_empty_candle_list_is_an_empty_frame_not_an_error(server, fake_time):
    server.faults.append(Fault(rows=[]))

    async def scenario(market: CcxtMarket) -> Any:
        return await market.fetch_ohlcv("BTC/USDT", "1h", limit=3), market.stats()

    frame, stats = run(server, fake_time, scenario)
    assert frame.empty and list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert sum(stats["errors"].values()) == 0


def test_a_gap_in_the_candles_is_kept_as_a_gap(server, fake_time):
    server.missing_opens = {SERVER_NOW_MS - 3 * HOUR_MS, SERVER_NOW_MS - 4 * HOUR_MS}

    async def scenario(market: CcxtMarket) -> Any:
        return await market.fetch_ohlcv("BTC/USDT", "1h", since_ms=SERVER_NOW_MS - 6 * HOUR_MS, limit=10)

    frame = run(server, fake_time, scenario)
    opens = [int(ts.timestamp() * 1000) for ts in frame.index]
    assert opens == [SERVER_NOW_MS - hours * HOUR_MS for hours in (6, 5, 2, 1)]


# ------------------------------------------------------------------ symbols and credentials


def test_a_bad_symbol_is_dropped_from_the_universe_with_one_warning_and_not_asked_again(server, fake_time, caplog):
    server.symbols.append({**server.symbols[0], "symbol": "DOGEUSDT", "baseAsset": "DOGE"})
    caplog.set_level(logging.WARNING, logger="crypto_bot.market.ccxt_market")

    async def scenario(market: CcxtMarket) -> Any:
        await market.load_markets()
        server.symbols.pop()  # delisted after the markets were loaded: the exchange says -1121
        errors = [await outcome(market.fetch_ohlcv("DOGE/USDT", "1h", limit=3)) for _ in range(3)]
        return errors, market.universe(), market.stats()

    errors, universe, stats = run(server, fake_time, scenario, symbols=["BTC/USDT", "DOGE/USDT"])
    assert all(isinstance(error, UnknownSymbol) and isinstance(error, KeyError) for error in errors)
    assert universe == ["BTC/USDT"]
    assert list(stats["dropped_symbols"]) == ["DOGE/USDT"]
    assert len(server.klines_requests()) == 1
    assert [record.getMessage() for record in caplog.records].count(
        f"binance: dropped DOGE/USDT from the universe: {errors[0].message}"
    ) == 1


def test_refused_credentials_are_reported_once_and_not_retried(server, fake_time, caplog, monkeypatch):
    monkeypatch.setenv("TEST_FAULT_KEY", "key-refused-by-the-exchange")
    monkeypatch.setenv("TEST_FAULT_SECRET", "secret-refused-by-the-exchange")
    server.echo_credentials = True
    caplog.set_level(logging.WARNING, logger="crypto_bot.market.ccxt_market")
    config = {**LOOPBACK_CONFIG, "options": {**LOOPBACK_CONFIG["options"], "fetchMargins": True}}

    async def scenario(market: CcxtMarket) -> Any:
        return [await outcome(market.fetch_ohlcv("BTC/USDT", "1h", limit=3)) for _ in range(2)], market.stats()

    errors, stats = run(
        server, fake_time, scenario, config=config, api_key_env="TEST_FAULT_KEY", secret_env="TEST_FAULT_SECRET"
    )
    assert all(isinstance(error, AuthenticationFailed) for error in errors)
    assert stats["retries"] == 0 and stats["errors"]["authentication"] == 2 and not stats["paused"]
    assert server.klines_requests() == []
    assert sum("refused the credentials" in record.getMessage() for record in caplog.records) == 1


# ------------------------------------------------------------------ pagination


def test_a_window_longer_than_the_exchange_cap_is_fetched_in_pages(server, fake_time):
    server.max_limit = 1000

    async def scenario(market: CcxtMarket) -> Any:
        return await market.fetch_ohlcv("BTC/USDT", "1m", limit=2500), market.stats()

    frame, stats = run(server, fake_time, scenario)
    opens = np.array([int(ts.timestamp() * 1000) for ts in frame.index])
    assert len(frame) == 2500
    assert (np.diff(opens) == MINUTE_MS).all()
    assert opens[-1] == SERVER_NOW_MS - MINUTE_MS  # the newest closed candle; the open one dropped
    assert [int(query["limit"]) for query in server.klines_requests()] == [1000, 1000, 500]
    assert stats["ohlcv_limit"] == 1000


def test_ohlcv_limit_overrides_the_page_size(server, fake_time):
    async def scenario(market: CcxtMarket) -> Any:
        return await market.fetch_ohlcv("BTC/USDT", "1m", limit=700)

    frame = run(server, fake_time, scenario, ohlcv_limit=300)
    assert len(frame) == 700
    assert [int(query["limit"]) for query in server.klines_requests()] == [300, 300, 100]


def test_a_silent_server_cap_below_the_metadata_still_pages_to_the_full_window(server, fake_time):
    server.max_limit = 300  # the exchange returns fewer than asked

    async def scenario(market: CcxtMarket) -> Any:
        return await market.fetch_ohlcv("BTC/USDT", "1m", limit=1500)

    frame = run(server, fake_time, scenario)
    assert len(frame) == 1500
    assert len(server.klines_requests()) == 5


# ------------------------------------------------------------------ the exchange's clock


@pytest.mark.parametrize(("skew_seconds", "newest_hours_ago"), [(+90, 0), (-90, 1)], ids=["exchange-ahead", "exchange-behind"])
def test_the_open_candle_is_dropped_by_the_exchange_clock_not_the_machines(server, skew_seconds, newest_hours_ago):
    """The machine reads 10:59:30 + skew ... the exchange's clock decides whether the 10:00 candle closed."""
    machine = FakeTime(SERVER_NOW_MS + HOUR_MS - 30_000 - skew_seconds * 1000 + 60_000 * (skew_seconds < 0))
    exchange_now_ms = machine.wall_ms() + skew_seconds * 1000
    server.now_ms = exchange_now_ms

    async def scenario(market: CcxtMarket) -> Any:
        return await market.fetch_ohlcv("BTC/USDT", "1h", limit=2), market.clock_offset_ms

    frame, offset_ms = run(server, machine, scenario)
    newest_ms = int(frame.index[-1].timestamp() * 1000)
    exchange_hour_ms = exchange_now_ms // HOUR_MS * HOUR_MS
    assert newest_ms == exchange_hour_ms - HOUR_MS  # the exchange's last closed hour, whatever the machine says
    assert offset_ms == pytest.approx(skew_seconds * 1000, abs=1000)


def test_without_a_server_time_the_newest_candle_lifts_a_clock_that_is_behind(server, fake_time):
    server.now_ms = SERVER_NOW_MS + 2 * HOUR_MS + 60_000  # the exchange is two hours ahead of this machine

    async def scenario(market: CcxtMarket) -> Any:
        market.exchange.has["fetchTime"] = False
        frame = await market.fetch_ohlcv("BTC/USDT", "1h", limit=2)
        return frame, market.stats()

    frame, stats = run(server, fake_time, scenario)
    assert int(frame.index[-1].timestamp() * 1000) == SERVER_NOW_MS + HOUR_MS
    assert not stats["clock_synced"] and stats["clock_offset_ms"] == 2 * HOUR_MS
    assert "/api/v3/time" not in server.paths()


def test_the_server_time_is_sampled_again_after_an_hour(server, fake_time):
    async def scenario(market: CcxtMarket) -> None:
        await market.fetch_ohlcv("BTC/USDT", "1m", limit=2)
        fake_time.advance(59 * 60)
        await market.fetch_ohlcv("BTC/USDT", "1m", limit=2)
        fake_time.advance(60)
        await market.fetch_ohlcv("BTC/USDT", "1m", limit=2)

    run(server, fake_time, scenario)
    assert server.paths().count("/api/v3/time") == 2


# ------------------------------------------------------------------ incremental fetching and REST calls per cycle


def test_fetching_only_what_closed_makes_six_rest_calls_a_cycle_instead_of_eighteen(server, fake_time):
    """The default config's 6 symbols x (1m, 5m, 1h), one cycle a minute, for an hour."""
    bases = ["BTC", "ETH", "SOL", "BNB", "XRP", "ADA"]
    server.symbols = [{**server.symbols[0], "symbol": f"{base}USDT", "baseAsset": base} for base in bases]
    symbols = [f"{base}/USDT" for base in bases]
    fake_time.advance(30)  # cycles run at hh:mm:30

    async def scenario(market: CcxtMarket) -> list[int]:
        held: dict[tuple[str, str], int] = {}
        per_cycle = []
        for _ in range(60):
            for symbol in symbols:
                for timeframe in ("1m", "5m", "1h"):
                    request = refresh_request(market.now_ms, timeframe, held.get((symbol, timeframe)), 300)
                    if request is None:
                        continue
                    frame = await market.fetch_ohlcv(symbol, timeframe, since_ms=request.since_ms, limit=request.limit)
                    if len(frame):
                        held[symbol, timeframe] = int(frame.index[-1].timestamp() * 1000)
            per_cycle.append(market.stats()["rest_calls_cycle"])
            market.advance()
            fake_time.advance(60)
        return per_cycle

    per_cycle = run(server, fake_time, scenario, symbols=symbols)
    assert per_cycle[0] == 18 + 2  # every series once, plus the server time and the market list
    later = per_cycle[1:]
    assert min(later) == 6  # only 1m closed
    assert later.count(12) == 11  # 1m and 5m at each 5-minute close (10:05 ... 10:55)
    assert sum(later) == 6 * 59 + 6 * 11  # the hour closes after the last cycle


def test_an_error_message_is_redacted_before_it_is_shortened(server, fake_time, monkeypatch):
    """A key echoed near the end of a long error must not survive as a prefix the log filter cannot recognise."""
    key = "k3y-echoed-at-the-cut-0123456789"
    monkeypatch.setenv("TEST_CUT_KEY", key)
    padding = "x" * 140  # ccxt's message is cut at 200 characters, inside the key
    server.faults.append(Fault(status=400, body={"code": -1100, "msg": f"{padding} bad key {key}"}))

    async def scenario(market: CcxtMarket) -> Any:
        return await outcome(market.fetch_ohlcv("BTC/USDT", "1h", limit=3))

    error = run(server, fake_time, scenario, api_key_env="TEST_CUT_KEY")
    assert "***" in str(error) and key[:10] not in str(error)
