"""A fleet in one test process: a feeder and N worker bots on a real redis-server, stepped on a shared fake clock.

Each process of a real fleet has its own event loop; here the feeder and each worker `Session` keep
theirs and are run in turn, one `step` at a time: the feeder's cycle, then each worker hears the closes
and runs its cycle. Time (back-off pauses, the feeder's clock speed, a worker's clock through silences)
is a `FakeClock` moved half a second a step: the tests never sleep for an outage.
"""

from __future__ import annotations

import asyncio
from typing import Any

from crypto_bot.bot import build_market
from crypto_bot.fleet import FeedClock, Feeder, RedisLink, RedisMarket, Shard, upstream_settings, worker_settings
from crypto_bot.market import timeframe_ms
from crypto_bot.settings import Settings
from tests.bot.support import Session
from tests.fakes import FakeClock

STEP_SECONDS = 0.5


class Fleet:
    """A feeder and `workers` worker bots over one Redis."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.clock = FakeClock()
        self.loop = asyncio.new_event_loop()
        config = settings.market.redis
        self.feeder = Feeder(
            settings, build_market(upstream_settings(settings)), RedisLink(config, monotonic=self.clock),
            monotonic=self.clock,
        )
        self.workers: list[Session] = []
        for number in range(1, workers + 1):
            shard = Shard(number, workers)
            market = RedisMarket(
                config, symbols=settings.symbols, timeframes=settings.timeframes, shard=shard,
                link=RedisLink(config, monotonic=self.clock),
                clock=FeedClock(timeframe_ms(settings.timeframes[0]), monotonic=self.clock),
            )
            self.workers.append(Session(worker_settings(settings, shard), market=market))

    def step(self) -> None:
        """Half a second on: the feeder's cycle, then each worker hears its closes and runs a cycle."""
        self.clock.advance(STEP_SECONDS)
        self.loop.run_until_complete(self.feeder.run_cycle())
        for worker in self.workers:
            worker.loop.run_until_complete(worker.bot.market.wait_for_closes(0))
            worker.cycle()

    def entries(self) -> int:
        """Positions ever opened across the fleet (open ones plus closed trades)."""
        return sum(len(w.bot.broker.positions) + w.bot.broker.trades_count for w in self.workers)

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.run(self.feeder.upstream.close())
        self.run(self.feeder.link.close())
        self.loop.close()
