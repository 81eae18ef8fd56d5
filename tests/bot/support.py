"""Helpers shared by the strategy tests."""

from __future__ import annotations

import dataclasses

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
