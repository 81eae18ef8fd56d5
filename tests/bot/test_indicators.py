"""Indicators against hand-computed values, the feature matrix, and regime classification."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from crypto_bot.strategy import (
    FEATURE_NAMES,
    Regime,
    adx,
    atr,
    bollinger_width,
    classify_regime,
    compute_indicators,
    ema,
    feature_frame,
    feature_matrix,
    required_candles,
    rsi,
)
from tests.bot.support import snapshot


def ohlcv(close: np.ndarray, *, half_range_ratio: float = 0.002) -> pd.DataFrame:
    """Hourly candles around close, high/low half_range_ratio away, on a UTC index, oldest first."""
    close = np.asarray(close, dtype="float64")
    index = pd.date_range("2024-01-01", periods=len(close), freq="h", tz="UTC")
    return pd.DataFrame(
        {
            "open": close,
            "high": close * (1.0 + half_range_ratio),
            "low": close * (1.0 - half_range_ratio),
            "close": close,
            "volume": np.full(len(close), 10.0),
        },
        index=index,
    )


def candles(rows: list[tuple[float, float, float]]) -> pd.DataFrame:
    """Frame from explicit (high, low, close) rows."""
    high, low, close = (np.array(column, dtype="float64") for column in zip(*rows))
    index = pd.date_range("2024-01-01", periods=len(rows), freq="h", tz="UTC")
    return pd.DataFrame({"open": close, "high": high, "low": low, "close": close, "volume": 1.0}, index=index)


def series(values: list[float]) -> pd.Series:
    return pd.Series(values, dtype="float64")


STEPS = np.arange(300)


@pytest.fixture
def uptrend() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return ohlcv(100.0 * np.exp(0.002 * STEPS + rng.normal(0.0, 0.0005, len(STEPS))))


@pytest.fixture
def downtrend() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    return ohlcv(100.0 * np.exp(-0.002 * STEPS + rng.normal(0.0, 0.0005, len(STEPS))))


@pytest.fixture
def sine_range() -> pd.DataFrame:
    return ohlcv(100.0 + np.sin(2.0 * np.pi * STEPS / 8.0), half_range_ratio=0.003)


@pytest.fixture
def wild_swings() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return ohlcv(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.05, len(STEPS)))), half_range_ratio=0.03)


# --- EMA ---------------------------------------------------------------------------------


def test_ema_follows_the_recurrence_seeded_with_the_first_close() -> None:
    # span 3 -> alpha 0.5: 1, 1.5, 2.25, 3.125, 4.0625; the first span-1 values are warm-up
    result = ema(series([1.0, 2.0, 3.0, 4.0, 5.0]), 3)
    np.testing.assert_allclose(result.to_numpy(), [np.nan, np.nan, 2.25, 3.125, 4.0625])


def test_ema_rejects_a_non_positive_span() -> None:
    with pytest.raises(ValueError, match="span"):
        ema(series([1.0, 2.0]), 0)


@pytest.mark.parametrize("span", [2.5, True, "3", None])
def test_span_must_be_a_whole_number_of_candles(span: object) -> None:
    with pytest.raises(ValueError, match=r"span must be an integer >= 1, got"):
        ema(series([1.0, 2.0]), span)  # type: ignore[arg-type]


# --- RSI ---------------------------------------------------------------------------------


def test_rsi_of_a_rising_series_is_100() -> None:
    assert rsi(series(list(range(1, 40)))).iloc[-1] == 100.0


def test_rsi_of_a_falling_series_is_0() -> None:
    assert rsi(series(list(range(40, 1, -1)))).iloc[-1] == 0.0


def test_rsi_of_a_flat_series_is_50() -> None:
    assert rsi(series([7.0] * 30)).iloc[-1] == 50.0


def test_rsi_matches_hand_computed_wilder_smoothing() -> None:
    # gains 1,0,1,0,1 and losses 0,.5,0,.5,0; period 3 seeds with the mean of the first three
    # changes (2/3 vs 1/6 -> RS 4), then avg = (2 * avg + x) / 3 (RS 8/5, then 17/5).
    result = rsi(series([10.0, 11.0, 10.5, 11.5, 11.0, 12.0]), period=3)
    expected = [np.nan, np.nan, np.nan, 80.0, 100.0 - 100.0 / 2.6, 100.0 - 100.0 / 4.4]
    np.testing.assert_allclose(result.to_numpy(), expected)


# --- ATR ---------------------------------------------------------------------------------


def test_atr_of_a_constant_range_is_that_range() -> None:
    frame = candles([(101.0, 99.0, 100.0)] * 20)
    result = atr(frame, period=14)
    assert result.iloc[:13].isna().all()
    np.testing.assert_allclose(result.iloc[13:].to_numpy(), 2.0)


def test_atr_counts_gaps_from_the_previous_close() -> None:
    # true ranges 1, max(1, |12-9.5|) = 2.5, max(0.8, 0.3, 0.5) = 0.8; period 2
    frame = candles([(10.0, 9.0, 9.5), (12.0, 11.0, 11.5), (11.8, 11.0, 11.2)])
    np.testing.assert_allclose(atr(frame, period=2).to_numpy(), [np.nan, 1.75, (1.75 + 0.8) / 2])


# --- ADX ---------------------------------------------------------------------------------


def test_adx_is_high_on_a_steady_trend() -> None:
    assert adx(ohlcv(100.0 + STEPS * 0.5)).iloc[-1] > 90.0


def test_adx_is_low_on_a_sine_range(sine_range: pd.DataFrame) -> None:
    assert adx(sine_range).iloc[-1] < 15.0


def test_adx_is_undefined_before_two_periods() -> None:
    result = adx(ohlcv(100.0 + STEPS[:40]), period=14)
    assert result.iloc[:27].isna().all()
    assert result.iloc[27:].notna().all()


def test_adx_of_motionless_prices_is_zero() -> None:
    assert adx(candles([(100.0, 100.0, 100.0)] * 40)).iloc[-1] == 0.0


# --- Bollinger ---------------------------------------------------------------------------


def test_bollinger_width_uses_the_population_standard_deviation() -> None:
    # mean 3, population std sqrt(2): width = 2 * 2 * sqrt(2) / 3
    width = bollinger_width(series([1.0, 2.0, 3.0, 4.0, 5.0]), period=5, num_std=2.0)
    assert width.iloc[-1] == pytest.approx(4.0 * math.sqrt(2.0) / 3.0)
    assert width.iloc[:4].isna().all()


def test_bollinger_width_rejects_non_positive_num_std() -> None:
    with pytest.raises(ValueError, match="num_std"):
        bollinger_width(series([1.0] * 30), num_std=0.0)


# --- snapshot and features ---------------------------------------------------------------


def test_snapshot_holds_the_latest_indicator_values(uptrend: pd.DataFrame) -> None:
    result = compute_indicators(uptrend, fast=5, slow=30)
    assert result.close == uptrend["close"].iloc[-1]
    assert result.ema_fast == pytest.approx(ema(uptrend["close"], 5).iloc[-1])
    assert result.ema_slow == pytest.approx(ema(uptrend["close"], 30).iloc[-1])
    assert result.rsi == pytest.approx(rsi(uptrend["close"]).iloc[-1])
    assert result.atr == pytest.approx(atr(uptrend).iloc[-1])
    assert result.log_return_1 == pytest.approx(math.log(uptrend["close"].iloc[-1] / uptrend["close"].iloc[-2]))


def test_snapshot_is_defined_at_exactly_the_required_candles(uptrend: pd.DataFrame) -> None:
    result = compute_indicators(uptrend.iloc[: required_candles()])
    assert all(math.isfinite(getattr(result, field.name)) for field in dataclasses.fields(result))


def test_too_short_frame_error_says_how_many_candles_are_needed(uptrend: pd.DataFrame) -> None:
    needed = required_candles()
    with pytest.raises(ValueError, match=f"at least {needed} candles, got {needed - 1}"):
        compute_indicators(uptrend.iloc[: needed - 1])


def test_feature_matrix_rejects_a_too_short_frame(uptrend: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="at least"):
        feature_matrix(uptrend.iloc[:10])


def test_feature_matrix_drops_exactly_the_warm_up_rows(uptrend: pd.DataFrame) -> None:
    matrix = feature_matrix(uptrend)
    assert matrix.shape == (len(uptrend) - required_candles() + 1, len(FEATURE_NAMES))
    assert np.isfinite(matrix).all()


def test_feature_frame_ends_at_the_latest_candle(uptrend: pd.DataFrame) -> None:
    features = feature_frame(uptrend)
    assert list(features.columns) == list(FEATURE_NAMES)
    assert features.index[-1] == uptrend.index[-1]


def test_fast_span_must_be_below_slow_span(uptrend: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="fast span must be < slow span"):
        compute_indicators(uptrend, fast=26, slow=12)


def test_missing_price_column_is_named(uptrend: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="'low'"):
        compute_indicators(uptrend.drop(columns=["low"]))


def test_nan_close_is_rejected_not_smoothed_over(uptrend: pd.DataFrame) -> None:
    broken = uptrend.copy()
    broken.iloc[100, broken.columns.get_loc("close")] = np.nan
    with pytest.raises(ValueError, match="non-finite or non-positive"):
        compute_indicators(broken)


def test_frame_must_be_oldest_first(uptrend: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="oldest first"):
        compute_indicators(uptrend.iloc[::-1])


# --- regime ------------------------------------------------------------------------------


def test_steady_rise_is_trending_up(uptrend: pd.DataFrame) -> None:
    assert classify_regime(compute_indicators(uptrend)) is Regime.TRENDING_UP


def test_steady_fall_is_trending_down(downtrend: pd.DataFrame) -> None:
    assert classify_regime(compute_indicators(downtrend)) is Regime.TRENDING_DOWN


def test_sine_oscillation_is_ranging(sine_range: pd.DataFrame) -> None:
    assert classify_regime(compute_indicators(sine_range)) is Regime.RANGING


def test_wild_swings_are_volatile(wild_swings: pd.DataFrame) -> None:
    assert classify_regime(compute_indicators(wild_swings)) is Regime.VOLATILE


def test_volatility_overrides_a_strong_trend() -> None:
    trending_but_wild = snapshot(adx=40.0, ema_fast=105.0, ema_slow=100.0, atr=5.0)
    assert classify_regime(trending_but_wild) is Regime.VOLATILE


def test_wide_bands_alone_make_the_market_volatile() -> None:
    assert classify_regime(snapshot(bb_width=0.2)) is Regime.VOLATILE


def test_strong_adx_without_ema_direction_is_ranging() -> None:
    assert classify_regime(snapshot(adx=40.0)) is Regime.RANGING


def test_trend_threshold_is_a_parameter() -> None:
    mild_trend = snapshot(adx=20.0, ema_fast=101.0)
    assert classify_regime(mild_trend) is Regime.RANGING
    assert classify_regime(mild_trend, trend_adx_min=18.0) is Regime.TRENDING_UP


def test_regime_thresholds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="volatile_atr_ratio_min"):
        classify_regime(snapshot(), volatile_atr_ratio_min=0.0)


@pytest.mark.parametrize("threshold", [math.nan, math.inf, "25"])
def test_regime_thresholds_must_be_finite_numbers(threshold: object) -> None:
    with pytest.raises(ValueError, match=r"trend_adx_min must be a finite number > 0, got"):
        classify_regime(snapshot(), trend_adx_min=threshold)  # type: ignore[arg-type]
