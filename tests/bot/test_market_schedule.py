"""refresh_request: fetch a series only when one of its candles closed, and only what closed."""

from __future__ import annotations

import pytest

from crypto_bot.market import FetchRequest, candles_closed_after, refresh_request

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
T = 1_704_067_200_000  # 2024-01-01T00:00Z


@pytest.mark.parametrize(
    ("now_ms", "closed"),
    [(T + 60_000, 0), (T + 2 * 60_000 - 1, 0), (T + 2 * 60_000, 1), (T + 10 * 60_000 + 30_000, 9), (T, 0), (T - 1, 0)],
)
def test_candles_closed_after_the_last_held_count_whole_candles(now_ms, closed):
    assert candles_closed_after(now_ms, "1m", T) == closed


def test_a_series_never_fetched_asks_for_the_newest_window():
    assert refresh_request(T, "1h", None, 300) == FetchRequest(None, 300)


def test_nothing_is_fetched_until_the_next_candle_closes():
    held = T - HOUR_MS  # the 23:00 candle, closed at 00:00
    assert refresh_request(T + 59 * MINUTE_MS, "1h", held, 300) is None
    assert refresh_request(T + HOUR_MS, "1h", held, 300) == FetchRequest(T, 1)


def test_only_the_candles_since_the_last_held_are_asked_for():
    assert refresh_request(T + 7 * MINUTE_MS + 5_000, "1m", T, 300) == FetchRequest(T + MINUTE_MS, 6)


def test_after_a_whole_window_closed_the_newest_window_replaces_it():
    assert refresh_request(T + 400 * MINUTE_MS, "1m", T, 300) == FetchRequest(None, 300)
