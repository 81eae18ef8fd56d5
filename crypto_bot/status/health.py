"""Health: whether the bot is alive and well enough to keep running, and if not, why.

Pure logic over figures the caller reads (no clock, no I/O), so the rules are tested without a bot.
The bot is unhealthy when its loop stalled (no cycle ended within `stall_intervals` cycle periods,
a period being the pause between cycles plus the longest recent cycle), when memory is CRITICAL,
or when the exchange is down (the market source paused its requests after failures).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Shorter periods than this are timing noise: a bot pausing 0 s between 10 ms cycles is not stalled after 30 ms.
MIN_PERIOD_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    reasons: tuple[str, ...] = ()
    details: dict[str, object] = field(default_factory=dict)

    @property
    def status_code(self) -> int:
        return 200 if self.healthy else 503

    def to_dict(self) -> dict[str, object]:
        return {"status": "ok" if self.healthy else "unhealthy", "reasons": list(self.reasons), **self.details}


def assess_health(
    *,
    seconds_since_cycle: float | None,
    interval_seconds: float,
    longest_cycle_seconds: float,
    stall_intervals: float,
    pressure_level: str,
    exchange_down: str | None,
) -> Health:
    """The verdict; `seconds_since_cycle` is None before the first cycle ended, `exchange_down` the reason
    the market source gave for pausing (None while it is not paused)."""
    period = max(interval_seconds + longest_cycle_seconds, MIN_PERIOD_SECONDS)
    allowed = stall_intervals * period
    reasons = []
    if seconds_since_cycle is None:
        reasons.append("starting: no cycle has ended yet")
    elif seconds_since_cycle > allowed:
        reasons.append(
            f"stalled: the last cycle ended {seconds_since_cycle:.0f} s ago, more than {stall_intervals:g} cycle "
            f"periods of {period:.1f} s (server.stall_intervals)"
        )
    if pressure_level == "CRITICAL":
        reasons.append("memory CRITICAL: caches cleared and models unloaded, the limit is near")
    if exchange_down is not None:
        reasons.append(f"exchange down: {exchange_down}")
    details = {
        "seconds_since_cycle": None if seconds_since_cycle is None else round(seconds_since_cycle, 3),
        "stall_after_seconds": round(allowed, 3),
        "pressure_level": pressure_level,
    }
    return Health(not reasons, tuple(reasons), details)
