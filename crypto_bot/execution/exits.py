"""Exit rules for an open position against one candle: stop loss, take profit, trailing stop.

Covers: `check_exit`, which ratchets the trailing anchor and decides whether and at what price
a position exits. Does not cover: closing the position, fees and slippage (see `broker`), or
where stops are placed (see `risk`).

Intra-candle order is unknown from OHLC alone, so the rule fixes two assumptions:
- the trailing anchor moves to the candle's high (long) / low (short) before the stops are
  tested, i.e. the favourable extreme is assumed to come first;
- when both the stop and the take-profit lie inside one candle, the stop is assumed to hit
  first: the conservative choice, it never books a profit the market may not have given.
An order level the candle gapped past fills at the nearest price the candle traded (its high
or low), never at a level that did not trade.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from crypto_bot.execution.position import Position


class ExitReason(enum.StrEnum):
    """Why check_exit closes a position; stored as the trade's exit_reason."""

    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"


@dataclass(frozen=True, slots=True)
class ExitDecision:
    """Close the position at price (before slippage) for reason."""

    reason: ExitReason
    price: float


def _validate_candle(high: float, low: float, close: float) -> None:
    if not all(math.isfinite(value) and value > 0.0 for value in (high, low, close)):
        raise ValueError(f"candle prices must be finite and > 0, got high={high}, low={low}, close={close}")
    if not low <= close <= high:
        raise ValueError(f"candle must satisfy low <= close <= high, got high={high}, low={low}, close={close}")


def check_exit(position: Position, high: float, low: float, close: float) -> ExitDecision | None:
    """Update the position's trailing anchor with this candle, then return the exit it triggers, if any."""
    _validate_candle(high, low, close)
    position.highest_price = max(position.highest_price, high)
    position.lowest_price = min(position.lowest_price, low)
    direction = position.direction
    adverse_price, favourable_price = (low, high) if direction > 0 else (high, low)

    stop_level, stop_reason = position.stop_price, ExitReason.STOP_LOSS
    if position.trailing_stop_ratio is not None:
        anchor = position.highest_price if direction > 0 else position.lowest_price
        trailing_level = anchor * (1.0 - direction * position.trailing_stop_ratio)
        if direction * (trailing_level - stop_level) > 0.0:
            stop_level, stop_reason = trailing_level, ExitReason.TRAILING_STOP
    if direction * (adverse_price - stop_level) <= 0.0:
        return ExitDecision(stop_reason, min(max(stop_level, low), high))

    target = position.take_profit_price
    if target is not None and direction * (favourable_price - target) >= 0.0:
        return ExitDecision(ExitReason.TAKE_PROFIT, min(max(target, low), high))
    return None
