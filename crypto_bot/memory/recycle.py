"""When a bot process should hand over to a fresh one: the pure recycle policy (issue 12, section 3).

Covers: the decision, from figures the memory manager already publishes (the pressure level after
its tiers ran, usage, limit, the leak detector's slope), and the reason text naming those figures.
The `recycle:` config section lives here too, so the supervisor reads it without the trading stack.
Not covered: reading memory (probe.py, manager.py), exiting and restarting (crypto_bot/supervisor.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .config import ConfigSection, setting

_MIB = 1024 * 1024

__all__ = ["RecycleConfig", "RecycleDecision", "RecyclePolicy", "minutes_to_limit"]


@dataclass(frozen=True)
class RecycleConfig(ConfigSection):
    """The `recycle:` section: `crypto-bot run` supervises a child bot and restarts it at a safe point."""

    key_prefix: ClassVar[str] = "recycle."

    enabled: bool = setting(True, "run the bot in a supervised child that is recycled before memory runs out", bool)
    pressure_passes: int = setting(3, "recycle after this many consecutive cycles still at PRESSURE", int, minimum=1)
    horizon_minutes: float = setting(
        30.0, "recycle when the leak trend reaches the limit within this many minutes", float, minimum=0
    )
    max_recycles: int = setting(5, "recycles allowed within window_minutes before the supervisor gives up", int, minimum=1)
    window_minutes: float = setting(60.0, "the crash-loop window for max_recycles", float, minimum=0, minimum_open=True)



def minutes_to_limit(used_bytes: int, limit_bytes: int | None, slope_bytes_per_hour: float | None) -> float | None:
    """Minutes until usage growing at the slope reaches the limit; None when it never does."""
    if limit_bytes is None or slope_bytes_per_hour is None or slope_bytes_per_hour <= 0:
        return None
    headroom_bytes = limit_bytes - used_bytes
    if headroom_bytes <= 0:
        return 0.0
    return headroom_bytes / slope_bytes_per_hour * 60.0


@dataclass(frozen=True)
class RecycleDecision:
    """Whether to recycle, and why (the figures in words)."""

    recycle: bool
    reason: str = ""


class RecyclePolicy:
    """Recycle after `pressure_passes` consecutive passes still at PRESSURE, or a forecast within the horizon."""

    pressure_passes: int
    horizon_minutes: float
    _passes_at_pressure: int

    @classmethod
    def from_config(cls, config: RecycleConfig) -> RecyclePolicy:
        return cls(config.pressure_passes, config.horizon_minutes)

    def __init__(self, pressure_passes: int = 3, horizon_minutes: float = 30.0) -> None:
        self.pressure_passes = pressure_passes
        self.horizon_minutes = horizon_minutes
        self._passes_at_pressure = 0

    def observe(
        self, at_pressure: bool, used_bytes: int, limit_bytes: int | None, slope_bytes_per_hour: float | None
    ) -> RecycleDecision:
        """One observation after a maintenance pass (or cycle); the decision it leads to."""
        self._passes_at_pressure = self._passes_at_pressure + 1 if at_pressure else 0
        figures = f"usage {used_bytes / _MIB:.1f} MiB" + (
            f", limit {limit_bytes / _MIB:.1f} MiB" if limit_bytes is not None else ""
        )
        if self._passes_at_pressure >= self.pressure_passes:
            return RecycleDecision(
                True, f"still at PRESSURE after the tiers ran for {self._passes_at_pressure} passes: {figures}"
            )
        forecast = minutes_to_limit(used_bytes, limit_bytes, slope_bytes_per_hour)
        if forecast is not None and forecast <= self.horizon_minutes:
            slope_mib = (slope_bytes_per_hour or 0.0) / _MIB
            return RecycleDecision(
                True,
                f"leak trend reaches the limit in {forecast:.1f} min (horizon {self.horizon_minutes:g} min): "
                f"{figures}, slope {slope_mib:.1f} MiB/h",
            )
        return RecycleDecision(False)
