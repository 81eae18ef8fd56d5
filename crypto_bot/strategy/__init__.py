"""Analysis layer: strategy plugins and their host, indicators, market regime, the ML signal model and entry signals.

The built-in strategy (`crypto_bot.strategy.builtin`) is loaded by name, as any plugin is.
"""

from crypto_bot.strategy.indicators import (
    ANALYSIS_CANDLES,
    FEATURE_NAMES,
    IndicatorSnapshot,
    adx,
    analyse_latest,
    analysis_candles,
    atr,
    bollinger_width,
    compute_indicators,
    ema,
    feature_frame,
    feature_matrix,
    required_candles,
    rsi,
)
from crypto_bot.strategy.plugin import (
    PluginBuildError,
    PluginLoadError,
    PluginSpec,
    StrategyPlugin,
    StrategyRuntime,
    build_plugin,
    load_plugin,
    load_plugin_class,
)
from crypto_bot.strategy.plugin_host import PluginHost
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
from crypto_bot.strategy.signals import SIDES, Side, Signal, builtin_score, entry_signal

__all__ = [
    "ANALYSIS_CANDLES",
    "FEATURE_NAMES",
    "IndicatorSnapshot",
    "ModelLoadError",
    "PluginBuildError",
    "PluginHost",
    "PluginLoadError",
    "PluginSpec",
    "Regime",
    "SIDES",
    "Side",
    "Signal",
    "StrategyPlugin",
    "StrategyRuntime",
    "adx",
    "analyse_latest",
    "analysis_candles",
    "atr",
    "bollinger_width",
    "build_plugin",
    "builtin_score",
    "classify_regime",
    "compute_indicators",
    "ema",
    "ensure_model",
    "entry_signal",
    "feature_frame",
    "feature_matrix",
    "labelled_rows",
    "load_model",
    "load_plugin",
    "load_plugin_class",
    "predict_up_probability",
    "required_candles",
    "rsi",
    "save_model",
    "train_signal_model",
    "up_probabilities",
]
