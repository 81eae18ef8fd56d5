"""Test doubles shared across test packages."""

from __future__ import annotations


class FakeClock:
    """Monotonic time that moves only when a test sets `now` or calls `advance`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
