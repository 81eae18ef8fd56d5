"""The names of the fleet's Redis keys, all under `market.redis.key_prefix` (several fleets can share a server).

| key | type | written by | holds |
|---|---|---|---|
| `<prefix>candles:<timeframe>:<symbol>` | string, TTL | feeder | the newest window (`codec`) |
| `<prefix>closes` | stream (capped), TTL | feeder | one entry per close: symbol, timeframe, open ms, clock |
| `<prefix>clock` | string, TTL | feeder | the feeder's market clock and its speed (JSON) |
| `<prefix>heartbeat:<name>` | string, TTL | feeder, workers | the latest heartbeat (JSON) |

No key holds or is named after a secret.
"""

from __future__ import annotations


class FleetKeys:
    """Key names under one prefix."""

    __slots__ = ("prefix",)

    prefix: str

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def window(self, symbol: str, timeframe: str) -> str:
        return f"{self.prefix}candles:{timeframe}:{symbol}"

    @property
    def closes(self) -> str:
        return f"{self.prefix}closes"

    @property
    def clock(self) -> str:
        return f"{self.prefix}clock"

    def heartbeat(self, name: str) -> str:
        return f"{self.prefix}heartbeat:{name}"

    @property
    def heartbeat_pattern(self) -> str:
        """The SCAN pattern of every heartbeat (glob characters in the prefix escaped)."""
        escaped = "".join(f"\\{character}" if character in "*?[]\\" else character for character in self.prefix)
        return f"{escaped}heartbeat:*"
