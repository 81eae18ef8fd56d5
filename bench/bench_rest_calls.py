"""REST calls per cycle for the default config: refetching every series each cycle against fetching only what closed.

A real ccxt client (CcxtMarket) talks HTTP to the loopback Binance of the tests
(`tests/bot/exchange_stub.py`) for the default config's series: 6 symbols x (1m, 5m, 1h), windows of
300 candles, one cycle a minute for two hours (the exchange's clock and the machine's move together,
on a fake clock). "every cycle" is what the bot's `_refresh_series` did: each series each cycle, from
its last candle; "closed only" is `crypto_bot.market.refresh_series`. Counted: every HTTP request
ccxt sent (`stats()["rest_calls_cycle"]`), the first cycle (which also loads markets and samples the
server time) apart. The last column is the least a cycle can take on an exchange whose rate limit is
1000 ms per request (kraken's in ccxt): the requests one after another.
Run: .venv/bin/python bench/bench_rest_calls.py [cycles]
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the loopback exchange lives with the tests

from crypto_bot.market import CcxtMarket, newest_open_ms, refresh_series  # noqa: E402
from tests.bot.exchange_stub import LOOPBACK_CONFIG, SERVER_NOW_MS, point_at, running_server  # noqa: E402

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "ADA/USDT"]
TIMEFRAMES = ("1m", "5m", "1h")
WINDOW = 300
FETCH_LIMIT = 300
SLOW_RATE_LIMIT_SECONDS = 1.0


class Clock:
    """Seconds since the start; the wall clock in ms from `SERVER_NOW_MS`."""

    def __init__(self) -> None:
        self.seconds = 30.0  # cycles run at hh:mm:30

    def monotonic(self) -> float:
        return self.seconds

    def wall_ms(self) -> int:
        return SERVER_NOW_MS + int(self.seconds * 1000)

    async def sleep(self, seconds: float) -> None:
        self.seconds += seconds


async def every_cycle(market: CcxtMarket, held: dict[tuple[str, str], Any]) -> None:
    """The bot before: each series each cycle, `since` its newest candle (refetched, then deduplicated)."""

    async def one(symbol: str, timeframe: str) -> None:
        cached = held.get((symbol, timeframe))
        since_ms = newest_open_ms(cached)
        limit = WINDOW if since_ms is None else FETCH_LIMIT
        held[symbol, timeframe] = await market.fetch_ohlcv(symbol, timeframe, since_ms=since_ms, limit=limit)

    await asyncio.gather(*(one(symbol, timeframe) for symbol in SYMBOLS for timeframe in TIMEFRAMES))


async def closed_only(market: CcxtMarket, held: dict[tuple[str, str], Any]) -> None:
    """The market layer's refresh_series: a series is fetched once a candle of it has closed."""

    async def one(symbol: str, timeframe: str) -> None:
        update = await refresh_series(market, symbol, timeframe, held.get((symbol, timeframe)), WINDOW)
        if update.changed:
            held[symbol, timeframe] = update.frame

    await asyncio.gather(*(one(symbol, timeframe) for symbol in SYMBOLS for timeframe in TIMEFRAMES))


def calls_per_cycle(strategy: Any, cycles: int) -> list[int]:
    with running_server() as server:
        server.symbols = [
            {**server.symbols[0], "symbol": symbol.replace("/", ""), "baseAsset": symbol.split("/")[0]}
            for symbol in SYMBOLS
        ]
        clock = Clock()
        server.clock_ms = clock.wall_ms

        async def run() -> list[int]:
            market = CcxtMarket(
                "binance", config=LOOPBACK_CONFIG, symbols=SYMBOLS, timeframes=TIMEFRAMES, clock_ms=clock.wall_ms,
                monotonic=clock.monotonic, sleep=clock.sleep, rng=random.Random(1),
            )
            point_at(market, server)
            held: dict[tuple[str, str], Any] = {}
            counts = []
            try:
                for _ in range(cycles):
                    await strategy(market, held)
                    counts.append(market.stats()["rest_calls_cycle"])
                    market.advance()
                    clock.seconds += 60
            finally:
                await market.close()
            return counts

        return asyncio.run(run())


def main() -> None:
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    print(f"default config: {len(SYMBOLS)} symbols x {', '.join(TIMEFRAMES)}, window {WINDOW}; {cycles} cycles, one a minute")
    header = f"{'fetching':<14} {'first':>6} {'mean':>6} {'min':>5} {'max':>5} {'total':>6} {'cycle at 1000 ms/call':>22}"
    print(header)
    results = {}
    for label, strategy in (("every cycle", every_cycle), ("closed only", closed_only)):
        counts = calls_per_cycle(strategy, cycles)
        later = counts[1:]
        results[label] = statistics.fmean(later)
        print(
            f"{label:<14} {counts[0]:>6} {statistics.fmean(later):>6.2f} {min(later):>5} {max(later):>5} "
            f"{sum(counts):>6} {statistics.fmean(later) * SLOW_RATE_LIMIT_SECONDS:>20.1f} s"
        )
    print(f"closed only / every cycle: {results['closed only'] / results['every cycle']:.3f}")


if __name__ == "__main__":
    main()
