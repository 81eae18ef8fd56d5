"""Analysis layer: strategy plugins and their host, indicators, market regime, the ML signal model and entry signals.

The built-in strategy (`crypto_bot.strategy.builtin`) is loaded by name, as any plugin is.

Names are imported from their modules on first use (`crypto_bot.lazy_exports`): importing the package costs nothing.
"""

from crypto_bot.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "indicators": (
            "FEATURE_NAMES",
            "IndicatorSnapshot",
            "adx",
            "analyse_latest",
            "atr",
            "bollinger_width",
            "compute_indicators",
            "ema",
            "feature_frame",
            "feature_matrix",
            "rsi",
        ),
        "plugin": (
            "PluginBuildError",
            "PluginLoadError",
            "PluginSpec",
            "StrategyPlugin",
            "StrategyRuntime",
            "build_plugin",
            "load_plugin",
            "load_plugin_class",
        ),
        "plugin_host": ("PluginHost",),
        "regime": ("Regime", "classify_regime"),
        "warmup": ("ANALYSIS_CANDLES", "analysis_candles", "required_candles"),
        "signal_model": (
            "ModelLoadError",
            "SignalModel",
            "ensure_model",
            "labelled_rows",
            "load_model",
            "predict_up_probability",
            "save_model",
            "train_signal_model",
            "up_probabilities",
        ),
        "signals": ("SIDES", "Side", "Signal", "builtin_score", "entry_signal"),
    },
)
