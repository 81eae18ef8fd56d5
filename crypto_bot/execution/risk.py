"""Risk policy: position sizing, entry gating and stop / take-profit placement.

Covers: `RiskConfig` (validated once, errors name the key and its allowed range) and
`RiskManager`, pure arithmetic over equity, prices and ATR with no I/O.
Does not cover: when a stop is hit (see `exits`) or moving cash (see `broker`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from typing import NamedTuple

from crypto_bot.execution.position import Position
from crypto_bot.strategy.signals import SIDES, Side

# key -> (low, high, low inclusive, high inclusive)
_ALLOWED_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "risk_per_trade_ratio": (0.0, 0.1, False, True),
    "max_open_positions": (1, 1000, True, True),
    "max_position_ratio": (0.0, 1.0, False, True),
    "max_drawdown_ratio": (0.0, 1.0, False, False),
    "stop_atr_multiple": (0.0, 20.0, False, True),
    "take_profit_atr_multiple": (0.0, 50.0, False, True),
    "trailing_stop_ratio": (0.0, 0.5, False, True),
    "cash_reserve_ratio": (0.0, 0.5, True, False),
}


def _describe_range(key: str) -> str:
    low, high, low_inclusive, high_inclusive = _ALLOWED_RANGES[key]
    return f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"


def _in_range(key: str, value: float) -> bool:
    low, high, low_inclusive, high_inclusive = _ALLOWED_RANGES[key]
    above_low = value >= low if low_inclusive else value > low
    below_high = value <= high if high_inclusive else value < high
    return above_low and below_high


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Risk limits as fractions of equity (or ATR multiples); trailing_stop_ratio=None disables trailing.

    cash_reserve_ratio is the share of free cash never committed, so fees and slippage on the
    fill cannot make an order exceed the cash it was sized from.
    """

    risk_per_trade_ratio: float = 0.01
    max_open_positions: int = 5
    max_position_ratio: float = 0.25
    max_drawdown_ratio: float = 0.2
    stop_atr_multiple: float = 2.0
    take_profit_atr_multiple: float = 3.0
    trailing_stop_ratio: float | None = 0.02
    cash_reserve_ratio: float = 0.01

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "trailing_stop_ratio" and value is None:
                continue
            if field.name == "max_open_positions":
                valid_type = isinstance(value, int) and not isinstance(value, bool)
            else:
                valid_type = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not valid_type or not math.isfinite(value) or not _in_range(field.name, value):
                raise ValueError(
                    f"risk config key {field.name!r} must be in {_describe_range(field.name)}, got {value!r}"
                )

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> RiskConfig:
        """Build from a parsed config section; unknown keys are an error, missing keys take defaults."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown risk config keys {unknown}; known keys are {sorted(known)}")
        return cls(**values)  # type: ignore[arg-type]


class EntryDecision(NamedTuple):
    """Whether a new entry is allowed, and why (or why not) in words for the log."""

    allowed: bool
    reason: str


def _check_positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


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
        _check_positive("price", price)
        _check_positive("atr", atr)
        if not math.isfinite(equity):
            raise ValueError(f"equity must be finite, got {equity!r}")
        available_cash = equity if cash is None else cash
        if not math.isfinite(available_cash):
            raise ValueError(f"cash must be finite, got {available_cash!r}")
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
        _check_positive("peak_equity", peak_equity)
        if not math.isfinite(equity):
            raise ValueError(f"equity must be finite, got {equity!r}")
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
        _check_positive("price", price)
        _check_positive("atr", atr)
        direction = 1.0 if side == "long" else -1.0
        stop_price = price - direction * atr * self.config.stop_atr_multiple
        take_profit_price = price + direction * atr * self.config.take_profit_atr_multiple
        if stop_price <= 0.0 or take_profit_price <= 0.0:
            raise ValueError(
                f"ATR {atr} is too large for price {price}: stop {stop_price} / target {take_profit_price} "
                "would not be positive"
            )
        return stop_price, take_profit_price
