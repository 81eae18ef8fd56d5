"""`functools.lru_cache` on a method: keyed by (self, symbol, candle time), so every cycle adds entries and nothing is evicted."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

EXPECTED = "python"
GROWING_TYPE = None


class LruCacheStrategy:
    def __init__(self) -> None:
        self._latest: dict[str, pd.DataFrame] = {}

    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> float | None:
        self._latest[symbol] = candles["1m"]
        zscores = self.zscores(symbol, candles["1m"].index[-1])
        return float(np.clip(zscores[-1, 3], -1, 1))

    @functools.lru_cache(maxsize=None)  # noqa: B019 - the leak this case is about
    def zscores(self, symbol: str, last_time: pd.Timestamp) -> np.ndarray:
        frame = self._latest[symbol]
        return ((frame - frame.mean()) / frame.std()).to_numpy()  # LEAK: the cache keeps every result

    def close(self) -> None:
        self.zscores.cache_clear()
        self._latest.clear()


STRATEGY = LruCacheStrategy
