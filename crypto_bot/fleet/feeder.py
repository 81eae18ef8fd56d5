"""`crypto-bot feed`: the one process of a fleet that fetches candles, for every worker, once.

Covers `Feeder` and `feed` (its loop). Each cycle the feeder brings every (symbol, timeframe) of the
universe up to date from `market.redis.upstream` with the bot's own rules (`market.refresh_series`:
nothing until a candle closes, then only what closed; the exchange-robustness rules of that
source: back-off, typed errors, a failed series keeps its window), then in one pipeline writes each
changed window (`codec`, with `window_ttl_seconds` to live) and announces each close on the closes
stream, windows first, so a worker that hears a close finds its window. Its clock's speed against wall
time goes with each close (`clock`).

Redis down: the feeder keeps fetching and keeps every window it holds (its L1, one per series:
bounded by the universe), and keeps the closes to announce in a buffer of `feeder_buffer_closes`
(the oldest dropped first, and counted). When Redis answers again, maybe restarted empty, it writes
every window it holds and announces the buffered closes. The link backs off as for an exchange.
Not covered: the workers (`redis_market`), heartbeats (`heartbeat`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from crypto_bot.fleet.codec import encode_window
from crypto_bot.fleet.heartbeat import feeder_heartbeat, publish_heartbeat
from crypto_bot.fleet.keys import FleetKeys
from crypto_bot.fleet.link import RedisLink
from crypto_bot.market import MarketDataError, MarketDataSource, SimulatedMarket, newest_open_ms, refresh_series

if TYPE_CHECKING:
    from crypto_bot.memory import MemoryManager
    from crypto_bot.settings import Settings

logger = logging.getLogger(__name__)

Series = tuple[str, str]  # (symbol, timeframe)


@dataclass(frozen=True, slots=True)
class Close:
    """A candle of `timeframe` that closed for `symbol`, opening at `open_ms`, by the feeder's clock `clock_ms`."""

    symbol: str
    timeframe: str
    open_ms: int
    clock_ms: int


def upstream_settings(settings: Settings) -> Settings:
    """The settings with `market.source` set to the feeder's upstream (what `build_market` then opens)."""
    return replace(settings, market=replace(settings.market, source=settings.market.redis.upstream))


