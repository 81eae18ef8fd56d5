"""An ever-growing list of fills: each fill recorded with the closes that led to it, for a report that never comes."""

from __future__ import annotations

import pandas as pd

EXPECTED = "python"
GROWING_TYPE = None


class FillsListStrategy:
    def __init__(self) -> None:
        self.fills: list[dict] = []

    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> float | None:
        frame = candles["1m"]
        self.fills.append({"symbol": symbol, "time": frame.index[-1], "context": frame["close"].tolist()})  # LEAK
        return None

    def close(self) -> None:
        self.fills.clear()


STRATEGY = FillsListStrategy
