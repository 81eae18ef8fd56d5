"""A session/cookie-jar style dict per request: an HTTP-client-like session that remembers every response it got."""

from __future__ import annotations

import itertools

import pandas as pd

EXPECTED = "python"
GROWING_TYPE = "dict"

HEADERS = {"user-agent": "corpus/1.0", "accept": "application/json", "cookie": "session=abc"}


class Session:
    """Keeps one record per request, keyed by a request id that never repeats (a cookie jar that only grows)."""

    def __init__(self) -> None:
        self.jar: dict[int, dict] = {}
        self._ids = itertools.count()

    def get(self, url: str, frame: pd.DataFrame) -> str:
        request_id = next(self._ids)
        body = frame["close"].to_json(date_format="iso")
        self.jar[request_id] = {"url": url, "status": 200, "headers": dict(HEADERS), "body": body + " "}  # LEAK
        return body


class SessionStrategy:
    def __init__(self) -> None:
        self.session = Session()

    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> float | None:
        self.session.get(f"https://api.example/ticker/{symbol}", candles["1m"])
        return None

    def close(self) -> None:
        self.session.jar.clear()


STRATEGY = SessionStrategy
