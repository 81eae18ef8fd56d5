"""`crypto-bot status --fleet`: every heartbeat in Redis, Redis's own memory, and the fleet's hit rates.

Covers `read_fleet` (one blocking client: SCAN of the heartbeat keys, MGET, INFO memory) into a
`FleetView`, and `fleet_lines`, its text. A status page shows the same view: `FleetView.to_dict()` is
its JSON (the hook for the HTTP status page; see README "Fleet"). A heartbeat that is not one is
reported by its key and skipped. Not covered: writing heartbeats (`heartbeat`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from crypto_bot.fleet.heartbeat import Heartbeat, hit_rate
from crypto_bot.fleet.keys import FleetKeys
from crypto_bot.fleet.link import describe, sync_client
from crypto_bot.market.config import RedisConfig
from crypto_bot.memory.units import MIB

SILENT_AFTER_SECONDS = 30.0
"""A heartbeat older than this is shown as silent (the process may be stuck or gone)."""


@dataclass(frozen=True, slots=True)
class FleetView:
    """What `status --fleet` shows: the heartbeats, problems reading them, and Redis's memory figures."""

    server: str
    heartbeats: tuple[Heartbeat, ...]
    problems: tuple[str, ...]
    used_memory_bytes: int
    maxmemory_bytes: int
    maxmemory_policy: str
    read_at: float

    def hit_rates(self) -> tuple[float | None, float | None]:
        """The fleet's L1 and L2 hit rates (the workers' counters summed)."""
        workers = [heartbeat for heartbeat in self.heartbeats if heartbeat.role == "worker"]
        return (
            hit_rate(sum(h.l1_hits for h in workers), sum(h.l1_misses for h in workers)),
            hit_rate(sum(h.l2_hits for h in workers), sum(h.l2_misses for h in workers)),
        )

    def to_dict(self) -> dict[str, Any]:
        l1, l2 = self.hit_rates()
        return {
            "server": self.server,
            "redis": {"used_memory_bytes": self.used_memory_bytes, "maxmemory_bytes": self.maxmemory_bytes,
                      "maxmemory_policy": self.maxmemory_policy},
            "l1_hit_rate": l1,
            "l2_hit_rate": l2,
            "processes": [
                {**dataclasses.asdict(h), "age_seconds": max(0.0, self.read_at - h.sent_at),
                 "l1_hit_rate": h.l1_hit_rate, "l2_hit_rate": h.l2_hit_rate}
                for h in self.heartbeats
            ],
            "problems": list(self.problems),
        }


def read_fleet(config: RedisConfig, *, client: Any = None) -> FleetView:
    """The fleet's heartbeats and Redis's memory figures; redis-py's ConnectionError when Redis cannot be reached."""
    client = client if client is not None else sync_client(config)
    keys = FleetKeys(config.key_prefix)
    names = sorted(key.decode() for key in client.scan_iter(match=keys.heartbeat_pattern, count=1000))
    heartbeats, problems = [], []
    for key, data in zip(names, client.mget(names) if names else [], strict=True):
        if data is None:  # expired between SCAN and MGET
            continue
        try:
            heartbeats.append(Heartbeat.from_json(data, key=key))
        except ValueError as error:
            problems.append(str(error))
    memory = client.info("memory")
    heartbeats.sort(key=lambda h: (h.role != "feeder", h.name))
    return FleetView(
        server=describe(config),
        heartbeats=tuple(heartbeats),
        problems=tuple(problems),
        used_memory_bytes=int(memory.get("used_memory", 0)),
        maxmemory_bytes=int(memory.get("maxmemory", 0)),
        maxmemory_policy=str(memory.get("maxmemory_policy", "unknown")),
        read_at=time.time(),
    )


def fleet_lines(view: FleetView) -> list[str]:
    """The view as the text `status --fleet` prints."""
    limit = "no maxmemory (unbounded)" if not view.maxmemory_bytes else f"maxmemory {view.maxmemory_bytes / MIB:.1f} MiB"
    l1, l2 = view.hit_rates()
    lines = [
        f"fleet on {view.server}",
        f"  redis memory    used {view.used_memory_bytes / MIB:.1f} MiB of {limit}, policy {view.maxmemory_policy}",
        f"  hit rates       L1 {_percent(l1)}, L2 {_percent(l2)} (workers' sums)",
        f"  processes       {len(view.heartbeats)}",
        f"    {'name':<14} {'pid':>7} {'age s':>6} {'cycle':>6} {'rss MiB':>8} {'pressure':<9} {'L1':>5} {'L2':>5} "
        f"{'stale':>5} {'open':>4} {'equity':>10} {'requests':>8} {'buffered':>8} redis",
    ]
    for h in view.heartbeats:
        age = max(0.0, view.read_at - h.sent_at)
        rss = "n/a" if h.rss_bytes is None else f"{h.rss_bytes / MIB:.0f}"
        equity = "" if h.equity is None else f"{h.equity:.2f}"
        silent = " SILENT" if age > SILENT_AFTER_SECONDS else ""
        lines.append(
            f"    {h.name:<14} {h.pid:>7} {age:>6.0f} {h.cycle:>6} {rss:>8} {h.pressure_level:<9} "
            f"{_percent(h.l1_hit_rate):>5} {_percent(h.l2_hit_rate):>5} {h.stale_series:>5} {h.open_positions:>4} "
            f"{equity:>10} {h.exchange_requests:>8} {h.buffered_closes:>8} {'up' if h.connected else 'DOWN'}{silent}"
        )
    lines.extend(f"  problem: {problem}" for problem in view.problems)
    return lines


def _percent(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.0%}"
