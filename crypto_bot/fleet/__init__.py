"""The fleet: one feeder fetches candles once for many worker bots, through a bounded tier on Redis.

Tiers: L1 is each process's managed cache (a worker's `df_cache`, bounded as in one bot) -> L2 is
Redis, shared, bounded by its own `maxmemory` and eviction policy, every key with a TTL -> the
exchange, reached by the feeder alone (`crypto-bot feed`). Workers (`crypto-bot run` with
`market.source: redis`, `--shard i/N`) read windows from Redis, wait on the feeder's closes, analyse
their shard and keep their own journals; everyone sends heartbeats that `crypto-bot status --fleet`
shows. See README "Fleet" for the two commands and the measurements.

Modules: `codec` (windows as bytes), `keys` (key names), `shards` (who analyses what), `link` (the
connection and its back-off), `clock` (a worker's market clock), `redis_market` (a worker's source),
`feeder`, `worker` (between a worker's cycles), `heartbeat`, `status`. redis-py is imported by
`link` only, so importing this package without the `fleet` extra works until a connection is made.
"""

from crypto_bot.fleet.clock import FeedClock
from crypto_bot.fleet.codec import decode_window, encode_window
from crypto_bot.fleet.feeder import Close, Feeder, feed, upstream_settings
from crypto_bot.fleet.heartbeat import Heartbeat, feeder_heartbeat, publish_heartbeat, worker_heartbeat
from crypto_bot.fleet.keys import FleetKeys
from crypto_bot.fleet.link import RedisLink, sync_client
from crypto_bot.fleet.redis_market import RedisMarket
from crypto_bot.fleet.shards import Shard, shard_of, worker_settings
from crypto_bot.fleet.status import FleetView, fleet_lines, read_fleet
from crypto_bot.fleet.worker import between_cycles

__all__ = [
    "Close",
    "FeedClock",
    "Feeder",
    "FleetKeys",
    "FleetView",
    "Heartbeat",
    "RedisLink",
    "RedisMarket",
    "Shard",
    "between_cycles",
    "decode_window",
    "encode_window",
    "feed",
    "feeder_heartbeat",
    "fleet_lines",
    "publish_heartbeat",
    "read_fleet",
    "shard_of",
    "sync_client",
    "upstream_settings",
    "worker_heartbeat",
    "worker_settings",
]
