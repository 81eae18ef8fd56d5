"""What a CSV replay costs: CsvMarket's streaming window against reading the whole file with numpy.

Both read the same generated 1m file to its last candle; CsvMarket keeps a 300-candle window (the
default `strategy.history_candles`), `np.loadtxt` holds every row (what the replay did before).
Memory is the tracemalloc peak during the read, as a share of the file's size; time is one read
without tracemalloc. Run: .venv/bin/python bench/bench_csv.py [rows]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from crypto_bot.market import CsvMarket, csv_file_name

START_MS = 1_704_067_200_000
MINUTE_MS = 60_000
WINDOW_CANDLES = 300


def write_candles(directory: Path, rows: int) -> Path:
    path = directory / csv_file_name("BTC/USDT", "1m")
    with path.open("w", encoding="utf-8") as handle:
        handle.write("timestamp,open,high,low,close,volume\n")
        for index in range(rows):
            close = 100 + index % 500
            handle.write(f"{START_MS + index * MINUTE_MS},{close - 0.5},{close + 1},{close - 1},{close},{10 + index}\n")
    return path


def measured(read: Callable[[], object]) -> tuple[float, int]:
    """(seconds of one read, tracemalloc peak bytes of another)."""
    started = time.perf_counter()
    read()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    try:
        read()
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seconds, peak_bytes


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory(prefix="bench-csv-") as name:
        directory = Path(name)
        path = write_candles(directory, rows)
        file_bytes = path.stat().st_size

        def streaming() -> object:
            market = CsvMarket(directory, start_ms=START_MS + rows * MINUTE_MS, window_candles=WINDOW_CANDLES)
            return asyncio.run(market.fetch_ohlcv("BTC/USDT", "1m", limit=WINDOW_CANDLES))

        def whole_file() -> object:
            return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)

        streaming()  # first-use allocations (pandas, the event loop) are not the read's
        print(f"{rows:,} rows, {file_bytes / 2**20:.1f} MiB; window {WINDOW_CANDLES} candles")
        print(f"{'reader':<34} {'seconds':>8} {'peak KiB':>10} {'peak / file':>12}")
        for label, read in (
            (f"CsvMarket (window {WINDOW_CANDLES})", streaming),
            ("np.loadtxt (whole file)", whole_file),
        ):
            seconds, peak_bytes = measured(read)
            print(f"{label:<34} {seconds:>8.2f} {peak_bytes / 1024:>10.1f} {peak_bytes / file_bytes:>12.4f}")


if __name__ == "__main__":
    main()
