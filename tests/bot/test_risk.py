"""Risk policy (sizing, caps, entry gating, stops, config validation) and exit rules."""

from __future__ import annotations

import dataclasses

import pytest

from crypto_bot.execution import (
    ExitDecision,
    ExitReason,
    Position,
    RiskConfig,
    RiskManager,
    check_exit,
)
from crypto_bot.memory import ConfigError


def position(**overrides: object) -> Position:
    """A long BTC position bought at 100 with stop 95 and target 110."""
    base = Position(
        id="p1",
        symbol="BTC/USDT",
        side="long",
        quantity=1.0,
        entry_price=100.0,
        opened_at_ms=0,
        stop_price=95.0,
        take_profit_price=110.0,
        trailing_stop_ratio=None,
        highest_price=100.0,
        lowest_price=100.0,
        fees_paid=0.1,
    )
    return dataclasses.replace(base, **overrides)


def short_position(**overrides: object) -> Position:
    """A short sold at 100 with stop 105 and target 90."""
    return position(**{"side": "short", "stop_price": 105.0, "take_profit_price": 90.0, **overrides})


@pytest.fixture
def risk() -> RiskManager:
    return RiskManager(RiskConfig())


# --- sizing ------------------------------------------------------------------------------


def test_size_risks_the_configured_share_of_equity_at_the_atr_stop(risk: RiskManager) -> None:
    # risk 1% of 10_000 = 100; stop distance 2 * ATR 5 = 10 -> 10 units (notional 1_000, under caps)
    assert risk.position_size(10_000.0, 100.0, 5.0) == pytest.approx(10.0)


def test_size_is_capped_by_max_position_ratio(risk: RiskManager) -> None:
    # uncapped: 100 / (2 * 0.5) = 100 units = 10_000 notional; cap 25% of equity = 2_500 -> 25 units
    assert risk.position_size(10_000.0, 100.0, 0.5) == pytest.approx(25.0)


def test_size_is_capped_by_free_cash_less_the_reserve(risk: RiskManager) -> None:
    # 500 cash, 1% kept back for fees and slippage -> 495 / 100
    assert risk.position_size(10_000.0, 100.0, 5.0, cash=500.0) == pytest.approx(4.95)


def test_no_equity_sizes_to_zero(risk: RiskManager) -> None:
    assert risk.position_size(0.0, 100.0, 5.0) == 0.0


def test_zero_atr_is_rejected_rather_than_sizing_to_infinity(risk: RiskManager) -> None:
    with pytest.raises(ValueError, match="atr must be a finite number > 0"):
        risk.position_size(10_000.0, 100.0, 0.0)


# --- entry gating ------------------------------------------------------------------------


def test_entry_allowed_within_limits(risk: RiskManager) -> None:
    decision = risk.check_entry([position(symbol="ETH/USDT")], 10_000.0, 10_000.0, "BTC/USDT")
    assert decision.allowed


def test_entry_refused_at_max_open_positions() -> None:
    risk = RiskManager(RiskConfig(max_open_positions=2))
    open_positions = [position(id="a", symbol="ETH/USDT"), position(id="b", symbol="SOL/USDT")]
    allowed, reason = risk.check_entry(open_positions, 10_000.0, 10_000.0, "BTC/USDT")
    assert not allowed
    assert "max open positions" in reason


def test_entry_refused_for_a_symbol_already_held(risk: RiskManager) -> None:
    allowed, reason = risk.check_entry([position()], 10_000.0, 10_000.0, "BTC/USDT")
    assert not allowed
    assert "already open" in reason


def test_drawdown_at_the_limit_halts_new_entries(risk: RiskManager) -> None:
    allowed, reason = risk.check_entry([], 7_900.0, 10_000.0, "BTC/USDT")
    assert not allowed
    assert "halted" in reason


def test_drawdown_below_the_limit_allows_entries(risk: RiskManager) -> None:
    assert risk.check_entry([], 8_100.0, 10_000.0, "BTC/USDT").allowed


def test_peak_equity_must_be_positive(risk: RiskManager) -> None:
    with pytest.raises(ValueError, match="peak_equity"):
        risk.check_entry([], 1.0, 0.0, "BTC/USDT")


# --- stops -------------------------------------------------------------------------------


def test_long_stop_below_and_target_above_at_atr_multiples(risk: RiskManager) -> None:
    assert risk.stop_and_target("long", 100.0, 2.0) == pytest.approx((96.0, 106.0))


def test_short_stop_above_and_target_below_at_atr_multiples(risk: RiskManager) -> None:
    assert risk.stop_and_target("short", 100.0, 2.0) == pytest.approx((104.0, 94.0))


def test_atr_too_large_for_a_positive_stop_is_rejected(risk: RiskManager) -> None:
    with pytest.raises(ValueError, match="too large"):
        risk.stop_and_target("long", 100.0, 60.0)


