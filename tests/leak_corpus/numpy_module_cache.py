"""Numpy arrays held by a module-level cache: feature matrices memoised by (symbol, candle time), never evicted."""

from __future__ import annotations

import numpy as np
import pandas as pd

EXPECTED = "python"
GROWING_TYPE = None

_FEATURES: dict[tuple[str, pd.Timestamp], np.ndarray] = {}


def features(symbol: str, frame: pd.DataFrame) -> np.ndarray:
    key = (symbol, frame.index[-1])
    if key not in _FEATURES:
        close = frame["close"].to_numpy()
        _FEATURES[key] = np.column_stack([close, np.log(close), np.gradient(close), np.cumsum(close)])  # LEAK
    return _FEATURES[key]


class ModuleCacheStrategy:
    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> float | None:
        matrix = features(symbol, candles["1m"])
        return float(np.sign(matrix[-1, 2]))

    def close(self) -> None:
        _FEATURES.clear()


STRATEGY = ModuleCacheStrategy
