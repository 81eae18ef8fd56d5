"""Trading state records: an open `Position`, a closed `Trade`, and the `Fill` a strategy is told about.

Covers: the fields the broker, exit rules and journal share, and the valuation rule used for
equity. Does not cover: opening or closing (see `broker`), persistence (see `journal`).

Valuation is symmetric for both sides: opening locks quantity * entry_price of cash (for a
short, as collateral), and the position is worth that amount plus its unrealised PnL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from crypto_bot.strategy.signals import SIDES, Side


@dataclass(slots=True)
class Position:
    """An open position; prices in quote currency, times in epoch milliseconds.

    highest_price / lowest_price are the extremes seen since entry: the trailing-stop anchor.
    fees_paid is the opening fee, already deducted from cash.
    """

    id: str
    symbol: str
    side: Side
    quantity: float
    entry_price: float
    opened_at_ms: int
    stop_price: float
    take_profit_price: float | None
    trailing_stop_ratio: float | None
    highest_price: float
    lowest_price: float
    fees_paid: float

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {self.side!r}")
        if not math.isfinite(self.quantity) or self.quantity <= 0.0:
            raise ValueError(f"quantity must be a finite number > 0, got {self.quantity!r}")
        if not math.isfinite(self.entry_price) or self.entry_price <= 0.0:
            raise ValueError(f"entry_price must be a finite number > 0, got {self.entry_price!r}")
        if self.trailing_stop_ratio is not None and not 0.0 < self.trailing_stop_ratio < 1.0:
            raise ValueError(f"trailing_stop_ratio must be in (0, 1) or None, got {self.trailing_stop_ratio!r}")

    @property
    def direction(self) -> int:
        """+1 for long, -1 for short: the sign of PnL per unit of price rise."""
        return 1 if self.side == "long" else -1

    def unrealized_pnl(self, price: float) -> float:
        """Gross PnL if closed at price, before the closing fee."""
        return self.direction * self.quantity * (price - self.entry_price)

    def value_at(self, price: float) -> float:
        """Cash the position would return at price before the closing fee."""
        return self.quantity * self.entry_price + self.unrealized_pnl(price)


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed position; pnl is net of the opening and closing fees, fees is their sum."""

    position_id: str
    symbol: str
    side: Side
    quantity: float
    entry_price: float
    exit_price: float
    opened_at_ms: int
    closed_at_ms: int
    pnl: float
    fees: float
    exit_reason: str


@dataclass(frozen=True, slots=True)
class Fill:
    """One paper fill as a strategy plugin's `on_fill` hook receives it: an entry or an exit of a position.

    price is the fill price (slippage included); fees are those paid on the position so far (the opening
    fee at "open", both fees at "close"); pnl (net of fees) and reason ("stop_loss", ...) only at "close".
    """

    action: Literal["open", "close"]
    position_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    at_ms: int
    fees: float
    pnl: float | None = None
    reason: str | None = None

    @classmethod
    def opening(cls, position: Position) -> Fill:
        return cls(
            "open", position.id, position.symbol, position.side, position.quantity, position.entry_price,
            position.opened_at_ms, position.fees_paid,
        )

    @classmethod
    def closing(cls, trade: Trade) -> Fill:
        return cls(
            "close", trade.position_id, trade.symbol, trade.side, trade.quantity, trade.exit_price,
            trade.closed_at_ms, trade.fees, trade.pnl, trade.exit_reason,
        )
