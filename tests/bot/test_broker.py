"""PaperBroker: fills, fees, slippage, equity, cash checks, exits per candle and resuming from the journal."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto_bot.execution import PaperBroker, TradeJournal
from crypto_bot.execution.broker import PaperConfig
from crypto_bot.memory import ConfigError
from crypto_bot.strategy import Signal

FEE_RATE = 0.001
SLIPPAGE_BPS = 5.0  # 0.05% against the trader


def signal(symbol: str = "BTC/USDT", side: str = "long", price: float = 100.0) -> Signal:
    return Signal(symbol=symbol, side=side, score=0.8, price=price, atr=2.0)


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


@pytest.fixture
def journal(journal_path: Path) -> Iterator[TradeJournal]:
    journal = TradeJournal(journal_path)
    yield journal
    journal.close()


OPENED_AT_MS = 1_700_000_000_000  # the broker's clock: every position opens then
NEXT_CANDLE_MS = OPENED_AT_MS + 60_000


def make_broker(journal: TradeJournal, **overrides: float) -> PaperBroker:
    ids = (f"p{number}" for number in itertools.count(1))
    options = {"starting_balance": 10_000.0, "fee_rate": FEE_RATE, "slippage_bps": SLIPPAGE_BPS}
    config = PaperConfig(**{**options, **overrides})
    return PaperBroker(journal, config, clock_ms=lambda: OPENED_AT_MS, new_position_id=lambda: next(ids))


@pytest.fixture
def broker(journal: TradeJournal) -> PaperBroker:
    return make_broker(journal)


def test_long_entry_fills_above_the_signal_price_and_pays_the_fee(broker: PaperBroker) -> None:
    opened = broker.open_position(signal(price=100.0), 10.0, stop_price=90.0)
    assert opened.entry_price == pytest.approx(100.05)
    assert opened.fees_paid == pytest.approx(10 * 100.05 * FEE_RATE)
    assert broker.cash == pytest.approx(10_000.0 - 10 * 100.05 * (1 + FEE_RATE))
    assert broker.positions == {"p1": opened}


def test_short_entry_fills_below_the_signal_price(broker: PaperBroker) -> None:
    opened = broker.open_position(signal(side="short", price=100.0), 10.0, stop_price=110.0)
    assert opened.entry_price == pytest.approx(99.95)
    assert broker.cash == pytest.approx(10_000.0 - 10 * 99.95 * (1 + FEE_RATE))


def test_long_round_trip_books_pnl_net_of_both_fees(broker: PaperBroker) -> None:
    broker.open_position(signal(price=100.0), 10.0, stop_price=90.0)
    trade = broker.close_position("p1", 110.0, "take_profit", at_ms=5)
    entry_fee, exit_fee = 10 * 100.05 * FEE_RATE, 10 * 109.945 * FEE_RATE
    assert trade.exit_price == pytest.approx(109.945)
    assert trade.fees == pytest.approx(entry_fee + exit_fee)
    assert trade.pnl == pytest.approx(10 * (109.945 - 100.05) - entry_fee - exit_fee)
    assert (trade.closed_at_ms, trade.exit_reason) == (5, "take_profit")
    assert broker.cash == pytest.approx(10_000.0 + trade.pnl)
    assert broker.realized_pnl == pytest.approx(trade.pnl)
    assert broker.trades_count == 1
    assert broker.positions == {}


def test_short_round_trip_profits_when_the_price_falls(broker: PaperBroker) -> None:
    broker.open_position(signal(side="short", price=100.0), 10.0, stop_price=110.0)
    trade = broker.close_position("p1", 90.0, "take_profit")
    fees = 10 * 99.95 * FEE_RATE + 10 * 90.045 * FEE_RATE
    assert trade.pnl == pytest.approx(10 * (99.95 - 90.045) - fees)
    assert broker.cash == pytest.approx(10_000.0 + trade.pnl)


def test_equity_values_open_positions_at_the_given_prices(broker: PaperBroker) -> None:
    broker.open_position(signal("BTC/USDT", price=100.0), 10.0, stop_price=90.0)
    broker.open_position(signal("ETH/USDT", side="short", price=50.0), 4.0, stop_price=60.0)
    expected = broker.cash + 10 * 120.0 + 4 * (2 * 49.975 - 40.0)
    assert broker.equity({"BTC/USDT": 120.0, "ETH/USDT": 40.0}) == pytest.approx(expected)


def test_equity_without_a_price_for_an_open_symbol_is_an_error(broker: PaperBroker) -> None:
    broker.open_position(signal("BTC/USDT"), 1.0, stop_price=90.0)
    with pytest.raises(KeyError, match="BTC/USDT"):
        broker.equity({"ETH/USDT": 10.0})


def test_insufficient_cash_is_rejected_without_changing_state(broker: PaperBroker, journal: TradeJournal) -> None:
    with pytest.raises(ValueError, match="insufficient cash"):
        broker.open_position(signal(price=100.0), 100.0, stop_price=90.0)  # 10_005 + fee > 10_000
    assert broker.cash == 10_000.0
    assert broker.positions == {}
    assert journal.open_positions() == []


@pytest.mark.parametrize("quantity", [0.0, -1.0, float("nan")])
def test_non_positive_quantity_is_rejected(broker: PaperBroker, quantity: float) -> None:
    with pytest.raises(ValueError, match="quantity"):
        broker.open_position(signal(), quantity, stop_price=90.0)


def test_stop_on_the_winning_side_is_rejected(broker: PaperBroker) -> None:
    with pytest.raises(ValueError, match="stop_price"):
        broker.open_position(signal(price=100.0), 1.0, stop_price=101.0)


def test_closing_an_unknown_position_is_a_key_error(broker: PaperBroker) -> None:
    with pytest.raises(KeyError, match="nope"):
        broker.close_position("nope", 100.0, "manual")


@pytest.mark.parametrize("fee_rate", [0.5, 0.1, -0.001])
def test_a_fee_rate_outside_the_papers_range_is_a_config_error(fee_rate: float) -> None:
    with pytest.raises(ConfigError, match=r"paper.fee_rate=.*\[0, 0.1\)"):
        PaperConfig(fee_rate=fee_rate)


def test_a_broker_without_a_config_uses_the_papers_defaults(journal: TradeJournal) -> None:
    broker = PaperBroker(journal)
    assert (broker.cash, broker.fee_rate, broker.slippage_ratio) == (10_000.0, 0.001, 0.0005)


def test_candle_closes_only_the_positions_whose_exit_triggers(broker: PaperBroker) -> None:
    broker.open_position(signal("BTC/USDT", price=100.0), 1.0, stop_price=95.0)
    broker.open_position(signal("BTC/USDT", price=100.0), 1.0, stop_price=90.0)
    broker.open_position(signal("ETH/USDT", price=100.0), 1.0, stop_price=99.0)
    trades = broker.process_candle("BTC/USDT", high=101.0, low=93.0, close=94.0, at_ms=NEXT_CANDLE_MS)
    assert [(trade.position_id, trade.exit_reason, trade.closed_at_ms) for trade in trades] == [
        ("p1", "stop_loss", NEXT_CANDLE_MS)
    ]
    assert trades[0].exit_price == pytest.approx(95.0 * (1 - SLIPPAGE_BPS / 10_000))
    assert sorted(broker.positions) == ["p2", "p3"]


def test_a_candle_that_opened_before_the_position_does_not_touch_it(broker: PaperBroker) -> None:
    broker.open_position(signal("BTC/USDT", price=100.0), 1.0, stop_price=95.0, trailing_stop_ratio=0.05)
    assert broker.process_candle("BTC/USDT", high=120.0, low=80.0, close=94.0, at_ms=OPENED_AT_MS - 60_000) == []
    assert broker.positions["p1"].highest_price == broker.positions["p1"].entry_price
    (trade,) = broker.process_candle("BTC/USDT", high=101.0, low=80.0, close=94.0, at_ms=OPENED_AT_MS)
    assert trade.opened_at_ms <= trade.closed_at_ms


def test_broker_resumes_positions_cash_and_totals_from_the_journal(
    broker: PaperBroker, journal: TradeJournal, journal_path: Path
) -> None:
    broker.open_position(signal("BTC/USDT", price=100.0), 10.0, stop_price=90.0, take_profit_price=120.0)
    broker.open_position(signal("ETH/USDT", side="short", price=50.0), 4.0, stop_price=55.0, trailing_stop_ratio=0.02)
    broker.close_position("p1", 104.0, "signal")
    journal.close()  # the bot stops; its successor takes the journal over

    reopened = TradeJournal(journal_path)
    try:
        resumed = make_broker(reopened, starting_balance=1.0)
        assert resumed.positions == broker.positions
        assert resumed.cash == broker.cash
        assert resumed.realized_pnl == broker.realized_pnl
        assert resumed.trades_count == 1
    finally:
        reopened.close()


def test_a_new_trailing_anchor_survives_a_restart(broker: PaperBroker, journal_path: Path) -> None:
    broker.open_position(signal("BTC/USDT", price=100.0), 1.0, stop_price=90.0, trailing_stop_ratio=0.05)
    assert broker.process_candle("BTC/USDT", high=108.0, low=103.0, close=107.0, at_ms=NEXT_CANDLE_MS) == []

    reopened = TradeJournal(journal_path, read_only=True)
    try:
        assert reopened.open_positions()[0].highest_price == 108.0
    finally:
        reopened.close()