# --- config validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("risk_per_trade_ratio", 0.5, "(0, 0.1]"),
        ("risk_per_trade_ratio", 0.0, "(0, 0.1]"),
        ("max_open_positions", 0, "[1, 1000]"),
        ("max_open_positions", 2.5, "[1, 1000]"),
        ("max_position_ratio", 1.5, "(0, 1]"),
        ("max_drawdown_ratio", 1.0, "(0, 1)"),
        ("stop_atr_multiple", -1.0, "[0.1, 20]"),
        ("stop_atr_multiple", 1e-323, "[0.1, 20]"),
        ("take_profit_atr_multiple", float("nan"), "[0.1, 50]"),
        ("trailing_stop_ratio", 0.9, "(0, 0.5] or null"),
        ("cash_reserve_ratio", True, "[0, 0.5)"),
    ],
)
def test_config_error_names_the_key_and_allowed_range(key: str, value: object, allowed: str) -> None:
    with pytest.raises(ConfigError) as error:
        RiskConfig(**{key: value})
    (problem,) = error.value.problems
    assert problem.startswith(f"invalid risk.{key}={value!r}: allowed ") and problem.endswith(allowed)


def test_trailing_stop_can_be_disabled() -> None:
    assert RiskConfig(trailing_stop_ratio=None).trailing_stop_ratio is None


def test_config_from_mapping_rejects_unknown_keys_suggesting_the_right_one() -> None:
    with pytest.raises(ConfigError, match="unknown key risk.max_positions: did you mean risk.max_open_positions"):
        RiskConfig.from_mapping({"max_positions": 3})


def test_config_from_mapping_keeps_defaults_for_missing_keys() -> None:
    assert RiskConfig.from_mapping({"max_open_positions": 3}) == RiskConfig(max_open_positions=3)


# --- exits -------------------------------------------------------------------------------


def test_long_stop_loss_fills_at_the_stop() -> None:
    assert check_exit(position(), high=101.0, low=94.0, close=96.0) == ExitDecision(ExitReason.STOP_LOSS, 95.0)


def test_long_take_profit_fills_at_the_target() -> None:
    assert check_exit(position(), high=111.0, low=99.0, close=109.0) == ExitDecision(ExitReason.TAKE_PROFIT, 110.0)


def test_stop_and_target_in_one_candle_assume_the_stop_hit_first() -> None:
    assert check_exit(position(), high=112.0, low=93.0, close=100.0) == ExitDecision(ExitReason.STOP_LOSS, 95.0)


def test_no_exit_while_price_stays_between_stop_and_target() -> None:
    assert check_exit(position(), high=105.0, low=96.0, close=101.0) is None


def test_trailing_stop_ratchets_up_with_new_highs_and_never_down() -> None:
    held = position(trailing_stop_ratio=0.05, take_profit_price=None)
    assert check_exit(held, high=108.0, low=104.0, close=107.0) is None  # trail now 108 * 0.95 = 102.6
    assert check_exit(held, high=106.0, low=103.0, close=104.0) is None  # lower high keeps the anchor
    assert held.highest_price == 108.0
    decision = check_exit(held, high=104.0, low=102.0, close=102.5)
    assert decision is not None
    assert decision.reason is ExitReason.TRAILING_STOP
    assert decision.price == pytest.approx(102.6)


def test_anchor_moves_before_the_stop_is_tested_within_one_candle() -> None:
    # the candle's own high lifts the trail to 114 * 0.95 = 108.3, which its low then crosses
    decision = check_exit(position(trailing_stop_ratio=0.05, take_profit_price=None), 114.0, 108.0, 109.0)
    assert decision == ExitDecision(ExitReason.TRAILING_STOP, pytest.approx(108.3))


def test_fixed_stop_wins_while_it_is_tighter_than_the_trail() -> None:
    decision = check_exit(position(trailing_stop_ratio=0.10), high=101.0, low=94.0, close=95.0)
    assert decision == ExitDecision(ExitReason.STOP_LOSS, 95.0)


def test_gap_through_the_stop_fills_at_the_nearest_traded_price() -> None:
    assert check_exit(position(), high=90.0, low=85.0, close=86.0) == ExitDecision(ExitReason.STOP_LOSS, 90.0)


def test_short_stop_loss_fills_at_the_stop() -> None:
    assert check_exit(short_position(), high=106.0, low=99.0, close=104.0) == ExitDecision(ExitReason.STOP_LOSS, 105.0)


def test_short_take_profit_fills_at_the_target() -> None:
    assert check_exit(short_position(), high=101.0, low=89.0, close=91.0) == ExitDecision(ExitReason.TAKE_PROFIT, 90.0)


def test_short_trailing_stop_follows_new_lows() -> None:
    held = short_position(trailing_stop_ratio=0.05, take_profit_price=None)
    assert check_exit(held, high=96.0, low=92.0, close=93.0) is None  # trail now 92 * 1.05 = 96.6
    assert held.lowest_price == 92.0
    decision = check_exit(held, high=97.0, low=94.0, close=96.0)
    assert decision == ExitDecision(ExitReason.TRAILING_STOP, pytest.approx(96.6))


def test_inconsistent_candle_is_rejected() -> None:
    with pytest.raises(ValueError, match="low <= close <= high"):
        check_exit(position(), high=101.0, low=99.0, close=102.0)
