"""Risk policy: position sizing, entry gating and stop / take-profit placement.

Covers: `RiskConfig` (the `risk:` section, validated once at construction) and
`RiskManager`, pure arithmetic over equity, prices and ATR with no I/O.
Does not cover: when a stop is hit (see `exits`) or moving cash (see `broker`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from crypto_bot.execution.position import Position
from crypto_bot.memory import validation
from crypto_bot.memory.config import ConfigSection, setting
from crypto_bot.strategy.signals import SIDES, Side


def _ratio(default: float | None, meaning: str, maximum: float, **limits: object) -> float:
    return setting(default, meaning, float, minimum=0, minimum_open=True, maximum=maximum, **limits)


@dataclass(frozen=True)
class RiskConfig(ConfigSection):
    """Risk limits as fractions of equity (or ATR multiples); trailing_stop_ratio=None disables trailing.

    cash_reserve_ratio is the share of free cash never committed, so fees and slippage on the
    fill cannot make an order exceed the cash it was sized from.
    """

    key_prefix: ClassVar[str] = "risk."

    risk_per_trade_ratio: float = _ratio(0.01, "share of equity lost if a trade hits its ATR stop", 0.1)
    max_open_positions: int = setting(5, "positions open at once", int, minimum=1, maximum=1000)
    max_position_ratio: float = _ratio(0.25, "largest position, as a share of equity", 1)
    max_drawdown_ratio: float = _ratio(
        0.2, "drawdown from the equity peak that halts new entries", 1, maximum_open=True
    )
    # Below a tenth of an ATR a stop is inside the noise of one candle (and a tiny multiple underflows the sizing).
    stop_atr_multiple: float = setting(2.0, "stop loss distance in ATRs", float, minimum=0.1, maximum=20)
    take_profit_atr_multiple: float = setting(3.0, "take profit distance in ATRs", float, minimum=0.1, maximum=50)
    trailing_stop_ratio: float | None = _ratio(
        0.02, "trailing stop distance from the best price; null: off", 0.5, optional=True
    )
    cash_reserve_ratio: float = setting(
        0.01, "share of free cash never committed", float, minimum=0, maximum=0.5, maximum_open=True
    )


class EntryDecision(NamedTuple):
    """Whether a new entry is allowed, and why (or why not) in words for the log."""

    allowed: bool
    reason: str


class RiskManager:
    """Applies one RiskConfig; stateless apart from it, so safe to share between threads."""

    config: RiskConfig

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config or RiskConfig()

    def position_size(self, equity: float, price: float, atr: float, *, cash: float | None = None) -> float:
        """Quantity risking risk_per_trade_ratio of equity at the ATR stop, within the caps.

        quantity = equity * risk_per_trade_ratio / (atr * stop_atr_multiple), capped so the
        notional stays within max_position_ratio of equity and within the free cash (default:
        equity) less cash_reserve_ratio. No equity or no cash gives 0.
        """
        validation.positive("price", price)
        validation.positive("atr", atr)
        validation.number("equity", equity)
        available_cash = equity if cash is None else validation.number("cash", cash)
        if equity <= 0.0 or available_cash <= 0.0:
            return 0.0
        config = self.config
        risk_quantity = equity * config.risk_per_trade_ratio / (atr * config.stop_atr_multiple)
        position_cap = equity * config.max_position_ratio / price
        cash_cap = available_cash * (1.0 - config.cash_reserve_ratio) / price
        return min(risk_quantity, position_cap, cash_cap)

    def check_entry(
        self, open_positions: Collection[Position], equity: float, peak_equity: float, symbol: str
    ) -> EntryDecision:
        """Allow a new entry unless the drawdown halt, the position limit or an open position in symbol forbids it."""
        validation.positive("peak_equity", peak_equity)
        validation.number("equity", equity)
        drawdown_ratio = max(0.0, 1.0 - equity / peak_equity)
        if drawdown_ratio >= self.config.max_drawdown_ratio:
            return EntryDecision(
                False,
                f"drawdown {drawdown_ratio:.1%} reached the {self.config.max_drawdown_ratio:.1%} limit: "
                "new entries halted",
            )
        if len(open_positions) >= self.config.max_open_positions:
            return EntryDecision(
                False, f"max open positions reached ({len(open_positions)}/{self.config.max_open_positions})"
            )
        if any(position.symbol == symbol for position in open_positions):
            return EntryDecision(False, f"a position in {symbol} is already open")
        return EntryDecision(True, "entry allowed")

    def stop_and_target(self, side: Side, price: float, atr: float) -> tuple[float, float]:
        """(stop_price, take_profit_price) at the configured ATR multiples on the losing / winning side."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        validation.positive("price", price)
        validation.positive("atr", atr)
        direction = 1.0 if side == "long" else -1.0
        stop_price = price - direction * atr * self.config.stop_atr_multiple
        take_profit_price = price + direction * atr * self.config.take_profit_atr_multiple
        if stop_price <= 0.0 or take_profit_price <= 0.0:
            raise ValueError(
                f"ATR {atr} is too large for price {price}: stop {stop_price} / target {take_profit_price} "
                "would not be positive"
            )
        return stop_price, take_profit_price
