"""A DataFrame grown by concat: a strategy appending every window it sees to its own history, never trimmed."""

from __future__ import annotations

import pandas as pd

EXPECTED = "python"
GROWING_TYPE = None


class ConcatStrategy:
    def __init__(self) -> None:
        self.history: dict[str, pd.DataFrame] = {}

    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> float | None:
        recent = candles["1m"].iloc[-120:]
        previous = self.history.get(symbol)
        self.history[symbol] = recent if previous is None else pd.concat([previous, recent])  # LEAK
        return None

    def close(self) -> None:
        self.history.clear()


STRATEGY = ConcatStrategy
