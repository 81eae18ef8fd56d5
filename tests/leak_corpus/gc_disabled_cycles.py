"""Reference cycles created with gc disabled: a strategy that turned the collector off "for latency" builds
parent <-> child nodes every cycle; the unreachable cycles are never collected."""

from __future__ import annotations

import gc

import numpy as np
import pandas as pd

from crypto_bot.strategy import StrategyRuntime

EXPECTED = "python"
GROWING_TYPE = "tests.leak_corpus.gc_disabled_cycles.Node"


class Node:
    def __init__(self, parent: Node | None, values: np.ndarray) -> None:
        self.parent = parent
        self.children: list[Node] = []
        self.values = values


class GcDisabledStrategy:
    def __init__(self) -> None:
        self._gc_was_enabled = True

    def on_start(self, runtime: StrategyRuntime) -> None:
        """Turn the collector off when the bot starts (not when built: `config check` builds and drops the class)."""
        self._gc_was_enabled = gc.isenabled()
        gc.disable()

    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> float | None:
        root = Node(None, candles["1m"].to_numpy(copy=True))  # LEAK: unreachable after return, in a cycle
        root.children.append(Node(root, root.values[-20:]))
        return float(np.sign(root.children[0].values[-1, 3] - root.values[0, 3]))

    def close(self) -> None:
        if self._gc_was_enabled:
            gc.enable()
        gc.collect()


STRATEGY = GcDisabledStrategy
