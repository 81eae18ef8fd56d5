"""Analysis layer: strategy plugins and their host, indicators, market regime, the ML signal model and entry signals.

The built-in strategy (`crypto_bot.strategy.builtin`) is loaded by name, as any plugin is.

Names are imported from their modules on first use (`crypto_bot.lazy_exports`): importing the package costs nothing.
"""

from crypto_bot.lazy_exports import lazy_exports

_EXPORTS = {
    "FEATURE_NAMES": "indicators",
    "IndicatorSnapshot": "indicators",
    "adx": "indicators",
    "analyse_latest": "indicators",
    "atr": "indicators",
    "bollinger_width": "indicators",
    "compute_indicators": "indicators",
    "ema": "indicators",
    "feature_frame": "indicators",
    "feature_matrix": "indicators",
    "rsi": "indicators",
    "PluginBuildError": "plugin",
    "PluginLoadError": "plugin",
    "PluginSpec": "plugin",
    "StrategyPlugin": "plugin",
    "StrategyRuntime": "plugin",
    "build_plugin": "plugin",
    "load_plugin": "plugin",
    "load_plugin_class": "plugin",
    "PluginHost": "plugin_host",
    "Regime": "regime",
    "classify_regime": "regime",
    "ANALYSIS_CANDLES": "warmup",
    "analysis_candles": "warmup",
    "required_candles": "warmup",
    "ModelLoadError": "signal_model",
    "SignalModel": "signal_model",
    "ensure_model": "signal_model",
    "labelled_rows": "signal_model",
    "load_model": "signal_model",
    "predict_up_probability": "signal_model",
    "save_model": "signal_model",
    "train_signal_model": "signal_model",
    "up_probabilities": "signal_model",
    "SIDES": "signals",
    "Side": "signals",
    "Signal": "signals",
    "builtin_score": "signals",
    "entry_signal": "signals",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
