"""Technical indicators and the model's feature matrix, computed vectorised over OHLCV frames.

Covers: EMA, Wilder RSI, ATR and ADX, Bollinger band width, the latest-candle
`IndicatorSnapshot` that regime classification and signal scoring read, and the scale-free
feature rows the signal model trains on.
Does not cover: fetching candles (see `crypto_bot.market`), labels and the model itself
(see `signal_model`), regime thresholds (see `regime`).

Frames are indexed oldest first and carry float64 columns high, low and close (open and
volume are accepted and ignored). Every series keeps the frame's index; warm-up rows where an
indicator is not yet defined are NaN rather than a biased guess.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import accumulate

import numpy as np
import pandas as pd

from crypto_bot.memory import validation
from crypto_bot.strategy.warmup import (
    ADX_PERIOD,
    ATR_PERIOD,
    BOLLINGER_PERIOD,
    DEFAULT_FAST_SPAN,
    DEFAULT_SLOW_SPAN,
    RETURN_LAGS,
    RSI_PERIOD,
    VOLATILITY_WINDOW,
    required_candles,
)


FEATURE_NAMES: tuple[str, ...] = (
    "log_return_1",
    "log_return_5",
    "log_return_10",
    "volatility",
    "ema_spread_ratio",
    "close_to_slow_ratio",
    "rsi_ratio",
    "atr_ratio",
    "adx_ratio",
    "bb_width",
)

_PRICE_COLUMNS = ("high", "low", "close")


@dataclass(frozen=True, slots=True)
class IndicatorSnapshot:
    """Indicator values at the latest candle; prices in quote currency, returns as log ratios."""

    close: float
    ema_fast: float
    ema_slow: float
    rsi: float
    atr: float
    adx: float
    bb_width: float
    log_return_1: float
    log_return_5: float
    volatility: float

    @property
    def atr_ratio(self) -> float:
        """ATR as a fraction of the close, comparable across symbols and price levels."""
        return self.atr / self.close


def ema(close: pd.Series, span: int) -> pd.Series:
    """Exponential moving average: e[t] = a*x[t] + (1-a)*e[t-1], a = 2/(span+1), seeded with x[0].

    The first span-1 values are NaN: the seed's weight is still too large to trust them.
    """
    validation.integer("span", span, minimum=1)
    return pd.Series(_ema(close.to_numpy(dtype="float64"), span), index=close.index, name=close.name)


def rsi(close: pd.Series, period: int = RSI_PERIOD) -> pd.Series:
    """Wilder's relative strength index in [0, 100]; 100 when no loss in the window, 50 when flat."""
    validation.integer("period", period, minimum=1)
    return pd.Series(_rsi(close.to_numpy(dtype="float64"), period), index=close.index, name="rsi")


def atr(df: pd.DataFrame, period: int = ATR_PERIOD) -> pd.Series:
    """Wilder's average true range, in price units."""
    validation.integer("period", period, minimum=1)
    high, low, close = _prices(df)
    return pd.Series(_wilder_mean(_true_range(high, low, close), period), index=df.index, name="atr")


def adx(df: pd.DataFrame, period: int = ADX_PERIOD) -> pd.Series:
    """Wilder's average directional index in [0, 100]; defined from candle 2*period-1 on."""
    validation.integer("period", period, minimum=1)
    return pd.Series(_adx(*_prices(df), period), index=df.index, name="adx")


def bollinger_width(close: pd.Series, period: int = BOLLINGER_PERIOD, num_std: float = 2.0) -> pd.Series:
    """Bollinger band width (upper - lower) / middle, with the population standard deviation."""
    validation.integer("period", period, minimum=1)
    validation.positive("num_std", num_std)
    width = _bollinger_width(close.to_numpy(dtype="float64"), period, num_std)
    return pd.Series(width, index=close.index, name="bb_width")


# The indicators below work on float64 arrays: a bot analyses many short frames per cycle, and
# pandas' per-operation overhead (tens of microseconds) would dominate the arithmetic ~20 times.


