"""Heartbeats: each fleet process's latest figures in Redis, for `crypto-bot status --fleet` and the status page.

Covers `Heartbeat` (one record, JSON: a few hundred bytes, not candles), how a worker's and the
feeder's are made (`worker_heartbeat`, `feeder_heartbeat`) and `publish_heartbeat`, which writes one
under `keys.heartbeat(name)` with `market.redis.heartbeat_ttl_seconds` to live: a process that stops
sending drops out of the view by itself. A failed publish is logged at debug level and skipped (the
link already said Redis is down). Not covered: reading them back (`status`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crypto_bot.fleet.keys import FleetKeys
from crypto_bot.fleet.link import RedisLink
from crypto_bot.market.errors import MarketDataError

if TYPE_CHECKING:
    from crypto_bot.bot import TradingBot
    from crypto_bot.fleet.feeder import Feeder
    from crypto_bot.memory import MemoryManager

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One process of the fleet at the end of its latest cycle."""

    name: str  # "worker 1/3" or "feeder"
    role: str  # "worker" or "feeder"
    pid: int
    host: str
    sent_at: float  # epoch seconds
    cycle: int
    rss_bytes: int | None
    pressure_level: str
    cache_bytes: int
    l1_hits: int  # the process's managed cache (a worker's df_cache)
    l1_misses: int
    l2_hits: int  # windows found in Redis
    l2_misses: int
    stale_series: int
    open_positions: int
    equity: float | None
    exchange_requests: int  # the feeder's requests to the exchange so far (workers make none)
    buffered_closes: int  # the feeder's closes waiting for Redis
    connected: bool

    @property
    def l1_hit_rate(self) -> float | None:
        return hit_rate(self.l1_hits, self.l1_misses)

    @property
    def l2_hit_rate(self) -> float | None:
        return hit_rate(self.l2_hits, self.l2_misses)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: bytes | str, *, key: str) -> Heartbeat:
        """The heartbeat stored under `key`; ValueError naming the key when it is not one."""
        try:
            record = json.loads(data)
            return cls(**{field.name: record[field.name] for field in dataclasses.fields(cls)})
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"redis key {key} is not a heartbeat ({type(error).__name__}: {error})") from None


def hit_rate(hits: int, misses: int) -> float | None:
    """hits / lookups, or None before the first lookup."""
    return hits / (hits + misses) if hits + misses else None


def _identity() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "sent_at": time.time()}


def _memory_figures(memory: MemoryManager | None) -> dict[str, Any]:
    reading = memory.last_reading if memory is not None else None
    return {
        "rss_bytes": reading.rss_bytes if reading is not None else None,
        "pressure_level": memory.policy.level.name if memory is not None else "unmanaged",
        "cache_bytes": memory.cache_bytes if memory is not None else 0,
    }


def worker_heartbeat(bot: TradingBot) -> Heartbeat:
    """A worker bot's heartbeat: its status line's figures, its L1 (df_cache) and L2 (its RedisMarket) counters."""
    market = bot.market.stats()
    cache = bot.ctx.get_managed_cache("df_cache")
    l1 = cache.stats() if cache is not None else {"hits": 0, "misses": 0}
    status = bot.last_status
    shard = getattr(bot.market, "shard", None)
    return Heartbeat(
        name=f"worker {shard.name}" if shard is not None else "worker",
        role="worker",
        **_identity(),
        cycle=bot.cycle,
        **_memory_figures(bot.memory),
        l1_hits=l1["hits"],
        l1_misses=l1["misses"],
        l2_hits=market.get("l2_hits", 0),
        l2_misses=market.get("l2_misses", 0),
        stale_series=status.stale_series if status is not None else 0,
        open_positions=len(bot.broker.positions),
        equity=status.equity if status is not None else None,
        exchange_requests=market.get("rest_calls", 0),
        buffered_closes=0,
        connected=bool(market.get("connected", True)),
    )


def feeder_heartbeat(feeder: Feeder, memory: MemoryManager | None) -> Heartbeat:
    """The feeder's heartbeat: its exchange requests, the windows it holds (its L1) and closes waiting for Redis."""
    return Heartbeat(
        name="feeder",
        role="feeder",
        **_identity(),
        cycle=feeder.cycle,
        **_memory_figures(memory),
        l1_hits=0,
        l1_misses=0,
        l2_hits=0,
        l2_misses=0,
        stale_series=feeder.stale_series,
        open_positions=0,
        equity=None,
        exchange_requests=feeder.requests,
        buffered_closes=feeder.buffered_closes,
        connected=feeder.link.connected,
    )


async def publish_heartbeat(link: RedisLink, keys: FleetKeys, heartbeat: Heartbeat, ttl_seconds: int) -> bool:
    """Write `heartbeat` under its key for `ttl_seconds`; False (logged at debug) when Redis cannot take it."""
    key = keys.heartbeat(heartbeat.name)
    try:
        await link.call(lambda client: client.set(key, heartbeat.to_json(), ex=ttl_seconds), what=f"SET {key}")
    except MarketDataError as error:
        logger.debug("heartbeat not sent: %s", error)
        return False
    return True
