"""The corpus's control: the same analysis as the leaking cases, keeping nothing between cycles."""

from __future__ import annotations

import numpy as np
import pandas as pd

EXPECTED = None
GROWING_TYPE = None


class CleanStrategy:
    """EMA crossover with a volatility filter; the only state is the last score per symbol (bounded)."""

    def __init__(self) -> None:
        self.last_score: dict[str, float] = {}

    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> float | None:
        close = candles["1m"]["close"]
        fast, slow = close.ewm(span=12).mean(), close.ewm(span=26).mean()
        volatility = candles["5m"]["close"].pct_change().rolling(20).std().iloc[-1]
        score = float(np.tanh((fast.iloc[-1] - slow.iloc[-1]) / (slow.iloc[-1] * max(volatility, 1e-6))))
        self.last_score[symbol] = score
        return score

    def close(self) -> None:
        self.last_score.clear()


STRATEGY = CleanStrategy