def _prices(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(df[column].to_numpy(dtype="float64") for column in _PRICE_COLUMNS)  # type: ignore[return-value]


def _recursive_mean(values: np.ndarray, start: int, seed: float, alpha: float) -> np.ndarray:
    """out[start] = seed, then out[t] = out[t-1] + alpha * (x[t] - out[t-1]); NaN before start."""
    out = np.full(len(values), np.nan)
    if start >= len(values):
        return out
    tail = values[start:].tolist()
    tail[0] = seed
    out[start:] = list(accumulate(tail, lambda average, x: average + alpha * (x - average)))
    return out


def _ema(values: np.ndarray, span: int) -> np.ndarray:
    if not len(values):
        return values.copy()
    out = _recursive_mean(values, 0, values[0], 2.0 / (span + 1))
    out[: span - 1] = np.nan
    return out


def _wilder_mean(values: np.ndarray, period: int) -> np.ndarray:
    """Wilder's smoothing: the mean of the first `period` valid values, then avg += (x - avg)/period."""
    valid = ~np.isnan(values)
    if not valid.any():
        return np.full(len(values), np.nan)
    first_valid = int(valid.argmax())
    seed_at = first_valid + period - 1
    if seed_at >= len(values):
        return np.full(len(values), np.nan)
    if not valid[first_valid:].all():  # a gap inside the data: pandas' NaN-aware recursion
        seeded = pd.Series(values[seed_at:])
        seeded.iloc[0] = np.nanmean(values[first_valid : seed_at + 1])
        out = np.full(len(values), np.nan)
        out[seed_at:] = seeded.ewm(alpha=1.0 / period, adjust=False).mean().to_numpy()
        return out
    return _recursive_mean(values, seed_at, values[first_valid : seed_at + 1].mean(), 1.0 / period)


def _diff(values: np.ndarray, lag: int = 1) -> np.ndarray:
    out = np.full(len(values), np.nan)
    out[lag:] = values[lag:] - values[:-lag]
    return out


def _rsi(close: np.ndarray, period: int) -> np.ndarray:
    delta = _diff(close)
    average_gain = _wilder_mean(np.where(np.isnan(delta), np.nan, np.maximum(delta, 0.0)), period)
    average_loss = _wilder_mean(np.where(np.isnan(delta), np.nan, np.maximum(-delta, 0.0)), period)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = 100.0 - 100.0 / (1.0 + average_gain / average_loss)
    values = np.where((average_loss == 0.0) & (average_gain > 0.0), 100.0, values)
    return np.where((average_loss == 0.0) & (average_gain == 0.0), 50.0, values)


def _true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """max(high-low, |high-prev close|, |low-prev close|); the first candle has only high-low."""
    previous_close = np.concatenate(([np.nan], close[:-1]))
    ranges = np.vstack([high - low, np.abs(high - previous_close), np.abs(low - previous_close)])
    return np.fmax(np.fmax(ranges[0], ranges[1]), ranges[2])


def _adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    up_move = _diff(high)
    down_move = -_diff(low)
    known = ~np.isnan(up_move)
    plus_dm = np.where(known, np.where((up_move > down_move) & (up_move > 0.0), up_move, 0.0), np.nan)
    minus_dm = np.where(known, np.where((down_move > up_move) & (down_move > 0.0), down_move, 0.0), np.nan)
    smoothed_range = _wilder_mean(np.where(known, _true_range(high, low, close), np.nan), period)
    moving = smoothed_range > 0.0
    # A window without any price movement has no direction: its DI and DX are 0, not 0/0.
    with np.errstate(divide="ignore", invalid="ignore"):
        plus_di = np.where(moving, 100.0 * _wilder_mean(plus_dm, period) / smoothed_range, 0.0)
        minus_di = np.where(moving, 100.0 * _wilder_mean(minus_dm, period) / smoothed_range, 0.0)
        di_sum = plus_di + minus_di
        dx = np.where(di_sum > 0.0, 100.0 * np.abs(plus_di - minus_di) / di_sum, 0.0)
    return _wilder_mean(np.where(np.isnan(smoothed_range), np.nan, dx), period)


def _bollinger_width(close: np.ndarray, period: int, num_std: float) -> np.ndarray:
    return 2.0 * num_std * _rolling_std(close, period, ddof=0) / _rolling_mean(close, period)


def _windows(values: np.ndarray, window: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(values, window)


def _rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        out[window - 1 :] = _windows(values, window).mean(axis=1)
    return out


def _rolling_std(values: np.ndarray, window: int, *, ddof: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        out[window - 1 :] = _windows(values, window).std(axis=1, ddof=ddof)
    return out


def _validate_frame(df: pd.DataFrame, needed: int) -> None:
    missing = [column for column in _PRICE_COLUMNS if column not in df.columns]
    if missing:
        raise ValueError(f"OHLCV frame lacks columns {missing}; needs {list(_PRICE_COLUMNS)}")
    if len(df) < needed:
        raise ValueError(f"indicators need at least {needed} candles, got {len(df)}")
    if not df.index.is_monotonic_increasing:
        raise ValueError("OHLCV frame must be indexed oldest first (monotonic increasing index)")
    prices = df.loc[:, list(_PRICE_COLUMNS)].to_numpy(dtype="float64")
    bad_rows = ~(np.isfinite(prices) & (prices > 0.0)).all(axis=1)
    if bad_rows.any():
        raise ValueError(
            f"OHLCV frame has {int(bad_rows.sum())} candles with non-finite or non-positive "
            f"high/low/close, first at {df.index[int(bad_rows.argmax())]}"
        )


def _indicator_frame(df: pd.DataFrame, fast: int, slow: int) -> pd.DataFrame:
    """Every indicator and feature input as columns over the frame's index."""
    validation.integer("fast", fast, minimum=1)
    validation.integer("slow", slow, minimum=1)
    if fast >= slow:
        raise ValueError(f"fast span must be < slow span, got fast={fast}, slow={slow}")
    _validate_frame(df, required_candles(fast=fast, slow=slow))
    high, low, close = _prices(df)
    log_close = np.log(close)
    log_return_1 = _diff(log_close)
    columns = {
        "close": close,
        "ema_fast": _ema(close, fast),
        "ema_slow": _ema(close, slow),
        "rsi": _rsi(close, RSI_PERIOD),
        "atr": _wilder_mean(_true_range(high, low, close), ATR_PERIOD),
        "adx": _adx(high, low, close, ADX_PERIOD),
        "bb_width": _bollinger_width(close, BOLLINGER_PERIOD, 2.0),
        "volatility": _rolling_std(log_return_1, VOLATILITY_WINDOW, ddof=1),
    }
    for lag in RETURN_LAGS:
        columns[f"log_return_{lag}"] = _diff(log_close, lag)
    return pd.DataFrame(columns, index=df.index)


def compute_indicators(
    df: pd.DataFrame, *, fast: int = DEFAULT_FAST_SPAN, slow: int = DEFAULT_SLOW_SPAN
) -> IndicatorSnapshot:
    """Indicator values at the latest candle; ValueError if the frame is too short or malformed."""
    return _snapshot(_indicator_frame(df, fast, slow))


def _snapshot(indicators: pd.DataFrame) -> IndicatorSnapshot:
    latest = indicators.iloc[-1]
    return IndicatorSnapshot(**{field.name: float(latest[field.name]) for field in fields(IndicatorSnapshot)})


def analyse_latest(
    df: pd.DataFrame, *, fast: int = DEFAULT_FAST_SPAN, slow: int = DEFAULT_SLOW_SPAN
) -> tuple[IndicatorSnapshot, np.ndarray]:
    """The latest snapshot and the model's latest feature row (shape (1, features)) in one pass.

    The indicators are computed once when the spans are the model's own (the default).
    """
    indicators = _indicator_frame(df, fast, slow)
    if (fast, slow) != (DEFAULT_FAST_SPAN, DEFAULT_SLOW_SPAN):
        model_indicators = _indicator_frame(df, DEFAULT_FAST_SPAN, DEFAULT_SLOW_SPAN)
    else:
        model_indicators = indicators
    return _snapshot(indicators), _features(model_indicators).iloc[-1:].to_numpy(dtype="float64")


def feature_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The model's features (columns FEATURE_NAMES), one row per candle, warm-up rows dropped.

    Every feature is a ratio, so a model trained on one symbol or price level applies to another.
    The index is kept so labels can be aligned to exactly these rows.
    """
    return _features(_indicator_frame(df, DEFAULT_FAST_SPAN, DEFAULT_SLOW_SPAN))


def _features(indicators: pd.DataFrame) -> pd.DataFrame:
    close = indicators["close"]
    features = pd.DataFrame(
        {
            "log_return_1": indicators["log_return_1"],
            "log_return_5": indicators["log_return_5"],
            "log_return_10": indicators["log_return_10"],
            "volatility": indicators["volatility"],
            "ema_spread_ratio": indicators["ema_fast"] / indicators["ema_slow"] - 1.0,
            "close_to_slow_ratio": close / indicators["ema_slow"] - 1.0,
            "rsi_ratio": indicators["rsi"] / 100.0,
            "atr_ratio": indicators["atr"] / close,
            "adx_ratio": indicators["adx"] / 100.0,
            "bb_width": indicators["bb_width"],
        },
        index=indicators.index,
    )
    return features.dropna()


def feature_matrix(df: pd.DataFrame) -> np.ndarray:
    """feature_frame as a float64 array of shape (candles after warm-up, len(FEATURE_NAMES))."""
    return feature_frame(df).to_numpy(dtype="float64")