class Feeder:
    """Fetches every series of the universe from the upstream and writes windows and closes to Redis."""

    cycle: int
    requests: int  # fetches sent to the upstream so far (one per closed series, as the bot counts them)
    requests_last_cycle: int
    dropped_closes: int
    link: RedisLink

    def __init__(
        self,
        settings: Settings,
        upstream: MarketDataSource,
        link: RedisLink,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = settings.market.redis
        self._timeframes = settings.timeframes
        self._window_candles = settings.strategy.history_candles
        self._keys = FleetKeys(self._config.key_prefix)
        self._monotonic = monotonic
        self.upstream = upstream
        self.link = link
        link.on_reconnect = self._rewrite_everything
        self._windows: dict[Series, pd.DataFrame] = {}
        self._unwritten: set[Series] = set()
        self._closes: deque[Close] = deque(maxlen=self._config.feeder_buffer_closes)
        self._stale: set[Series] = set()
        self._first_clock: tuple[int, float] | None = None
        self.cycle = 0
        self.requests = 0
        self.requests_last_cycle = 0
        self.dropped_closes = 0

    @property
    def buffered_closes(self) -> int:
        """Closes not yet announced (Redis was down)."""
        return len(self._closes)

    @property
    def stale_series(self) -> int:
        return len(self._stale)

    @property
    def windows(self) -> int:
        return len(self._windows)

    async def run_cycle(self) -> int:
        """Fetch what closed, write it to Redis, move the upstream's clock on; the closes of this cycle."""
        universe = self.upstream.universe()
        jobs = [(symbol, timeframe) for symbol in universe for timeframe in self._timeframes]
        clock_ms = self.upstream.now_ms  # what closed by now is fetched: a later candle is the next cycle's
        updates = await asyncio.gather(
            *(refresh_series(self.upstream, symbol, tf, self._windows.get((symbol, tf)), self._window_candles) for symbol, tf in jobs)
        )
        closes = 0
        self.requests_last_cycle = 0
        for series, update in zip(jobs, updates, strict=True):
            self.requests_last_cycle += update.requested
            if update.error is not None:
                logger.warning("no %s candles for %s: %s", series[1], series[0], update.error)
            if update.changed:
                self._windows[series] = update.frame
                self._unwritten.add(series)
                self._buffer(Close(*series, newest_open_ms(update.frame), clock_ms))  # type: ignore[arg-type]
                closes += 1
            (self._stale.add if update.stale else self._stale.discard)(series)
        self.requests += self.requests_last_cycle
        self._forget_delisted(set(jobs))
        await self._flush(clock_ms)
        self.upstream.advance()
        self.cycle += 1
        return closes

    def _buffer(self, close: Close) -> None:
        if len(self._closes) == self._closes.maxlen:
            self.dropped_closes += 1
        self._closes.append(close)

    def _forget_delisted(self, series: set[Series]) -> None:
        for gone in [held for held in self._windows if held not in series]:
            del self._windows[gone]
            self._unwritten.discard(gone)
            self._stale.discard(gone)

    def _rate(self, clock_ms: int) -> float:
        """Market ms per wall ms since the first cycle (1 for an exchange; the simulation's speed otherwise)."""
        now = self._monotonic()
        if self._first_clock is None:
            self._first_clock = (clock_ms, now)
        first_ms, first_at = self._first_clock
        elapsed_ms = (now - first_at) * 1000.0
        return (clock_ms - first_ms) / elapsed_ms if elapsed_ms > 0 and clock_ms > first_ms else 1.0

    async def _flush(self, clock_ms: int) -> bool:
        """Write the unwritten windows, then announce the buffered closes, in one pipeline; False when Redis is down."""
        unwritten = list(self._unwritten)
        closes = list(self._closes)
        rate = self._rate(clock_ms)
        config, keys = self._config, self._keys
        payloads = [(keys.window(*series), encode_window(self._windows[series])) for series in unwritten]

        def commands(client: Any) -> Any:
            pipe = client.pipeline(transaction=True)  # MULTI/EXEC: a worker hears a cycle's closes at once
            for key, payload in payloads:
                pipe.set(key, payload, ex=config.window_ttl_seconds)
            for close in closes:
                fields = {"symbol": close.symbol, "timeframe": close.timeframe, "open": close.open_ms,
                          "clock": close.clock_ms, "rate": repr(rate)}
                pipe.xadd(keys.closes, fields, maxlen=config.closes_stream_length, approximate=True)
            pipe.expire(keys.closes, config.window_ttl_seconds)
            pipe.set(keys.clock, json.dumps({"now_ms": clock_ms, "rate": rate}), ex=config.window_ttl_seconds)
            return pipe.execute()

        try:
            await self.link.call(commands, what=f"writing {len(payloads)} windows and {len(closes)} closes")
        except MarketDataError as error:
            logger.debug("windows and closes kept for later: %s", error)
            return False
        self._unwritten.difference_update(unwritten)
        for _ in closes:
            self._closes.popleft()
        return True

    def _rewrite_everything(self) -> None:
        """Redis is back and may have restarted empty: every window held is written again at the next flush."""
        self._unwritten = set(self._windows)


async def feed(
    settings: Settings,
    *,
    cycles: int | None,
    interval_seconds: float,
    stop: asyncio.Event,
    memory: MemoryManager | None = None,
    on_cycle: Callable[[Feeder], None] | None = None,
) -> Feeder:
    """Run the feeder until `stop` is set or `cycles` ran, pausing `interval_seconds` between cycles."""
    from crypto_bot.bot import build_market

    upstream = build_market(upstream_settings(settings))
    link = RedisLink(settings.market.redis)
    feeder = Feeder(settings, upstream, link)
    keys = FleetKeys(settings.market.redis.key_prefix)
    try:
        await warn_if_unbounded(link)
        if isinstance(upstream, SimulatedMarket):
            await resume_clock(link, keys, upstream)
        while not stop.is_set():
            await feeder.run_cycle()
            if memory is not None:
                memory.read_memory()
            await publish_heartbeat(link, keys, feeder_heartbeat(feeder, memory), settings.market.redis.heartbeat_ttl_seconds)
            if on_cycle is not None:
                on_cycle(feeder)
            if cycles is not None and feeder.cycle >= cycles:
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
            except TimeoutError:
                pass
    finally:
        await upstream.close()
        await link.close()
    return feeder


async def resume_clock(link: RedisLink, keys: FleetKeys, upstream: SimulatedMarket) -> None:
    """A simulated upstream goes on from the clock a previous feeder left in Redis: the workers' clocks never run
    backwards, so a feeder that started over from the simulation's start would leave them stale until it caught up."""
    try:
        data = await link.call(lambda client: client.get(keys.clock), what=f"GET {keys.clock}")
        now_ms = int(json.loads(data)["now_ms"]) if data is not None else None
    except MarketDataError as error:
        logger.warning("cannot read the previous feeder's clock; the simulation starts at its start: %s", error)
        return
    except (ValueError, TypeError, KeyError) as error:
        logger.warning("redis key %s is not a clock record (%s); the simulation starts at its start", keys.clock, error)
        return
    if now_ms is not None and now_ms > upstream.now_ms:
        upstream.resume_at(now_ms)
        logger.info("simulated upstream resumes at the previous feeder's clock, %d", upstream.now_ms)


async def warn_if_unbounded(link: RedisLink) -> None:
    """Warn when Redis has no maxmemory or evicts nothing: the shared tier must be bounded by Redis itself."""
    try:
        info = await link.call(lambda client: client.info("memory"), what="INFO memory")
    except MarketDataError as error:
        logger.warning("cannot read Redis's memory settings yet: %s", error)
        return
    if not info.get("maxmemory"):
        logger.warning("%s has no maxmemory: the shared tier is unbounded; start it with --maxmemory (README: Fleet)",
                       link.description)
    elif info.get("maxmemory_policy") == "noeviction":
        logger.warning("%s evicts nothing at maxmemory (noeviction): writes will fail when it is full; use "
                       "--maxmemory-policy volatile-ttl or allkeys-lru", link.description)
