"""The built-in strategy plus a leak the bot cannot reclaim: a strategy plugin for the recycle tests.

It trades as the default bot does (fills, open positions) and keeps `leak_mib_per_cycle` MiB of
written bytes per cycle for good, the way a strategy that stores every frame does.
"""

from __future__ import annotations

from crypto_bot.strategy.builtin import BuiltinStrategy

_MIB = 1024 * 1024


class LeakingTrader(BuiltinStrategy):
    def __init__(self, leak_mib_per_cycle: float = 1.0) -> None:
        super().__init__()
        self._leak_bytes = int(leak_mib_per_cycle * _MIB)
        self._kept: list[bytes] = []

    def on_cycle_end(self) -> None:
        self._kept.append(b"\x01" * self._leak_bytes)  # written, so resident: RSS and the cgroup see it
