"""When a bot process should hand over to a fresh one: the pure recycle policy (issue 12, section 3).

Covers: the decision, from figures the memory manager already publishes (the pressure level after
its tiers ran, the limiting usage and its limit, the confirmed leak's slope of unmanaged memory),
and the reason text naming those figures.
The `recycle:` config section lives here too, so the supervisor reads it without the trading stack.
Not covered: reading memory (probe.py, manager.py), exiting and restarting (crypto_bot/supervisor.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from .config import ConfigSection, setting
from .pressure import PressureLevel

if TYPE_CHECKING:
    from .manager import MemoryManager

_MIB = 1024 * 1024

__all__ = ["RecycleConfig", "RecycleDecision", "RecyclePolicy", "minutes_to_limit"]


@dataclass(frozen=True)
class RecycleConfig(ConfigSection):
    """The `recycle:` section: `crypto-bot run` supervises a child bot and restarts it at a safe point."""

    key_prefix: ClassVar[str] = "recycle."

    enabled: bool = setting(True, "hand over to a fresh bot process at a cycle's end before memory runs out", bool)
    supervise: bool = setting(
        True,
        "run the bot in a child of a small supervisor that starts the fresh process; false: run in this process "
        "and exit with code 75 for systemd or Kubernetes to restart",
        bool,
    )
    pressure_passes: int = setting(3, "recycle after this many consecutive cycles still at PRESSURE", int, minimum=1)
    horizon_minutes: float = setting(
        30.0, "recycle when a confirmed leak's trend reaches the limit within this many minutes", float, minimum=0
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
    """Recycle after `pressure_passes` consecutive passes still at PRESSURE, or a forecast within the horizon.

    Only when a fresh process would do better: one already at PRESSURE (or at the limit) on its first
    observation would start there again, so recycling it would only loop; the decision then says so once.
    """

    pressure_passes: int
    horizon_minutes: float
    _passes_at_pressure: int
    _started: bool  # the process's first observation was seen
    _futile: bool

    @classmethod
    def from_config(cls, config: RecycleConfig) -> RecyclePolicy:
        return cls(config.pressure_passes, config.horizon_minutes)

    def __init__(self, pressure_passes: int = 3, horizon_minutes: float = 30.0) -> None:
        self.pressure_passes = pressure_passes
        self.horizon_minutes = horizon_minutes
        self._passes_at_pressure = 0
        self._started = False
        self._futile = False

    def observe(
        self, at_pressure: bool, used_bytes: int, limit_bytes: int | None, slope_bytes_per_hour: float | None
    ) -> RecycleDecision:
        """One observation after a maintenance pass (or cycle); the decision it leads to."""
        first, self._started = not self._started, True
        self._passes_at_pressure = self._passes_at_pressure + 1 if at_pressure else 0
        figures = f"usage {used_bytes / _MIB:.1f} MiB" + (
            f", limit {limit_bytes / _MIB:.1f} MiB" if limit_bytes is not None else ""
        )
        if self._futile:
            return RecycleDecision(False)
        if first and (at_pressure or (limit_bytes is not None and used_bytes >= limit_bytes)):
            self._futile = True
            return RecycleDecision(
                False, f"no recycle: a fresh process is at PRESSURE from its first cycle ({figures}); raise the limit"
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

    def observe_manager(self, manager: MemoryManager) -> RecycleDecision:
        """One observation of the manager's figures at a cycle's end: its level (after the tiers it ran), the
        limiting usage against its limit, and the slope of unmanaged memory once a leak is confirmed."""
        reading = manager.level_reading or manager.last_reading
        limiting = None if reading is None else reading.limiting
        leak = manager.leaks.report()
        slope_bytes_per_hour = leak.slope_bytes_per_unit if leak.suspected and leak.unit == "hour" else None
        return self.observe(
            manager.policy.level >= PressureLevel.PRESSURE,
            (limiting.used_bytes if limiting is not None else None) or 0,
            None if limiting is None else limiting.limit_bytes,
            slope_bytes_per_hour,
        )
