"""A listener registered every cycle: each closure keeps the history it was given, and nobody unsubscribes."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

EXPECTED = "python"
GROWING_TYPE = "function"


class EventBus:
    """What a bot's event hooks look like: callbacks by event name."""

    def __init__(self) -> None:
        self.listeners: dict[str, list[Callable]] = {}

    def subscribe(self, event: str, callback: Callable) -> None:
        self.listeners.setdefault(event, []).append(callback)


class ListenerStrategy:
    def __init__(self) -> None:
        self.bus = EventBus()

    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> float | None:
        frame = candles["1m"]
        self.bus.subscribe("fill", lambda fill, history=frame.to_numpy(copy=True): fill.price > history[-1, 3])  # LEAK
        return None

    def close(self) -> None:
        self.bus.listeners.clear()


STRATEGY = ListenerStrategy
