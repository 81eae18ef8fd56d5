"""How many candles the analysis needs: the indicators' periods and warm-up, the window it reads, the model's
minimum of labelled rows.

Plain arithmetic apart from the indicators themselves (`indicators`, which import pandas): the config
check reads these rules without loading the analysis stack.
"""

from __future__ import annotations

DEFAULT_FAST_SPAN = 12
DEFAULT_SLOW_SPAN = 26
RSI_PERIOD = 14
ATR_PERIOD = 14
ADX_PERIOD = 14
BOLLINGER_PERIOD = 20
VOLATILITY_WINDOW = 20
RETURN_LAGS = (1, 5, 10)
ANALYSIS_CANDLES = 300  # the recent candles the indicators and the model look at (more if the EMA spans need them)
MIN_TRAINING_ROWS = 200  # labelled candles the signal model is trained on, at least


def required_candles(*, fast: int = DEFAULT_FAST_SPAN, slow: int = DEFAULT_SLOW_SPAN) -> int:
    """Candles needed before every indicator and feature is defined at the latest candle."""
    return max(
        fast,
        slow,
        RSI_PERIOD + 1,
        ATR_PERIOD,
        2 * ADX_PERIOD,
        BOLLINGER_PERIOD,
        VOLATILITY_WINDOW + 1,
        max(RETURN_LAGS) + 1,
    )


def analysis_candles(*, fast: int = DEFAULT_FAST_SPAN, slow: int = DEFAULT_SLOW_SPAN) -> int:
    """How many recent candles the analysis reads: ANALYSIS_CANDLES, or more when the EMA spans need them.

    Wilder's averages are recursive, so a value depends on where its window starts: the built-in
    strategy and the bot's ATR for sizing read the same window.
    """
    return max(ANALYSIS_CANDLES, required_candles(fast=fast, slow=slow))
