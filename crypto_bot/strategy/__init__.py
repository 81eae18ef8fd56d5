"""Analysis layer: indicators, market regime, the ML signal model and entry signals."""

from crypto_bot.strategy.indicators import (
    FEATURE_NAMES,
    IndicatorSnapshot,
    adx,
    analyse_latest,
    atr,
    bollinger_width,
    compute_indicators,
    ema,
    feature_frame,
    feature_matrix,
    required_candles,
    rsi,
)
from crypto_bot.strategy.regime import Regime, classify_regime
from crypto_bot.strategy.signal_model import (
    ModelLoadError,
    ensure_model,
    labelled_rows,
    load_model,
    predict_up_probability,
    save_model,
    train_signal_model,
    up_probabilities,
)
from crypto_bot.strategy.signals import SIDES, Side, Signal, score_signal

__all__ = [
    "FEATURE_NAMES",
    "IndicatorSnapshot",
    "ModelLoadError",
    "Regime",
    "SIDES",
    "Side",
    "Signal",
    "adx",
    "analyse_latest",
    "atr",
    "bollinger_width",
    "classify_regime",
    "compute_indicators",
    "ema",
    "ensure_model",
    "feature_frame",
    "feature_matrix",
    "labelled_rows",
    "load_model",
    "predict_up_probability",
    "required_candles",
    "rsi",
    "save_model",
    "score_signal",
    "train_signal_model",
    "up_probabilities",
]
