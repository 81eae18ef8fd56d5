"""A moving-average crossover: the smallest complete crypto_bot strategy plugin.

Run it on the simulated market (paper trading):

    crypto-bot run --config examples/sma_cross.yaml --cycles 120

The bot builds `SmaCross(**strategy.params)` once and calls `signal` once per analysed symbol per
cycle with that symbol's candles per timeframe (closed candles only, copies it may modify). The
score is in [-1, 1]: > 0 asks for a long, < 0 for a short, None for nothing; it enters when
(1 + |score|) / 2 reaches strategy.min_score. Stops, targets and sizing are the bot's (risk.*).
The hooks are optional. State kept per symbol would grow with a scanner's universe: this strategy
keeps none, only two counters.
"""

from __future__ import annotations

import logging

import pandas as pd

logger = logging.getLogger(__name__)


class SmaCross:
    """Long when the fast average crosses above the slow one, short when it crosses below."""

    def __init__(self, fast: int = 10, slow: int = 30, timeframe: str = "1m") -> None:
        if not 1 <= fast < slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={fast}, slow={slow}")
        self.fast = fast
        self.slow = slow
        self.timeframe = timeframe
        self.fills = 0
        self.cycles = 0

    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> float | None:
        frame = candles.get(self.timeframe)
        if frame is None or len(frame) < self.slow + 1:
            return None
        close = frame["close"]
        gap = close.rolling(self.fast).mean() - close.rolling(self.slow).mean()
        before, now = gap.iloc[-2], gap.iloc[-1]
        if before <= 0 < now:
            direction = 1.0
        elif before >= 0 > now:
            direction = -1.0
        else:
            return None
        # A cross counts half; the other half grows with the gap it opened, up to 0.1% of the price.
        steepness = min(1.0, abs(now) / close.iloc[-1] / 0.001)
        return direction * (0.5 + 0.5 * steepness)

    def on_fill(self, fill) -> None:  # a crypto_bot.execution.Fill
        self.fills += 1
        logger.info("sma_cross: %s %s %s @ %.6g (fill %d)", fill.action, fill.side, fill.symbol, fill.price, self.fills)

    def on_cycle_end(self) -> None:
        self.cycles += 1
