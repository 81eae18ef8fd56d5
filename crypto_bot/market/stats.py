"""Counters of one market source: REST calls per cycle and in total, retries, failed fetches by kind.

Covers `SourceStats`, which every source owns and returns from `stats()`. The cycle boundary is
`advance()`, which the bot calls once at the end of each cycle: read `rest_calls_cycle` before it
(the cycle's calls so far) or `rest_calls_last_cycle` after it. Not covered: what a source adds
of its own (pause, clock, dropped symbols: see each source's `stats()`).
"""

from __future__ import annotations

from typing import Any

from crypto_bot.market.errors import ERROR_KINDS, MarketDataError


class SourceStats:
    """O(1) counters; `snapshot()` is a fresh dict."""

    __slots__ = ("errors", "rest_calls", "rest_calls_cycle", "rest_calls_last_cycle", "retries")

    rest_calls: int
    rest_calls_cycle: int
    rest_calls_last_cycle: int
    retries: int
    errors: dict[str, int]

    def __init__(self) -> None:
        self.rest_calls = 0
        self.rest_calls_cycle = 0
        self.rest_calls_last_cycle = 0
        self.retries = 0
        self.errors = dict.fromkeys(ERROR_KINDS, 0)

    def count_rest_call(self) -> None:
        self.rest_calls += 1
        self.rest_calls_cycle += 1

    def count_retry(self) -> None:
        self.retries += 1

    def count_error(self, error: MarketDataError) -> None:
        self.errors[error.kind] = self.errors.get(error.kind, 0) + 1

    def end_cycle(self) -> None:
        """The bot's cycle ended (the source's `advance()`)."""
        self.rest_calls_last_cycle = self.rest_calls_cycle
        self.rest_calls_cycle = 0

    def snapshot(self) -> dict[str, Any]:
        """`rest_calls` (total), `rest_calls_cycle`, `rest_calls_last_cycle`, `retries`, `errors` by kind."""
        return {
            "rest_calls": self.rest_calls,
            "rest_calls_cycle": self.rest_calls_cycle,
            "rest_calls_last_cycle": self.rest_calls_last_cycle,
            "retries": self.retries,
            "errors": dict(self.errors),
        }
