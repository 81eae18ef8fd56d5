"""Compare crypto_bot.memory.sizing.sizeof with the bytes really freed, pandas and pympler.

Truth is what tracemalloc (plus the Arrow memory pool, which tracemalloc cannot
see) reports released when the last reference to a freshly built value is
dropped and the garbage collector has run; the helper is the one the tests use.
Run: .venv/bin/python bench/bench_sizing.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow  # noqa: F401  (loaded up front so the truth includes the Arrow pool from the first case)
from pympler import asizeof

from crypto_bot.memory.sizing import sizeof

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.memory.conftest import released_bytes  # noqa: E402  (the tests' truth, shared)

ROWS = 100_000
SYMBOLS = [f"{base}/USDT" for base in ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "AVAX", "LINK")]
TIMING_REPEATS = 7


def ohlcv(dtype: type) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    index = pd.date_range("2024-01-01", periods=ROWS, freq="min")
    columns = {name: rng.random(ROWS).astype(dtype) for name in ("open", "high", "low", "close", "volume")}
    return pd.DataFrame(columns, index=index)


def repeated_symbols(dtype: str) -> pd.DataFrame:
    symbols = pd.Series([SYMBOLS[row % len(SYMBOLS)] for row in range(ROWS)], dtype=dtype)
    return pd.DataFrame({"symbol": symbols, "price": np.random.default_rng(2).random(ROWS)})


def order_ids() -> list[str]:
    return [f"order-{row:012d}" for row in range(ROWS)]


def array_view() -> np.ndarray:
    return np.random.default_rng(3).random((ROWS, 5))[:100]


def order_book() -> dict[str, list[list[float]]]:
    rng = np.random.default_rng(4)
    prices = (30_000 + rng.random(10_000) * 100).tolist()
    amounts = rng.random(10_000).tolist()
    return {
        "bids": [[prices[level], amounts[level]] for level in range(5_000)],
        "asks": [[prices[level], amounts[level]] for level in range(5_000, 10_000)],
    }


def trades() -> list[dict[str, object]]:
    rng = np.random.default_rng(5)
    prices = (30_000 + rng.random(20_000) * 100).tolist()
    amounts = rng.random(20_000).tolist()
    return [
        {
            "id": str(900_000_000 + trade),
            "price": prices[trade],
            "amount": amounts[trade],
            "side": "buy",
            "timestamp": 1_700_000_000_000 + trade,
        }
        for trade in range(20_000)
    ]


CASES: list[tuple[str, Callable[[], object]]] = [
    ("OHLCV float64 100k", lambda: ohlcv(np.float64)),
    ("OHLCV float32 100k", lambda: ohlcv(np.float32)),
    ("8 symbols object + float 100k", lambda: repeated_symbols("object")),
    ("8 symbols Arrow str + float 100k", lambda: repeated_symbols("str")),
    ("order ids object Series 100k", lambda: pd.Series(order_ids(), dtype=object)),
    ("order ids Arrow str Series 100k", lambda: pd.Series(order_ids(), dtype="str")),
    ("categorical 8 symbols 100k", lambda: pd.Series([SYMBOLS[row % 8] for row in range(ROWS)], dtype="category")),
    ("100-row view of 100k x 5", array_view),
    ("order book 2 x 5000 levels", order_book),
    ("20k trade dicts", trades),
    ("1 MB str", lambda: "x" * 1_000 * 1_000),
    ("1 MB bytes", lambda: b"x" * 1_000 * 1_000),
]


def timed_ms(function: Callable[[], object], repeats: int) -> tuple[object, float]:
    """Result of ``function`` and its median run time in milliseconds."""
    durations_ms = []
    for _ in range(repeats):
        start_seconds = time.perf_counter()
        result = function()
        durations_ms.append((time.perf_counter() - start_seconds) * 1_000)
    return result, statistics.median(durations_ms)


def pandas_deep_bytes(value: object) -> int | None:
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(deep=True, index=True).sum())
    if isinstance(value, (pd.Series, pd.Index)):
        return int(value.memory_usage(deep=True))
    return None


def pympler_result(value: object, truth_bytes: int, sizeof_ms: float) -> str:
    """pympler.asizeof's estimate, error, time and slowdown against sizeof, or why it has none."""
    try:
        pympler_bytes, pympler_ms = timed_ms(lambda: asizeof.asizeof(value), 1)
    except ValueError as error:
        return f"{'raises':>11} {type(error).__name__}: {error}"
    error = error_percent(pympler_bytes, truth_bytes)
    return f"{pympler_bytes:>11,} {error:>7} {pympler_ms:>7.2f} {pympler_ms / sizeof_ms:>7.0f}x"


def error_percent(estimate: int, truth: int) -> str:
    return f"{(estimate - truth) / truth * 100:+.1f}%"


def main() -> None:
    header = (
        f"{'case':35} {'truth B':>11} {'sizeof B':>11} {'err':>7} {'ms':>6} | {'pandas deep B':>13} {'err':>7} | "
        f"{'pympler B':>11} {'err':>7} {'ms':>7} {'x slower':>8}"
    )
    print(header)
    print("-" * len(header))
    worst_error_ratio = 0.0
    slowest_ms = 0.0
    for name, build in CASES:
        truth_bytes = released_bytes(build)
        value = build()
        estimate_bytes, sizeof_ms = timed_ms(lambda value=value: sizeof(value), TIMING_REPEATS)
        pympler_columns = pympler_result(value, truth_bytes, sizeof_ms)
        deep_bytes = pandas_deep_bytes(value)
        deep_columns = f"{'-':>13} {'-':>7}"
        if deep_bytes is not None:
            deep_columns = f"{deep_bytes:>13,} {error_percent(deep_bytes, truth_bytes):>7}"
        error = error_percent(estimate_bytes, truth_bytes)
        sizeof_columns = f"{truth_bytes:>11,} {estimate_bytes:>11,} {error:>7} {sizeof_ms:>6.3f}"
        print(f"{name:35} {sizeof_columns} | {deep_columns} | {pympler_columns}")
        worst_error_ratio = max(worst_error_ratio, abs(estimate_bytes - truth_bytes) / truth_bytes)
        slowest_ms = max(slowest_ms, sizeof_ms)
        del value
    print(
        f"\nworst sizeof error {worst_error_ratio * 100:.1f}% (target 10%), "
        f"slowest sizeof {slowest_ms:.3f} ms (target 2 ms)"
    )


if __name__ == "__main__":
    main()
