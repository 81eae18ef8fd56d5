"""A thread started per cycle and never joined: a poller per symbol per cycle, each waiting for a stop that never comes."""

from __future__ import annotations

import threading

import pandas as pd

EXPECTED = "type"
GROWING_TYPE = "threading.Thread"


class ThreadStrategy:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def _poll(self, symbol: str) -> None:
        self._stop.wait()

    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> float | None:
        poller = threading.Thread(target=self._poll, args=(symbol,), name=f"poll-{symbol}", daemon=True)  # LEAK
        poller.start()
        self.threads.append(poller)
        return None

    def close(self) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join()
        self.threads.clear()


STRATEGY = ThreadStrategy
