"""Market regime classification from one `IndicatorSnapshot`.

Covers: the `Regime` enum and the rule that maps ADX (trend strength), EMA order (direction),
and ATR% / Bollinger width (volatility) to a regime.
Does not cover: computing the indicators (see `indicators`) or acting on the regime
(see `signals`, which suppresses entries in VOLATILE markets).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from crypto_bot.memory import validation

if TYPE_CHECKING:  # the indicators import pandas; scoring reads only the snapshot's numbers
    from crypto_bot.strategy.indicators import IndicatorSnapshot


class Regime(enum.StrEnum):
    """What the market is doing at the latest candle."""

    TRENDING_UP = "trending_up"
    TRENDING_DOWN = "trending_down"
    RANGING = "ranging"
    VOLATILE = "volatile"


def classify_regime(
    snapshot: IndicatorSnapshot,
    *,
    trend_adx_min: float = 25.0,
    volatile_atr_ratio_min: float = 0.03,
    volatile_bb_width_min: float = 0.15,
) -> Regime:
    """VOLATILE if ATR% or band width reach their limits, else a trend if ADX does, else RANGING.

    Volatility is tested first because a trend through wild swings is no safer to enter. The
    defaults suit hourly candles on major pairs (ATR near 1% of price, bands 2-6% wide); daily
    candles need larger volatility limits. A strong ADX with equal EMAs has no direction and
    counts as RANGING.
    """
    validation.positive("trend_adx_min", trend_adx_min)
    validation.positive("volatile_atr_ratio_min", volatile_atr_ratio_min)
    validation.positive("volatile_bb_width_min", volatile_bb_width_min)
    if snapshot.atr_ratio >= volatile_atr_ratio_min or snapshot.bb_width >= volatile_bb_width_min:
        return Regime.VOLATILE
    if snapshot.adx >= trend_adx_min:
        if snapshot.ema_fast > snapshot.ema_slow:
            return Regime.TRENDING_UP
        if snapshot.ema_fast < snapshot.ema_slow:
            return Regime.TRENDING_DOWN
    return Regime.RANGING
