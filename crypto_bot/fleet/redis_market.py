"""A worker's market source: candle windows from the fleet's Redis (L2), the clock from the feeder's closes.

Covers `RedisMarket`, the `MarketDataSource` of `market.source: redis`. It never reaches the exchange:
- `universe()` is this worker's shard of `symbols` (`shards`);
- `fetch_ohlcv` reads the window the feeder wrote (`keys.window`), decodes it (`codec`: bad bytes are
  `BadData` naming the key) and returns the slice the window rule allows by the feeder's clock. The
  fetches of one cycle go out as one MGET (they are gathered on one event loop tick);
  a key that is absent (not written yet, expired or evicted) is an L2 miss: no candles, the series
  goes stale until the feeder's next close rewrites it;
- `wait_for_closes` blocks on the closes stream (XREAD BLOCK) instead of polling, and moves the clock;
- every command goes through `link.RedisLink`: with Redis down, fetches fail at once with
  `ExchangeUnavailable`, the bot keeps its L1 windows (its `df_cache`), the clock runs on (`clock`) so
  they turn stale, and the link reconnects with back-off; nothing raises past one series.
Not covered: L1 (the bot's managed `df_cache`), heartbeats (`heartbeat`), writing windows (`feeder`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from crypto_bot.fleet.clock import FeedClock
from crypto_bot.fleet.codec import decode_window
from crypto_bot.fleet.keys import FleetKeys
from crypto_bot.fleet.link import RedisLink
from crypto_bot.fleet.shards import Shard
from crypto_bot.market.config import RedisConfig
from crypto_bot.market.errors import MarketDataError
from crypto_bot.market.source import ohlcv_frame, visible_slice
from crypto_bot.market.stats import SourceStats
from crypto_bot.market.timeframes import checked_fetch, timeframe_ms, validate_symbol, validate_timeframes

logger = logging.getLogger(__name__)

_READ_BATCH = 10_000  # stream entries one XREAD returns at most
_BLOCK_SLICE_RATIO = 0.5  # one blocking read waits at most this share of the reply timeout


class RedisMarket:
    """The shard's windows from Redis, by the feeder's clock."""

    __slots__ = (
        "_batch", "_clock", "_config", "_keys", "_last_id", "_link", "_shard", "_stats", "_symbols",
        "_timeframes", "closes_heard", "l2_hits", "l2_misses", "name",
    )

    name: str
    l2_hits: int
    l2_misses: int
    closes_heard: int
    _last_id: str | None
    _batch: dict[str, list[asyncio.Future[Any]]]

    def __init__(
        self,
        config: RedisConfig,
        *,
        symbols: Iterable[str],
        timeframes: Iterable[str],
        shard: Shard = Shard(),
        link: RedisLink | None = None,
        clock: FeedClock | None = None,
    ) -> None:
        self.name = "redis"
        self._config = config
        self._shard = shard
        self._symbols = tuple(symbol for symbol in map(validate_symbol, symbols) if shard.owns(symbol))
        timeframes = tuple(timeframes)
        self._timeframes = validate_timeframes(timeframes, min(timeframes, key=timeframe_ms))
        self._keys = FleetKeys(config.key_prefix)
        self._link = link if link is not None else RedisLink(config)
        self._link.on_reconnect = self._resync
        self._clock = clock if clock is not None else FeedClock(timeframe_ms(self._timeframes[0]))
        self._stats = SourceStats()
        self._last_id = None
        self._batch = {}
        self.l2_hits = 0
        self.l2_misses = 0
        self.closes_heard = 0

    def __repr__(self) -> str:
        return f"RedisMarket({self._link.description}, shard {self._shard.name}, {len(self._symbols)} symbols)"

    @property
    def shard(self) -> Shard:
        return self._shard

    @property
    def link(self) -> RedisLink:
        return self._link

    @property
    def now_ms(self) -> int:
        """The feeder's clock as last heard (run on through silences: `clock`)."""
        return self._clock.now_ms()

    def universe(self) -> list[str]:
        """This worker's shard of the configured symbols."""
        return list(self._symbols)

    def advance(self) -> None:
        """End the bot's cycle (the counters' cycle only: the clock is the feeder's)."""
        self._stats.end_cycle()

    def stats(self) -> dict[str, Any]:
        """The common counters (no exchange calls: those are the feeder's), L2 hits and misses, the link's state."""
        lookups = self.l2_hits + self.l2_misses
        return {
            **self._stats.snapshot(),
            "redis_calls": self._link.calls,
            "l2_hits": self.l2_hits,
            "l2_misses": self.l2_misses,
            "l2_hit_rate": self.l2_hits / lookups if lookups else 0.0,
            "closes_heard": self.closes_heard,
            "connected": self._link.connected,
            "clock_running_alone": self._clock.running_alone,
        }

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 200
    ) -> pd.DataFrame:
        """The visible candles of the window the feeder wrote (see the module docstring)."""
        validate_symbol(symbol)
        length_ms = checked_fetch(timeframe, self._timeframes, since_ms=since_ms, limit=limit)
        key = self._keys.window(symbol, timeframe)
        try:
            if not self._clock.heard:
                await self._read_clock()
            data = await self._read(key)
            if data is None:
                self.l2_misses += 1
                return ohlcv_frame(np.empty(0, dtype=np.int64), np.empty((0, 5)))
            self.l2_hits += 1
            window = decode_window(data, key=key)
        except MarketDataError as error:
            error.symbol, error.timeframe = symbol, timeframe
            self._stats.count_error(error)
            raise
        open_ms = window.index.as_unit("ms").asi8
        return window.iloc[visible_slice(open_ms, self.now_ms, length_ms, since_ms, limit)]

    async def _read(self, key: str) -> bytes | None:
        """The value of `key`, read in one MGET with every other key asked for on this loop tick."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiting = self._batch.setdefault(key, [])
        waiting.append(future)
        if len(self._batch) == 1 and len(waiting) == 1:
            asyncio.get_running_loop().create_task(self._read_batch())
        return await future

    async def _read_batch(self) -> None:
        await asyncio.sleep(0)  # the other fetches of this cycle's gather queue their keys meanwhile
        batch, self._batch = self._batch, {}
        keys = list(batch)
        try:
            values = await self._link.call(lambda client: client.mget(keys), what=f"MGET of {len(keys)} windows")
        except MarketDataError as error:  # each series gets its own error (the bot logs and counts them per series)
            for future in _pending(batch.values()):
                future.set_exception(type(error)(error.message, retry_after_seconds=error.retry_after_seconds))
            return
        except BaseException as error:  # a bug: every fetch of the batch raises it rather than waits forever
            for future in _pending(batch.values()):
                future.set_exception(error)
            raise
        for key, value in zip(keys, values, strict=True):
            for future in _pending([batch[key]]):
                future.set_result(value)

    def _resync(self) -> None:
        """Redis is back, maybe restarted empty: read the stream from its newest entry and the clock key again."""
        self._last_id = None

    async def _read_clock(self) -> None:
        """The feeder's clock from its clock key (before the first close is heard)."""
        data = await self._link.call(lambda client: client.get(self._keys.clock), what=f"GET {self._keys.clock}")
        if data is not None:
            announcement = _clock_record(data, self._keys.clock)
            if announcement is not None:
                self._clock.hear(*announcement)

    async def wait_for_closes(self, timeout_seconds: float) -> int:
        """Block until the feeder announces closes, at most `timeout_seconds`; the closes heard (0 on a timeout or an
        outage: the link is paused, and this waits out the pause or the timeout, whichever is shorter)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        while True:
            remaining = deadline - loop.time()
            pause = self._link.resume_in_seconds()
            if pause > 0:
                await asyncio.sleep(max(0.0, min(pause, remaining)))
                if pause >= remaining:
                    return 0
                continue
            block_ms = int(max(0.0, min(remaining, self._config.timeout_seconds * _BLOCK_SLICE_RATIO)) * 1000)
            try:
                heard = await self._read_closes(block_ms)
            except MarketDataError as error:
                logger.debug("no closes: %s", error)
                if self._link.resume_in_seconds() > 0:
                    continue  # an outage: wait out its pause (above)
                return 0  # Redis answered with a refusal: asking again at once would only repeat it
            if heard or loop.time() >= deadline:
                return heard

    async def _read_closes(self, block_ms: int) -> int:
        """One XREAD of the closes stream (blocking up to `block_ms`, not at all for 0); the closes it returned."""
        stream = self._keys.closes
        if self._last_id is None:  # start at the newest entry: older closes are in the windows already
            newest = await self._link.call(lambda client: client.xrevrange(stream, count=1), what=f"XREVRANGE {stream}")
            self._last_id = newest[0][0].decode() if newest else "0-0"
            await self._read_clock()
        last_id = self._last_id
        reply = await self._link.call(
            lambda client: client.xread({stream: last_id}, count=_READ_BATCH, block=block_ms or None),
            what=f"XREAD {stream}",
        )
        entries = reply[0][1] if reply else []
        for entry_id, fields in entries:
            self._last_id = entry_id.decode()
            clock = fields.get(b"clock")
            if clock is not None:
                self._clock.hear(int(clock), float(fields.get(b"rate", b"1")))
        self.closes_heard += len(entries)
        return len(entries)

    async def close(self) -> None:
        """Close the link; safe to call twice."""
        await self._link.close()


def _pending(groups: Iterable[list[asyncio.Future[Any]]]) -> Iterable[asyncio.Future[Any]]:
    """The futures of `groups` still waiting (a fetch cancelled meanwhile is skipped)."""
    return (future for futures in groups for future in futures if not future.done())


def _clock_record(data: bytes, key: str) -> tuple[int, float] | None:
    """(now_ms, rate) of the clock key's JSON; None, with a warning naming the key, when it is not one."""
    try:
        record = json.loads(data)
        return int(record["now_ms"]), float(record["rate"])
    except (ValueError, TypeError, KeyError) as error:
        logger.warning("redis key %s is not a clock record (%s); waiting for the next close", key, error)
        return None
