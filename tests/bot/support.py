"""Helpers shared by the bot tests: a calm indicator snapshot, a bot driven cycle by cycle."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from crypto_bot.bot import TradingBot
from crypto_bot.settings import Settings
from crypto_bot.strategy import IndicatorSnapshot

CALM = IndicatorSnapshot(
    close=100.0,
    ema_fast=100.0,
    ema_slow=100.0,
    rsi=50.0,
    atr=1.0,
    adx=15.0,
    bb_width=0.04,
    log_return_1=0.0,
    log_return_5=0.0,
    volatility=0.01,
)


def snapshot(**overrides: float) -> IndicatorSnapshot:
    """A calm, trendless snapshot (RSI 50, ADX 15) with the given fields changed."""
    return dataclasses.replace(CALM, **overrides)


class Session:
    """A TradingBot driven on one event loop, cycle by cycle (the `start` fixture builds and closes them)."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.bot = TradingBot(settings, **options)
        self.loop.run_until_complete(self.bot.prepare_model())

    def cycle(self) -> dict[str, float]:
        return self.loop.run_until_complete(self.bot.run_cycle())

    def until_a_position_opens(self, max_cycles: int = 10) -> None:
        for _ in range(max_cycles):
            self.cycle()
            if self.bot.broker.positions:
                return
        pytest.fail(f"no position opened in {max_cycles} cycles")

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.run_until_complete(self.bot.close())
        self.loop.close()
