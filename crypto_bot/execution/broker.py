"""Paper broker: fills signals at simulated prices and keeps cash and open positions.

Covers: slippage (always against the trader), fees, cash accounting, equity, exit handling
per candle, and resuming from the journal after a restart. Every state change is committed to
the `TradeJournal` before memory changes, so a crash never leaves memory ahead of disk.
Does not cover: sizing and entry limits (see `risk`), exit rules (see `exits`), real orders.

The positions held here are the authoritative trading state: no cache, memory policy or
eviction ever touches them; they leave only through close_position.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from crypto_bot.execution.exits import check_exit
from crypto_bot.execution.journal import TradeJournal
from crypto_bot.execution.position import Position, Trade
from crypto_bot.memory import validation
from crypto_bot.memory.config import ConfigSection, setting
from crypto_bot.strategy.signals import Signal

logger = logging.getLogger(__name__)


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _random_position_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class PaperConfig(ConfigSection):
    """The `paper:` section: the simulated account and what a fill costs."""

    key_prefix: ClassVar[str] = "paper."

    starting_balance: float = setting(
        10_000.0, "cash of a new account (quote currency); a resumed journal keeps its own", float,
        minimum=0, minimum_open=True, maximum=1e12,
    )
    fee_rate: float = setting(
        0.001, "fee per fill as a share of its notional", float, minimum=0, maximum=0.1, maximum_open=True
    )
    slippage_bps: float = setting(
        5.0, "fill price moved against the trader, in basis points", float, minimum=0, maximum=1000
    )


class PaperBroker:
    """Simulated spot/margin account backed by a TradeJournal; thread-safe."""

    fee_rate: float
    slippage_ratio: float

    def __init__(
        self,
        journal: TradeJournal,
        config: PaperConfig | None = None,
        *,
        clock_ms: Callable[[], int] = _wall_clock_ms,
        new_position_id: Callable[[], str] = _random_position_id,
    ) -> None:
        config = config if config is not None else PaperConfig()
        self.fee_rate = config.fee_rate
        self.slippage_ratio = config.slippage_bps / 10_000.0
        self._journal = journal
        self._clock_ms = clock_ms
        self._new_position_id = new_position_id
        self._lock = threading.RLock()
        self._cash = journal.ensure_account(config.starting_balance)
        self._positions: dict[str, Position] = {position.id: position for position in journal.open_positions()}
        self._trades_count, self._realized_pnl = journal.trade_totals()
        if self._positions or self._trades_count:
            logger.info(
                "resumed paper account from %s: cash %.2f, %d open positions, %d closed trades",
                journal.path,
                self._cash,
                len(self._positions),
                self._trades_count,
            )

    @property
    def positions(self) -> Mapping[str, Position]:
        """Open positions by id (read-only view of the live state)."""
        return MappingProxyType(self._positions)

    @property
    def cash(self) -> float:
        """Free cash in quote currency."""
        return self._cash

    @property
    def realized_pnl(self) -> float:
        """Net PnL of all closed trades, fees included."""
        return self._realized_pnl

    @property
    def trades_count(self) -> int:
        """Number of closed trades."""
        return self._trades_count

    def equity(self, prices: Mapping[str, float]) -> float:
        """Cash plus every open position valued at prices[symbol]; KeyError if a symbol has no price."""
        with self._lock:
            total = self._cash
            for position in self._positions.values():
                if position.symbol not in prices:
                    raise KeyError(f"equity needs a price for {position.symbol}, which has an open position")
                total += position.value_at(prices[position.symbol])
            return total

    def _fill_price(self, price: float, direction: int) -> float:
        """Price moved by the slippage against a trade buying (+1) or selling (-1)."""
        return price * (1.0 + direction * self.slippage_ratio)

    def open_position(
        self,
        signal: Signal,
        quantity: float,
        stop_price: float,
        take_profit_price: float | None = None,
        trailing_stop_ratio: float | None = None,
    ) -> Position:
        """Fill the signal for quantity, pay the fee from cash and journal the position."""
        validation.positive("quantity", quantity)
        direction = 1 if signal.side == "long" else -1
        fill_price = self._fill_price(signal.price, direction)
        if direction * (fill_price - stop_price) <= 0.0:
            raise ValueError(
                f"stop_price {stop_price} is not on the losing side of the {signal.side} fill {fill_price}"
            )
        if take_profit_price is not None and direction * (take_profit_price - fill_price) <= 0.0:
            raise ValueError(
                f"take_profit_price {take_profit_price} is not on the winning side "
                f"of the {signal.side} fill {fill_price}"
            )
        fee = quantity * fill_price * self.fee_rate
        cost = quantity * fill_price + fee
        with self._lock:
            if cost > self._cash:
                raise ValueError(
                    f"insufficient cash for {quantity} {signal.symbol} at {fill_price}: "
                    f"need {cost:.2f}, have {self._cash:.2f}"
                )
            position = Position(
                id=self._new_position_id(),
                symbol=signal.symbol,
                side=signal.side,
                quantity=quantity,
                entry_price=fill_price,
                opened_at_ms=self._clock_ms(),
                stop_price=stop_price,
                take_profit_price=take_profit_price,
                trailing_stop_ratio=trailing_stop_ratio,
                highest_price=fill_price,
                lowest_price=fill_price,
                fees_paid=fee,
            )
            self._journal.record_open(position, self._cash - cost)
            self._positions[position.id] = position
            self._cash -= cost
        logger.info("opened %s %s %.8g @ %.8g (fee %.4f)", signal.side, signal.symbol, quantity, fill_price, fee)
        return position

    def close_position(self, position_id: str, price: float, reason: str, at_ms: int | None = None) -> Trade:
        """Fill the exit at price less slippage, pay the fee, journal the trade and free the cash."""
        validation.positive("price", price)
        with self._lock:
            position = self._positions.get(position_id)
            if position is None:
                raise KeyError(f"no open position with id {position_id!r}")
            fill_price = self._fill_price(price, -position.direction)
            fee = position.quantity * fill_price * self.fee_rate
            proceeds = position.value_at(fill_price) - fee
            trade = Trade(
                position_id=position.id,
                symbol=position.symbol,
                side=position.side,
                quantity=position.quantity,
                entry_price=position.entry_price,
                exit_price=fill_price,
                opened_at_ms=position.opened_at_ms,
                closed_at_ms=self._clock_ms() if at_ms is None else at_ms,
                pnl=position.unrealized_pnl(fill_price) - position.fees_paid - fee,
                fees=position.fees_paid + fee,
                exit_reason=str(reason),
            )
            self._journal.record_close(position, trade, self._cash + proceeds)
            del self._positions[position_id]
            self._cash += proceeds
            self._realized_pnl += trade.pnl
            self._trades_count += 1
        logger.info(
            "closed %s %s @ %.8g (%s): pnl %.2f", trade.side, trade.symbol, fill_price, trade.exit_reason, trade.pnl
        )
        return trade

    def process_candle(self, symbol: str, high: float, low: float, close: float, at_ms: int) -> list[Trade]:
        """Apply check_exit to every open position in symbol that was open when the candle opened at `at_ms` (an
        older candle's range says nothing about it); close those it triggers, persist moved anchors."""
        trades: list[Trade] = []
        with self._lock:
            for position in [p for p in self._positions.values() if p.symbol == symbol and p.opened_at_ms <= at_ms]:
                anchors_before = (position.highest_price, position.lowest_price)
                decision = check_exit(position, high, low, close)
                if decision is not None:
                    trades.append(self.close_position(position.id, decision.price, decision.reason, at_ms))
                elif (position.highest_price, position.lowest_price) != anchors_before:
                    self._journal.record_update(position)
        return trades
