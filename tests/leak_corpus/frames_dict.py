"""Frames kept per cycle in a dict: every indicator frame the strategy computed, keyed by symbol and candle time."""

from __future__ import annotations

import pandas as pd

EXPECTED = "python"
GROWING_TYPE = "pandas.DataFrame"


class FramesDictStrategy:
    def __init__(self) -> None:
        self.indicators: dict[tuple[str, pd.Timestamp], pd.DataFrame] = {}

    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> float | None:
        frame = candles["1m"]
        key = (symbol, frame.index[-1])
        self.indicators[key] = frame.rolling(20).mean()  # LEAK: one new frame per symbol per cycle, never dropped
        smoothed = self.indicators[key]["close"]
        return 1.0 if frame["close"].iloc[-1] > smoothed.iloc[-1] else -1.0

    def close(self) -> None:
        self.indicators.clear()


STRATEGY = FramesDictStrategy
