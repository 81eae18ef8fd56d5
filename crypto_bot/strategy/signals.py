"""Entry signals: a strategy's score in [-1, 1] becomes a `Signal` for execution; the built-in scoring rule.

Covers: the `Signal` record handed to execution, `entry_signal` (the one place a score meets
`strategy.min_score`), and `builtin_score`, the built-in strategy's rule (model probability, regime
and RSI) written as a plugin score.
Does not cover: sizing, stops and whether an entry is allowed right now (see
`crypto_bot.execution.risk`), placing the order (see `crypto_bot.execution.broker`), or calling a
strategy plugin (see `plugin_host`).

How `min_score` meets a score s in [-1, 1]: s > 0 asks for a long, s < 0 for a short, and the
side's score is (1 + |s|) / 2, in [0.5, 1]: the probability-like scale `min_score` has always
been on. A signal enters when that reaches `min_score`, that is when |s| >= 2 * min_score - 1
(the default 0.55 admits |s| >= 0.1; 1.0 only |s| = 1). The built-in rule returns s = 2 * long
score - 1, so its side's score is exactly the long or short score it compared with `min_score`
before it became a plugin: the same entries, the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from crypto_bot.memory import validation
from crypto_bot.strategy.regime import Regime

if TYPE_CHECKING:  # the indicators import pandas; scoring reads only the snapshot's numbers
    from crypto_bot.strategy.indicators import IndicatorSnapshot

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
    """An entry to try for one symbol at the latest close: its side's score in [0, 1]; atr is in price units."""

    symbol: str
    side: Side
    score: float
    price: float
    atr: float

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {self.side!r}")
        validation.number("score", self.score, minimum=0, maximum=1)
        validation.positive("price", self.price)
        validation.number("atr", self.atr, minimum=0)


def entry_signal(
    symbol: str, score: float, *, price: float, atr: float, min_score: float, allow_short: bool = True
) -> Signal | None:
    """The entry a strategy's score asks for, or None: 0, a side's score below min_score, or a short when
    allow_short is False (spot accounts).

    The side's score is (1 + |score|) / 2, so |score| >= 2 * min_score - 1 enters (see the module docstring).
    """
    validation.number("min_score", min_score, minimum=0.5, minimum_open=True, maximum=1)
    validation.number("score", score, minimum=-1, maximum=1)
    if score == 0 or (score < 0 and not allow_short):
        return None
    side_score = (1.0 + abs(score)) / 2.0
    if side_score < min_score:
        return None
    return Signal(symbol=symbol, side="long" if score > 0 else "short", score=side_score, price=price, atr=atr)


def _long_rsi_component(rsi_value: float) -> float:
    """1 when oversold (RSI <= 30), 0 when overbought (RSI >= 70), linear in between."""
    span = RSI_OVERBOUGHT - RSI_OVERSOLD
    return min(1.0, max(0.0, (RSI_OVERBOUGHT - rsi_value) / span))


def builtin_score(snapshot: IndicatorSnapshot, regime: Regime, up_probability: float) -> float | None:
    """The built-in rule as a plugin score: 2 * long score - 1 in [-1, 1], or None in a VOLATILE regime.

    long score = 0.5 * P(up) + 0.3 * trend + 0.2 * rsi, where trend is 1 in TRENDING_UP, 0.5 in
    RANGING, 0 in TRENDING_DOWN, and rsi is 1 at RSI <= 30 (oversold), 0 at RSI >= 70, linear in
    between. Every term mirrors for the short side (short score = 1 - long score), so the sign picks
    the side and (1 + |score|) / 2 is that side's score. A VOLATILE regime suppresses both sides.
    """
    validation.number("up_probability", up_probability, minimum=0, maximum=1)
    if regime is Regime.VOLATILE:
        return None
    long_score = (
        MODEL_WEIGHT * up_probability
        + TREND_WEIGHT * _LONG_TREND_ALIGNMENT[regime]
        + RSI_WEIGHT * _long_rsi_component(snapshot.rsi)
    )
    return min(1.0, max(-1.0, 2.0 * long_score - 1.0))
