"""checked_candles and candle_problem: what becomes data and what is a request's error."""

from __future__ import annotations

import numpy as np
import pytest

from crypto_bot.market import BadData, candle_problem, checked_candles

T = 1_704_067_200_000


def test_valid_rows_become_int64_opens_and_float64_values():
    opens, values = checked_candles([[T, 1, 2, 0.5, 1.5, 0], [T + 60_000, 1.5, 1.5, 1.5, 1.5, 3.0, "extra"]], what="x")
    assert opens.dtype == np.int64 and opens.tolist() == [T, T + 60_000]
    assert values.dtype == np.float64 and values.tolist() == [[1, 2, 0.5, 1.5, 0], [1.5, 1.5, 1.5, 1.5, 3.0]]


def test_an_empty_list_is_no_candles():
    opens, values = checked_candles([], what="x")
    assert opens.shape == (0,) and values.shape == (0, 5)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("<html>", "x: expected a list of candles, got str '<html>'"),
        ({"code": -1}, "x: expected a list of candles, got dict"),
        ([[T, 1, 2, 0.5, 1.5]], "x: candle 0 is not \\[open_ms, open, high, low, close, volume\\]"),
        ([[T, "1", 2, 0.5, 1.5, 1]], "x: candle 0 is not"),
        ([[T, 1, 2, 0.5, None, 1]], "x: candle 0 is not"),
        ([[T, True, 2, 0.5, 1.5, 1]], "x: candle 0 is not"),
        ([[T + 0.5, 1, 2, 0.5, 1.5, 1]], "x: candle 0 has open time .* not epoch milliseconds"),
        ([[float("nan"), 1, 2, 0.5, 1.5, 1]], "x: candle 0 has open time nan"),
        ([[T, 1, 2, 0.5, 1.5, 1], [T, 1, 2, 0.5, 1.5, 1]], "x: candle 1 opens at .* not after the previous one"),
        ([[T, 1, 2, 0.5, float("inf"), 1]], "x: candle 0 \\(open .*\\): non-finite value"),
        ([[T, 0, 2, 0.5, 1.5, 1]], "non-positive price"),
        ([[T, 1, 1.2, 0.5, 1.5, 1]], "high/low do not enclose open and close"),
        ([[T, 1, 2, 1.2, 1.5, 1]], "high/low do not enclose open and close"),
        ([[T, 1, 2, 0.5, 1.5, -1]], "negative volume"),
    ],
)
def test_a_bad_response_is_bad_data_naming_the_candle(rows, message):
    with pytest.raises(BadData, match=message):
        checked_candles(rows, what="x")


def test_bad_data_is_a_value_error_for_callers_that_catch_those():
    assert issubclass(BadData, ValueError)


def test_candle_problem_accepts_a_candle_without_trades():
    assert candle_problem(1.0, 1.0, 1.0, 1.0, 0.0) is None
