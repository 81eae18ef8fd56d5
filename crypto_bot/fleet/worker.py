"""What a fleet worker does between two cycles: send its heartbeat, then wait for the next close.

Covers `between_cycles`, which `crypto-bot run` calls instead of its fixed pause when the bot's market
is a `RedisMarket`. The worker waits on the closes stream (no polling), at most `--interval` seconds,
then runs its cycle anyway: with the feeder or Redis gone its exits are still managed and its series
turn stale. A stop request ends the wait at once. Not covered: the cycle itself (`crypto_bot.bot`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from crypto_bot.fleet.heartbeat import publish_heartbeat, worker_heartbeat
from crypto_bot.fleet.keys import FleetKeys
from crypto_bot.fleet.redis_market import RedisMarket

if TYPE_CHECKING:
    from crypto_bot.bot import TradingBot


async def between_cycles(bot: TradingBot, market: RedisMarket, stop: asyncio.Event, wait_seconds: float) -> int:
    """Publish the worker's heartbeat, then wait for closes (at most `wait_seconds`) or `stop`; the closes heard."""
    config = bot.settings.market.redis
    await publish_heartbeat(market.link, FleetKeys(config.key_prefix), worker_heartbeat(bot), config.heartbeat_ttl_seconds)
    waiting = asyncio.ensure_future(market.wait_for_closes(wait_seconds))
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for task in (waiting, stopping):
        if task not in done:
            task.cancel()
    await asyncio.gather(waiting, stopping, return_exceptions=True)
    return waiting.result() if waiting in done and not waiting.cancelled() else 0
