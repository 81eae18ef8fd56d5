"""Entry signals: the rule that turns model probability, regime and RSI into a scored `Signal`.

Covers: the `Signal` record handed to execution and `score_signal`, the one place the entry
rule lives.
Does not cover: sizing, stops and whether an entry is allowed right now (see
`crypto_bot.execution.risk`), or placing the order (see `crypto_bot.execution.broker`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crypto_bot.memory import validation
from crypto_bot.strategy.indicators import IndicatorSnapshot
from crypto_bot.strategy.regime import Regime

Side = Literal["long", "short"]
SIDES: tuple[Side, ...] = ("long", "short")

MODEL_WEIGHT = 0.5
TREND_WEIGHT = 0.3
RSI_WEIGHT = 0.2
RSI_OVERSOLD = 30.0
RSI_OVERBOUGHT = 70.0

_LONG_TREND_ALIGNMENT = {
    Regime.TRENDING_UP: 1.0,
    Regime.RANGING: 0.5,
    Regime.TRENDING_DOWN: 0.0,
}


@dataclass(frozen=True, slots=True)
class Signal:
    """A scored entry idea for one symbol at the latest close; atr is in price units."""

    symbol: str
    side: Side
    score: float
    price: float
    atr: float
    regime: Regime

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {self.side!r}")
        validation.number("score", self.score, minimum=0, maximum=1)
        validation.positive("price", self.price)
        validation.number("atr", self.atr, minimum=0)


def _long_rsi_component(rsi_value: float) -> float:
    """1 when oversold (RSI <= 30), 0 when overbought (RSI >= 70), linear in between."""
    span = RSI_OVERBOUGHT - RSI_OVERSOLD
    return min(1.0, max(0.0, (RSI_OVERBOUGHT - rsi_value) / span))


def score_signal(
    symbol: str,
    snapshot: IndicatorSnapshot,
    regime: Regime,
    up_probability: float,
    *,
    min_score: float = 0.6,
    allow_short: bool = True,
) -> Signal | None:
    """Score both sides and return the one reaching min_score, or None.

    long score  = 0.5 * P(up) + 0.3 * trend + 0.2 * rsi, where trend is 1 in TRENDING_UP,
    0.5 in RANGING, 0 in TRENDING_DOWN, and rsi is 1 at RSI <= 30 (oversold), 0 at RSI >= 70,
    linear in between. The short score mirrors every term, so long + short = 1 and, with
    min_score > 0.5, at most one side qualifies. A VOLATILE regime suppresses entries on both
    sides. With allow_short=False (spot accounts) only longs are returned.
    """
    validation.number("min_score", min_score, minimum=0.5, minimum_open=True, maximum=1)
    validation.number("up_probability", up_probability, minimum=0, maximum=1)
    if regime is Regime.VOLATILE:
        return None
    long_score = (
        MODEL_WEIGHT * up_probability
        + TREND_WEIGHT * _LONG_TREND_ALIGNMENT[regime]
        + RSI_WEIGHT * _long_rsi_component(snapshot.rsi)
    )
    short_score = 1.0 - long_score
    if long_score >= min_score:
        side: Side = "long"
        score = long_score
    elif allow_short and short_score >= min_score:
        side = "short"
        score = short_score
    else:
        return None
    return Signal(symbol=symbol, side=side, score=score, price=snapshot.close, atr=snapshot.atr, regime=regime)
