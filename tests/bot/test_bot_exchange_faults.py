"""The whole bot against a loopback exchange that misbehaves: it keeps cycling, never busy-loops, and trades again.

A real `TradingBot`, with a real `CcxtMarket` talking HTTP to `exchange_stub.LoopbackBinance` on
127.0.0.1, runs cycle by cycle through each fault class of issue 13: 429s with Retry-After, 503s,
client timeouts, dropped connections, truncated or garbage JSON, an empty candle list, a gap in the
candles, a per-request cap and clock skew. Time is a `FakeTime` (the market's wall clock, monotonic
clock and back-off sleeps; the stub's clock follows it), so a half-hour outage runs in seconds and the
requests it cost are counted per virtual second. Only a client timeout waits for real (0.1 s).

The strategy is `LongAfterWarmUp`: quiet for the first cycle, then long on whatever it is asked
about, so a trade is certain as soon as a window is fresh, and a signal from a stale window would show.
Not covered here: the market source alone against the stub (`test_exchange_faults`), the bot against a
fake market (`test_trading_cycle`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("ccxt")

from crypto_bot.bot import CycleStatus
from crypto_bot.market import BackoffPolicy, CcxtMarket
from crypto_bot.settings import parse_settings
from tests.bot.exchange_stub import (
    HOUR_MS,
    INTERVAL_MS,
    LOOPBACK_CONFIG,
    SERVER_NOW_MS,
    Fault,
    LoopbackBinance,
    binance_symbol,
    kline,
    point_at,
    rate_limited,
    running_server,
    unavailable,
)
from tests.bot.support import Session
from tests.bot.test_exchange_faults import FakeTime  # one virtual clock for the market alone and the whole bot

MINUTE_MS = INTERVAL_MS["1m"]
SYMBOLS = ["BTC/USDT", "ETH/USDT"]
TIMEFRAMES = ["1m", "15m"]
ANALYSED = [f"{symbol} 1m" for symbol in SYMBOLS]  # the analysis timeframe's series, as summary() names them
PLUGIN = f"{__name__}:LongAfterWarmUp"
# The stub's 1m closes climb 1.75 ... 24.75 and fall back (ATR about 2 to 3): a stop half an ATR below the entry
# stays above zero at the lowest close and below the entry candle's low, and no trailing stop, which would
# close the position against its own entry candle. A position opened stays open for the asserts.
STUB_RISK = {"stop_atr_multiple": 0.5, "take_profit_atr_multiple": 1.0, "trailing_stop_ratio": None}


class LongAfterWarmUp:
    """A strategy that stays out for `quiet_cycles` cycles, then goes long on every symbol it is asked about."""

    def __init__(self, quiet_cycles: int = 1) -> None:
        self.quiet_cycles = quiet_cycles
        self.cycles_ended = 0
        self.asked: list[str] = []

    def signal(self, symbol: str, candles: Mapping[str, pd.DataFrame]) -> float | None:
        self.asked.append(symbol)
        return 1.0 if self.cycles_ended >= self.quiet_cycles else None

    def on_cycle_end(self) -> None:
        self.cycles_ended += 1


class LoopbackBot:
    """A TradingBot on a CcxtMarket pointed at the loopback exchange; each cycle runs, then virtual time moves on."""

    def __init__(self, session: Session, server: LoopbackBinance, time: FakeTime) -> None:
        self.session = session
        self.bot = session.bot
        self.server = server
        self.time = time
        self.at_ms = self.ended_ms = server.now_ms  # the exchange's time as the last cycle started and ended

    @property
    def plugin(self) -> LongAfterWarmUp:
        return self.bot.strategy.plugin

    @property
    def positions_opened(self) -> int:
        return len(self.bot.broker.positions) + self.bot.broker.trades_count

    def cycle(self, seconds: float = 60.0) -> CycleStatus:
        """One cycle (no phase may fail: the bot handles the fault itself), then `seconds` of virtual time pass."""
        self.at_ms = self.server.now_ms
        self.session.cycle()
        self.ended_ms = self.server.now_ms
        assert [(report.name, report.error) for report in self.bot.runner.last_report if report.error] == []
        self.time.advance(seconds)
        return self.bot.last_status

    def window(self, timeframe: str, symbol: str) -> pd.DataFrame:
        return self.bot.ctx.df_cache[timeframe][symbol]


@pytest.fixture
def server() -> Iterator[LoopbackBinance]:
    with running_server() as httpd:
        httpd.symbols.append(binance_symbol("ETH", "USDT"))
        yield httpd


@pytest.fixture
def loopback_bot(
    server: LoopbackBinance, start: Callable[..., Session], config_dict: Callable[..., dict[str, Any]]
) -> Callable[..., LoopbackBot]:
    """`loopback_bot(skew_ms=, ccxt={...}, strategy={...}, backoff=)`: a prepared bot; the machine reads 10:00:30,
    the exchange that plus `skew_ms`; `ccxt` and `strategy` add to those sections of the small test config."""

    def build(
        *,
        skew_ms: int = 0,
        ccxt: Mapping[str, Any] | None = None,
        strategy: Mapping[str, Any] | None = None,
        backoff: BackoffPolicy | None = None,
    ) -> LoopbackBot:
        time = FakeTime(SERVER_NOW_MS + 30_000)  # cycles run at hh:mm:30
        server.clock_ms = lambda: time.wall_ms() + skew_ms
        settings = parse_settings(
            config_dict(
                symbols=SYMBOLS,
                timeframes=TIMEFRAMES,
                market={"source": "ccxt", "ccxt": {"exchange": "binance", **(ccxt or {})}},
                strategy={"plugin": PLUGIN, "batch_size": len(SYMBOLS), **(strategy or {})},
                risk=STUB_RISK,
            )
        )
        market = CcxtMarket.from_config(
            settings.market.ccxt,
            symbols=settings.symbols,
            timeframes=settings.timeframes,
            config=LOOPBACK_CONFIG,
            clock_ms=time.wall_ms,
            monotonic=time.monotonic,
            sleep=time.sleep,
            rng=random.Random(13),
            backoff=backoff,
        )
        point_at(market, server)
        return LoopbackBot(start(settings, market=market), server, time)

    return build


def stub_close(open_ms: int) -> float:
    """The close the stub gives the 1m candle opening at `open_ms`."""
    return float(kline(open_ms, MINUTE_MS)[4])


def newest_closed_minute_ms(exchange_ms: int) -> int:
    return exchange_ms // MINUTE_MS * MINUTE_MS - MINUTE_MS


def opens_ms(frame: pd.DataFrame) -> list[int]:
    return [int(timestamp.timestamp() * 1000) for timestamp in frame.index]


def assert_trading_on_the_stubs_candles(run: LoopbackBot) -> None:
    """No series stale; each analysed window ends at the exchange's newest closed minute with the stub's prices,
    and a long position in each symbol was opened at that close (plus the broker's slippage)."""
    assert run.bot.last_status.stale_series == 0
    assert run.bot.summary()["market"]["stale_series"] == {}
    newest_ms = newest_closed_minute_ms(run.at_ms)
    positions = {position.symbol: position for position in run.bot.broker.positions.values()}
    assert sorted(positions) == SYMBOLS
    for symbol, position in positions.items():
        window = run.window("1m", symbol)
        assert opens_ms(window)[-1] == newest_ms and window["close"].iloc[-1] == stub_close(newest_ms)
        assert len(window) == run.bot.settings.strategy.history_candles
        assert position.side == "long"
        assert position.entry_price == pytest.approx(stub_close(newest_ms) * (1 + run.bot.broker.slippage_ratio))
        assert run.at_ms <= position.opened_at_ms <= run.ended_ms  # the broker's clock is the exchange's


# ------------------------------------------------------------------ incidents: stale while they last, trading after


@dataclasses.dataclass(frozen=True)
class Incident:
    """A fault class as the bot meets it: `begin(server, exchange_ms)` starts it, it lasts `cycles` one-minute
    cycles, and the market counts each failed fetch under `error_kind` (None: no request fails, data is missing)."""

    begin: Callable[[LoopbackBinance, int], None]
    cycles: int
    error_kind: str | None
    ccxt: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def standing(fault: Fault) -> Callable[[LoopbackBinance, int], None]:
    """Every request gets `fault` until the incident ends."""

    def begin(server: LoopbackBinance, exchange_ms: int) -> None:
        server.outage = fault

    return begin


def gap(minutes: int) -> Callable[[LoopbackBinance, int], None]:
    """The exchange has no candle for the next `minutes` minutes that close: they stay missing from its history."""

    def begin(server: LoopbackBinance, exchange_ms: int) -> None:
        first_ms = newest_closed_minute_ms(exchange_ms)
        server.missing_opens = {first_ms + minute * MINUTE_MS for minute in range(minutes)}

    return begin


INCIDENTS = {
    "503": Incident(standing(unavailable()), cycles=3, error_kind="unavailable"),
    "dropped-connection": Incident(standing(Fault(drop=True)), cycles=3, error_kind="unavailable"),
    "timeout": Incident(standing(Fault(hang_seconds=0.3)), cycles=2, error_kind="network", ccxt={"timeout_ms": 100}),
    "429-retry-after-90s": Incident(standing(rate_limited(90)), cycles=2, error_kind="rate_limited"),
    "truncated-json": Incident(standing(Fault(raw=b'[[1704067200000,"1.5","2",')), cycles=2, error_kind="bad_data"),
    "html": Incident(standing(Fault(raw=b"<html>502 Bad Gateway</html>")), cycles=2, error_kind="bad_data"),
    "empty-candle-list": Incident(standing(Fault(rows=[])), cycles=2, error_kind=None),
    "gap": Incident(gap(minutes=3), cycles=3, error_kind=None),
}


@pytest.mark.parametrize("incident", INCIDENTS.values(), ids=INCIDENTS.keys())
def test_through_an_incident_the_bot_cycles_on_stale_windows_without_entries_and_trades_once_it_ends(
    loopback_bot, incident
):
    run = loopback_bot(ccxt=incident.ccxt)
    run.cycle()  # markets, server time and whole windows loaded; the strategy's quiet cycle
    asked_before = len(run.plugin.asked)
    incident.begin(run.server, run.server.now_ms)
    for _ in range(incident.cycles):
        status = run.cycle()
        assert status.stale_series == len(SYMBOLS)  # the analysed 1m series; the 15m ones have nothing due
        assert sorted(run.bot.summary()["market"]["stale_series"]) == ANALYSED
        assert run.bot.ctx.analysis_results == [] and len(run.plugin.asked) == asked_before  # no signal from them
        assert run.positions_opened == 0
    errors = run.bot.market.stats()["errors"]
    if incident.error_kind is None:
        assert sum(errors.values()) == 0
    else:
        assert errors[incident.error_kind] >= len(SYMBOLS) * incident.cycles, errors
    run.server.outage = None  # over (a gap stays: the exchange's history keeps its hole)
    run.cycle()  # a minute later, every pause the incident set (40 s at most, 90 s from the 429) has run out
    assert_trading_on_the_stubs_candles(run)


def test_the_gap_stays_in_the_window_once_trading_resumes(loopback_bot):
    run = loopback_bot()
    run.cycle()
    gap(minutes=3)(run.server, run.server.now_ms)
    missing_ms = sorted(run.server.missing_opens)
    for _ in range(4):
        run.cycle()
    for symbol in SYMBOLS:
        held_ms = opens_ms(run.window("1m", symbol))
        assert set(missing_ms).isdisjoint(held_ms)
        assert held_ms[-2:] == [missing_ms[0] - MINUTE_MS, missing_ms[-1] + MINUTE_MS]  # the hole, then trading on
    assert_trading_on_the_stubs_candles(run)


def test_a_429_with_a_short_retry_after_is_waited_out_within_the_cycle_which_trades(loopback_bot):
    run = loopback_bot()
    run.cycle()
    run.server.faults.extend([rate_limited(retry_after_seconds=3)] * len(SYMBOLS))  # both concurrent requests
    sent = len(run.server.klines_requests())
    status = run.cycle()
    assert status.stale_series == 0 and status.fetches == len(SYMBOLS)
    assert len(run.server.klines_requests()) - sent == 2 * len(SYMBOLS)  # each asked again after the wait
    assert max(run.time.sleeps) >= 3.0
    stats = run.bot.market.stats()
    assert stats["retries"] >= 1 and stats["errors"]["rate_limited"] == 0
    assert_trading_on_the_stubs_candles(run)


# ------------------------------------------------------------------ outages: requests per second


def busiest_second(arrivals_ms: list[int]) -> int:
    """The most requests the stub received within one second of its clock."""
    return max(Counter(arrival_ms // 1000 for arrival_ms in arrivals_ms).values(), default=0)


def pauses_within(seconds: float, shortest_pause_seconds: Callable[[int], float]) -> int:
    """How many back-off pauses fit in `seconds` when the n-th (from 1) is as short as the policy allows."""
    pauses, elapsed = 0, 0.0
    while elapsed < seconds:
        pauses += 1
        elapsed += shortest_pause_seconds(pauses)
    return pauses


# Each outage fault, and the requests one fetch sends the stub against it: a 503 is not retried; aiohttp sends a
# GET again, once, when the kept-alive connection it reused is dropped without an answer; a timeout is retried.
OUTAGES = {
    "503": (unavailable(), 1),
    "dropped-connection": (Fault(drop=True), 2),
    "timeout": (Fault(hang_seconds=0.3), 1 + BackoffPolicy().network_retries),
}


@pytest.mark.parametrize(("fault", "requests_per_fetch"), OUTAGES.values(), ids=OUTAGES.keys())
def test_a_half_hour_outage_costs_one_probe_per_back_off_pause_and_trading_resumes_after(
    loopback_bot, caplog, fault, requests_per_fetch
):
    """The bot cycles every second (the command's default interval) through 30 minutes of `fault`."""
    caplog.set_level(logging.ERROR, logger="crypto_bot")  # not a warning per stale series per cycle (5500)
    policy = BackoffPolicy()
    run = loopback_bot(backoff=policy, ccxt={"timeout_ms": 100})
    run.cycle(seconds=30.0)  # at 10:00:30; the outage starts at 10:01:00, as the 10:00 candle closes
    outage_seconds = 1800
    run.server.outage = fault
    sent_before = len(run.server.requests)
    fetches = 0
    for _ in range(outage_seconds):
        status = run.cycle(seconds=1.0)
        fetches += status.fetches
        assert status.stale_series >= len(SYMBOLS) and run.bot.ctx.analysis_results == []
    arrivals_ms = run.server.arrivals_ms[sent_before:]
    assert run.bot.cycle == 1 + outage_seconds and run.positions_opened == 0
    assert set(run.bot.summary()["market"]["stale_series"]) == {f"{s} {tf}" for s in SYMBOLS for tf in TIMEFRAMES}
    # The first cycle's fetches go together; then one probe per pause (5 s doubled up to 300 s, jittered to half).
    probes = pauses_within(outage_seconds, lambda n: policy.doubled(policy.outage_pause_seconds, n) / 2)
    assert len(arrivals_ms) <= (len(SYMBOLS) + probes) * requests_per_fetch
    assert busiest_second(arrivals_ms) <= len(SYMBOLS) * requests_per_fetch
    assert len(arrivals_ms) * 100 < fetches * requests_per_fetch  # what the fetches would send without a back-off
    run.server.outage = None
    for _ in range(int(policy.max_pause_seconds) + 1):  # the pause running when the exchange came back
        run.cycle(seconds=1.0)
        if run.positions_opened:
            break
    assert_trading_on_the_stubs_candles(run)


# ------------------------------------------------------------------ the per-request cap


# (the server's cap, the window): a window longer than Binance's cap of 1000 candles a request, which ccxt knows;
# and a server that caps requests below that, silently, at a window that fits one request by ccxt's account.
CAPS = {"window-over-the-cap": (1000, 1500), "silent-cap-below-ccxts": (300, 500)}


@pytest.mark.parametrize(("max_limit", "history_candles"), CAPS.values(), ids=CAPS.keys())
def test_a_window_over_the_servers_per_request_cap_is_paged_in_whole_and_traded_on(
    server, loopback_bot, max_limit, history_candles
):
    server.max_limit = max_limit
    run = loopback_bot(strategy={"history_candles": history_candles})
    run.cycle()
    series = len(SYMBOLS) * len(TIMEFRAMES)
    assert len(server.klines_requests()) >= series * math.ceil(history_candles / max_limit)
    for timeframe in TIMEFRAMES:
        length_ms = INTERVAL_MS[timeframe]
        newest_ms = run.at_ms // length_ms * length_ms - length_ms
        whole_window_ms = list(range(newest_ms - (history_candles - 1) * length_ms, newest_ms + 1, length_ms))
        for symbol in SYMBOLS:
            assert opens_ms(run.window(timeframe, symbol)) == whole_window_ms
    run.cycle()
    assert_trading_on_the_stubs_candles(run)


# ------------------------------------------------------------------ clock skew


@pytest.mark.parametrize(
    "skew_ms", [75_000, -75_000, 2 * HOUR_MS], ids=["exchange-75s-ahead", "exchange-75s-behind", "exchange-2h-ahead"]
)
def test_with_clocks_apart_the_bot_closes_candles_and_stamps_fills_by_the_exchanges_clock(loopback_bot, skew_ms):
    """The machine reads hh:mm:30; the exchange hh:mm:30 plus the skew. By the machine's clock the bot would drop a
    closed candle (exchange ahead) or wait for one that is still open and call the window stale (exchange behind)."""
    run = loopback_bot(skew_ms=skew_ms)
    for _ in range(2):
        status = run.cycle()
        assert status.stale_series == 0
        for symbol in SYMBOLS:
            assert opens_ms(run.window("1m", symbol))[-1] == newest_closed_minute_ms(run.at_ms)
    assert run.bot.market.clock_offset_ms == skew_ms
    assert_trading_on_the_stubs_candles(run)


def test_a_market_built_from_the_settings_takes_the_ccxt_config_it_is_given(loopback_bot):
    """`CcxtMarket.from_config(section, config=...)`: the loopback's config reaches the exchange (it once collided
    with the section's own parameter name)."""
    assert loopback_bot().bot.market.exchange.rateLimit == LOOPBACK_CONFIG["rateLimit"]
