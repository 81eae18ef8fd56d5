"""CsvMarket: replay of real CSV files with a stepping clock, read forward keeping only a window, precise errors."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crypto_bot.market import (
    BadData,
    CsvFileError,
    CsvFormatError,
    CsvMarket,
    MarketDataError,
    MarketDataSource,
    UnknownSymbol,
    csv_file_name,
)

START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MINUTE_MS = 60_000
HEADER = "timestamp,open,high,low,close,volume\n"


def candle_rows(count: int, *, step_ms: int = MINUTE_MS, first_ms: int = START_MS) -> list[str]:
    """Valid rows whose close is 100 + index, so each candle is recognisable."""
    rows = []
    for index in range(count):
        close = 100 + index
        rows.append(f"{first_ms + index * step_ms},{close - 0.5},{close + 1},{close - 1},{close},{10 + index}\n")
    return rows


def write_csv(directory: Path, symbol: str, timeframe: str, rows: list[str], *, header: bool = True) -> Path:
    path = directory / csv_file_name(symbol, timeframe)
    path.write_text((HEADER if header else "") + "".join(rows), encoding="utf-8")
    return path


def fetch(market: CsvMarket, symbol: str = "BTC/USDT", timeframe: str = "1m", **kwargs) -> pd.DataFrame:
    return asyncio.run(market.fetch_ohlcv(symbol, timeframe, **kwargs))


def closes(frame: pd.DataFrame) -> list[float]:
    return frame["close"].tolist()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    write_csv(tmp_path, "BTC/USDT", "1m", candle_rows(30))
    write_csv(tmp_path, "ETH/USDT", "1m", candle_rows(30), header=False)
    write_csv(tmp_path, "BTC/USDT", "5m", candle_rows(6, step_ms=5 * MINUTE_MS))
    (tmp_path / "notes.txt").write_text("not market data\n")
    write_csv(tmp_path, "SOL/USDT", "1h", candle_rows(2, step_ms=60 * MINUTE_MS))
    return tmp_path


@pytest.fixture
def market(data_dir: Path) -> CsvMarket:
    return CsvMarket(data_dir, timeframes=("1m", "5m"), warmup_candles=3)


def test_satisfies_the_market_data_source_protocol(market):
    assert isinstance(market, MarketDataSource)


def test_file_name_joins_base_quote_and_timeframe():
    assert csv_file_name("BTC/USDT", "1m") == "BTC_USDT-1m.csv"


def test_universe_lists_symbols_with_a_base_timeframe_file(market):
    assert market.universe() == ["BTC/USDT", "ETH/USDT"]


def test_clock_starts_once_warmup_candles_have_closed(market):
    assert market.now_ms == START_MS + 3 * MINUTE_MS
    assert closes(fetch(market)) == [100, 101, 102]


def test_replayed_rows_keep_their_values_and_times(market):
    frame = fetch(market, limit=1)
    assert frame.index[0] == pd.Timestamp(START_MS + 2 * MINUTE_MS, unit="ms", tz="UTC")
    assert frame.iloc[0].tolist() == [101.5, 103.0, 101.0, 102.0, 12.0]
    assert frame.index.name == "timestamp"
    assert all(dtype == np.float64 for dtype in frame.dtypes)


def test_files_with_and_without_header_replay_alike(market):
    pd.testing.assert_frame_equal(fetch(market, "BTC/USDT"), fetch(market, "ETH/USDT"))


def test_advance_reveals_one_more_base_candle(market):
    market.advance()
    assert market.now_ms == START_MS + 4 * MINUTE_MS
    assert closes(fetch(market, limit=2)) == [102, 103]


def test_higher_timeframe_candle_appears_only_once_closed(market):
    assert fetch(market, timeframe="5m").empty
    market.advance()
    assert fetch(market, timeframe="5m").empty
    market.advance()
    assert closes(fetch(market, timeframe="5m")) == [100]


def test_since_pages_forward_from_the_given_time(market):
    for _ in range(10):
        market.advance()
    assert closes(fetch(market, since_ms=START_MS + 4 * MINUTE_MS, limit=3)) == [104, 105, 106]


def test_replay_past_the_last_row_keeps_returning_the_last_candles(data_dir):
    market = CsvMarket(data_dir, start_ms=START_MS + 100 * MINUTE_MS)
    assert closes(fetch(market, limit=2)) == [128, 129]


def test_explicit_start_ms_sets_the_clock(data_dir):
    market = CsvMarket(data_dir, start_ms=START_MS + 10 * MINUTE_MS)
    assert closes(fetch(market, limit=1)) == [109]


def test_gaps_in_the_data_are_kept(tmp_path):
    rows = candle_rows(5)
    write_csv(tmp_path, "BTC/USDT", "1m", rows[:2] + rows[4:])
    market = CsvMarket(tmp_path, warmup_candles=5)
    assert closes(fetch(market)) == [100, 101, 104]


def test_rows_already_read_are_never_read_again(data_dir, market):
    fetch(market)
    path = data_dir / "BTC_USDT-1m.csv"
    rows = candle_rows(30)
    rewritten = [row.replace(f",{100 + i}.", f",{900 + i}.").replace(f",{100 + i},", f",{900 + i},") for i, row in enumerate(rows[:3])]
    assert [len(row) for row in rewritten] == [len(row) for row in rows[:3]]
    path.write_text(HEADER + "".join(rewritten + rows[3:]), encoding="utf-8")
    market.advance()
    assert closes(fetch(market, limit=4)) == [100, 101, 102, 103]


def test_a_file_removed_during_the_replay_is_an_error_naming_it(data_dir, market):
    fetch(market)
    path = data_dir / "BTC_USDT-1m.csv"
    path.unlink()
    market.advance()
    with pytest.raises(CsvFileError, match=f"{path}: cannot be read: No such file"):
        fetch(market)


def test_loaded_bytes_counts_the_candles_kept(market):
    assert market.loaded_bytes == 0
    fetch(market)
    assert market.loaded_bytes == 3 * (8 + 5 * 8)  # the three candles closed at the start, nothing read ahead


def test_only_the_newest_window_candles_are_kept(data_dir):
    market = CsvMarket(data_dir, start_ms=START_MS + 20 * MINUTE_MS, window_candles=5)
    assert closes(fetch(market, limit=10)) == [115, 116, 117, 118, 119]
    assert market.loaded_bytes == 5 * (8 + 5 * 8)
    for _ in range(7):
        market.advance()
    assert closes(fetch(market, limit=10)) == [122, 123, 124, 125, 126]


def test_since_before_the_window_gets_the_oldest_candles_kept(data_dir):
    market = CsvMarket(data_dir, start_ms=START_MS + 20 * MINUTE_MS, window_candles=5)
    assert closes(fetch(market, since_ms=START_MS, limit=2)) == [115, 116]


def peak_bytes_of_reading(directory: Path, rows: int) -> tuple[int, int]:
    """(tracemalloc peak while the clock's first fetch streams through a `rows`-row file, the file's size)."""
    directory.mkdir()
    path = write_csv(directory, "BTC/USDT", "1m", candle_rows(rows))
    market = CsvMarket(directory, start_ms=START_MS + rows * MINUTE_MS, window_candles=300)
    tracemalloc.start()
    try:
        frame = fetch(market, limit=300)  # reads every row of the file to reach the clock
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert closes(frame)[-1] == 100 + rows - 1 and len(frame) == min(rows, 300)
    return peak_bytes, path.stat().st_size


def test_reading_a_large_file_costs_its_window_not_its_size(tmp_path):
    peak_bytes_of_reading(tmp_path / "warm-up", 10)  # first-use allocations (pandas, the event loop) not counted
    window_peak_bytes, window_file_bytes = peak_bytes_of_reading(tmp_path / "window", 1_000)
    large_peak_bytes, large_file_bytes = peak_bytes_of_reading(tmp_path / "large", 100_000)
    assert large_file_bytes > 90 * window_file_bytes
    # A hundred times the rows, the same window: about the same peak (reading it whole held ~2x the file).
    assert large_peak_bytes < 1.5 * window_peak_bytes, (large_peak_bytes, window_peak_bytes)
    assert large_peak_bytes < large_file_bytes / 10, (large_peak_bytes, large_file_bytes)


def test_a_file_that_is_not_utf8_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / csv_file_name("BTC/USDT", "1m")
    path.write_bytes(HEADER.encode() + "".join(candle_rows(2)).encode() + b"1704067320000,1,2,0.5,1.5,3\xff\n")
    market = CsvMarket(tmp_path, start_ms=START_MS + 5 * MINUTE_MS)
    with pytest.raises(CsvFormatError, match=rf"{path}:4: not UTF-8 text \(byte 0xff\)"):
        fetch(market)


def test_empty_file_gives_an_empty_frame(tmp_path):
    write_csv(tmp_path, "BTC/USDT", "1m", candle_rows(3))
    write_csv(tmp_path, "NEW/USDT", "1m", [])
    market = CsvMarket(tmp_path)
    frame = fetch(market, "NEW/USDT")
    assert frame.empty
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]


def test_symbol_without_file_raises_key_error_naming_the_file(market):
    with pytest.raises(KeyError, match=r"DOGE_USDT-1m\.csv"):
        fetch(market, "DOGE/USDT")


def test_timeframe_without_file_raises_key_error_naming_the_file(market):
    with pytest.raises(KeyError, match=r"ETH_USDT-5m\.csv"):
        fetch(market, "ETH/USDT", "5m")


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        ("1704067500000,1,2,0.5,1.5\n", "expected 6 fields, got 5"),
        ("1704067500000,1,2,abc,1.5,3\n", "field 4 is not a number: 'abc'"),
        ("1704067500000,1,2,0.5,nan,3\n", "non-finite value"),
        ("1704067500001,1,2,0.5,1.5,3\n", "not a multiple of the timeframe"),
        (f"{START_MS},1,2,0.5,1.5,3\n", "not after the previous row's"),
        ("1704067500000,1,1.2,0.5,1.5,3\n", "high/low do not enclose open and close"),
        ("1704067500000,1,2,1.2,1.5,3\n", "high/low do not enclose open and close"),
        ("1704067500000,1,2,0.5,1.5,-3\n", "negative volume"),
        ("1704067500000,0,2,0,1.5,3\n", "non-positive price"),
    ],
)
def test_malformed_row_raises_error_naming_file_and_line(tmp_path, bad_row, reason):
    path = write_csv(
        tmp_path, "BTC/USDT", "1m", [*candle_rows(5), "\n", bad_row, *candle_rows(1, first_ms=START_MS + 9 * MINUTE_MS)]
    )
    market = CsvMarket(tmp_path, start_ms=START_MS + 20 * MINUTE_MS)
    with pytest.raises(CsvFormatError, match=reason) as error:
        fetch(market)
    assert error.value.line_number == 8
    assert str(error.value).startswith(f"{path}:8: ")


def test_bad_first_timestamp_is_reported_when_finding_the_start(tmp_path):
    path = write_csv(tmp_path, "BTC/USDT", "1m", ["soon,1,2,0.5,1.5,3\n"])
    with pytest.raises(CsvFormatError, match=f"{path}:2: field 1 is not a number: 'soon'"):
        CsvMarket(tmp_path)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: fetch(m, timeframe="1h"), "timeframe must be one of 1m, 5m for this source"),
        (lambda m: fetch(m, timeframe="7m"), "timeframe must be one of 1m, 5m, 15m, 1h, 4h, 1d"),
        (lambda m: fetch(m, limit=-5), "limit must be an int in 1..5000"),
        (lambda m: fetch(m, since_ms="yesterday"), "since_ms must be None or an int >= 0"),
        (lambda m: fetch(m, "btc-usdt"), "symbol must look like"),
    ],
)
def test_invalid_fetch_arguments_raise_value_error(market, call, message):
    with pytest.raises(ValueError, match=message):
        call(market)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeframes": ()}, "timeframes must name at least one timeframe"),
        ({"timeframes": ("2h",)}, "timeframe must be one of"),
        ({"start_ms": START_MS + 1}, "start_ms must be a multiple of base_timeframe '1m'"),
        ({"start_ms": -60_000}, "start_ms must be an integer >= 0"),
        ({"warmup_candles": -1}, "warmup_candles must be an integer >= 0"),
        ({"window_candles": 0}, "window_candles must be an integer in \\[1, 5000\\]"),
        ({"timeframes": ("1m",), "base_timeframe": "5m"}, "multiples of base_timeframe '5m'"),
    ],
)
def test_invalid_constructor_arguments_raise_value_error(data_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CsvMarket(data_dir, **kwargs)


def test_missing_directory_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="directory must be an existing directory"):
        CsvMarket(tmp_path / "absent")


def test_directory_without_base_candles_needs_an_explicit_start(tmp_path):
    with pytest.raises(ValueError, match=r"no candles for base timeframe '1m'.*pass start_ms"):
        CsvMarket(tmp_path)


def test_close_drops_loaded_data_and_later_fetches_raise(market):
    fetch(market)
    asyncio.run(market.close())
    asyncio.run(market.close())
    assert market.loaded_bytes == 0
    with pytest.raises(RuntimeError, match="closed"):
        fetch(market)


def test_a_bad_row_is_that_symbols_error_and_the_other_symbols_replay_on(tmp_path, caplog):
    broken = write_csv(tmp_path, "BTC/USDT", "1m", [*candle_rows(5), "1704067500000,1,2,0.5,1.5,-3\n"])
    write_csv(tmp_path, "ETH/USDT", "1m", candle_rows(30))
    market = CsvMarket(tmp_path, start_ms=START_MS + 3 * MINUTE_MS)
    assert closes(fetch(market, "BTC/USDT", limit=3)) == [100, 101, 102]
    for _ in range(5):
        market.advance()
    with pytest.raises(CsvFormatError, match=f"{broken}:7: negative volume") as error:
        fetch(market, "BTC/USDT")
    assert isinstance(error.value, BadData) and isinstance(error.value, MarketDataError)
    assert (error.value.symbol, error.value.timeframe, error.value.kind) == ("BTC/USDT", "1m", "bad_data")
    assert market.universe() == ["ETH/USDT"]
    assert closes(fetch(market, "ETH/USDT", limit=2)) == [106, 107]
    assert [r.getMessage() for r in caplog.records if "leaves the universe" in r.getMessage()] == [
        f"CSV replay: BTC/USDT leaves the universe, its other symbols replay on: {broken}:7: negative volume"
    ]


def test_a_broken_series_raises_its_error_again_without_reading_the_file(tmp_path):
    broken = write_csv(tmp_path, "BTC/USDT", "1m", [*candle_rows(2), "1704067320000,1,2,0.5,1.5,-3\n"])
    write_csv(tmp_path, "ETH/USDT", "1m", candle_rows(30))
    market = CsvMarket(tmp_path, start_ms=START_MS + 10 * MINUTE_MS)
    with pytest.raises(CsvFormatError) as first:
        fetch(market, "BTC/USDT")
    broken.unlink()
    market.advance()
    with pytest.raises(CsvFormatError) as second:
        fetch(market, "BTC/USDT")
    assert second.value is first.value
    stats = market.stats()
    assert stats["errors"]["bad_data"] == 2
    assert stats["dropped_symbols"] == {"BTC/USDT": str(first.value)}
    assert stats["rest_calls"] == 0


def test_a_broken_higher_timeframe_leaves_the_symbols_base_candles_readable(data_dir):
    write_csv(data_dir, "BTC/USDT", "5m", ["1704067200000,1,2,0.5,1.5,-3\n"])
    market = CsvMarket(data_dir, timeframes=("1m", "5m"), warmup_candles=10)
    with pytest.raises(CsvFormatError):
        fetch(market, "BTC/USDT", "5m")
    assert market.universe() == ["ETH/USDT"]
    assert len(fetch(market, "BTC/USDT", "1m", limit=3)) == 3  # exits of a held position still have prices


def test_a_base_file_whose_first_candle_is_broken_is_dropped_at_start_when_others_remain(tmp_path):
    write_csv(tmp_path, "BTC/USDT", "1m", ["soon,1,2,0.5,1.5,3\n"])
    write_csv(tmp_path, "ETH/USDT", "1m", candle_rows(30))
    market = CsvMarket(tmp_path, warmup_candles=3)
    assert market.universe() == ["ETH/USDT"]
    assert closes(fetch(market, "ETH/USDT")) == [100, 101, 102]
    with pytest.raises(CsvFormatError, match="field 1 is not a number: 'soon'"):
        fetch(market, "BTC/USDT")


def test_a_missing_file_is_an_unknown_symbol(market):
    with pytest.raises(UnknownSymbol, match=r"DOGE_USDT-1m\.csv") as error:
        fetch(market, "DOGE/USDT")
    assert error.value.kind == "bad_symbol"
    assert market.stats()["errors"]["bad_symbol"] == 1


def test_advance_ends_the_stats_cycle(market):
    fetch(market)
    market.advance()
    assert market.stats()["rest_calls_cycle"] == 0 and market.stats()["rest_calls_last_cycle"] == 0
