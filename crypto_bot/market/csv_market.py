"""Replay of OHLCV CSV files as a market: one file per symbol and timeframe, stepped by a replay clock.

Covers `CsvMarket` and its file format. Does not cover downloading data or live exchanges
(`ccxt_market`); the frame layout and window rule live in `source`.

File layout: `<directory>/<BASE>_<QUOTE>-<timeframe>.csv`, e.g. `BTC_USDT-1m.csv` for "BTC/USDT"
at "1m". Each row is `timestamp_ms,open,high,low,close,volume` with the candle's open time in epoch
milliseconds, rows in strictly increasing time, each timestamp a multiple of the timeframe, UTF-8
text. An optional header line (first field not a number) is skipped; blank lines are ignored; gaps
are allowed. Any other deviation (wrong field count, non-numbers, unordered or unaligned timestamps,
a candle that breaks `candles.candle_problem`: non-finite values, a price <= 0, high/low not
enclosing open and close, negative volume; bytes that are not UTF-8) raises `CsvFormatError` naming
the file and line; a file that cannot be read raises `CsvFileError` naming it.

A broken file is that symbol's error, not the replay's: the fetch of that series raises it (a
`BadData`, so a `MarketDataError`), every later fetch of it raises the same error without reading
the file again, and the symbol leaves `universe()` with one warning; the other symbols, and the
symbol's other timeframes, replay on. At construction a base file whose first candle cannot be read
is dropped the same way, unless every base file is broken (then its error is raised).

Input costs its window, not its size: each file is read forward, lazily, as the replay clock
reveals its candles, and only the newest `window_candles` candles are kept (two numpy arrays,
compacted in place). A 500 MB file costs what its window costs; rows are parsed and checked once,
when the clock reaches them, and never read again. A fetch reaching further back than the window
gets the oldest candles kept. The universe is the symbols with a file for the base timeframe.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crypto_bot.market.candles import candle_problem
from crypto_bot.market.csv_files import csv_file_name, csv_symbols
from crypto_bot.market.errors import BadData, MarketDataError, UnknownSymbol
from crypto_bot.market.source import OHLCV_COLUMNS, ohlcv_frame, visible_slice
from crypto_bot.market.stats import SourceStats
from crypto_bot.market.timeframes import MAX_LIMIT, checked_fetch, timeframe_ms, validate_timeframes
from crypto_bot.memory import validation

logger = logging.getLogger(__name__)

DEFAULT_WARMUP_CANDLES = 200
"""Without `start_ms`, the clock starts when this many base candles have closed."""

_FIELD_COUNT = 1 + len(OHLCV_COLUMNS)
_ROW_BYTES = 8 * _FIELD_COUNT  # one candle in the window: an int64 open time and five float64 values
_FIRST_CAPACITY = 64  # candles a window's arrays start with; they double up to twice the window


class CsvFileError(BadData):
    """A CSV file that cannot be read, or (CsvFormatError) does not follow the layout; names the file and line."""

    def __init__(
        self, path: Path, line_number: int, reason: str, *, symbol: str | None = None, timeframe: str | None = None
    ) -> None:
        message = f"{path}:{line_number}: {reason}" if line_number else f"{path}: {reason}"
        super().__init__(message, symbol=symbol, timeframe=timeframe)
        self.path = path
        self.line_number = line_number


class CsvFormatError(CsvFileError):
    """A CSV file that does not follow the documented layout; names the file and line."""


class _SeriesReader:
    """One file read forward as the clock reveals its candles, keeping only the newest `window` of them.

    The kept candles are `_open_ms[_start:_end]` and `_values[_start:_end]`; the arrays hold at most
    twice the window, and when full the window is moved to their front (amortised O(1) per row).
    `_offset` and `_line_number` are where reading resumes: a row that fails its checks is read
    again, and fails again, at the next fetch.
    """

    __slots__ = (
        "_end",
        "_exhausted",
        "_last_open_ms",
        "_length_ms",
        "_line_number",
        "_offset",
        "_open_ms",
        "_pending",
        "_start",
        "_values",
        "_window",
        "path",
        "symbol",
        "timeframe",
    )

    path: Path
    symbol: str
    timeframe: str
    _length_ms: int
    _window: int
    _offset: int
    _line_number: int
    _pending: tuple[int, list[float]] | None
    _last_open_ms: int | None
    _exhausted: bool
    _open_ms: np.ndarray
    _values: np.ndarray
    _start: int
    _end: int

    def __init__(self, path: Path, symbol: str, timeframe: str, window: int) -> None:
        self.path = path
        self.symbol = symbol
        self.timeframe = timeframe
        self._length_ms = timeframe_ms(timeframe)
        self._window = window
        self._offset = 0
        self._line_number = 0
        self._pending = None  # the next row, read but not yet closed at the clock
        self._last_open_ms = None
        self._exhausted = False
        capacity = min(_FIRST_CAPACITY, 2 * window)
        self._open_ms = np.empty(capacity, dtype=np.int64)
        self._values = np.empty((capacity, len(OHLCV_COLUMNS)), dtype=np.float64)
        self._start = self._end = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the candles kept."""
        return (self._end - self._start) * _ROW_BYTES

    def candles(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept open times and OHLCV rows, oldest first (views: copy before keeping them)."""
        return self._open_ms[self._start : self._end], self._values[self._start : self._end]

    def first_open_ms(self) -> int | None:
        """Open time of the file's first candle (read, not yet kept), or None for a file without candles."""
        self._read(newest_open_ms=-math.inf)
        return None if self._pending is None else self._pending[0]

    def catch_up(self, now_ms: int) -> None:
        """Keep every candle closed by `now_ms` (open + length <= now_ms), reading on from where the last call stopped."""
        self._read(newest_open_ms=now_ms - self._length_ms)

    def _read(self, newest_open_ms: float) -> None:
        """Keep the rows that open at or before `newest_open_ms`; the first later one becomes the pending row."""
        if self._pending is not None:
            if self._pending[0] > newest_open_ms:
                return
            self._keep(*self._pending)
            self._pending = None
        if self._exhausted:
            return
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                for raw in handle:
                    row = self._parse(raw, self._line_number + 1)
                    self._offset += len(raw)  # only past a line that passed its checks
                    self._line_number += 1
                    if row is None:
                        continue
                    self._last_open_ms = row[0]
                    if row[0] > newest_open_ms:
                        self._pending = row
                        return
                    self._keep(*row)
        except OSError as error:
            raise self._error(CsvFileError, 0, f"cannot be read: {error.strerror or error}") from error
        self._exhausted = True

    def _parse(self, raw: bytes, line_number: int) -> tuple[int, list[float]] | None:
        """(open ms, [o, h, l, c, v]) of one line; None for a blank or header line; CsvFormatError otherwise."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            reason = f"not UTF-8 text (byte {raw[error.start]:#04x}); save the file as UTF-8"
            raise self._error(CsvFormatError, line_number, reason) from None
        if not text.strip():
            return None
        fields = text.split(",")
        if line_number == 1 and fields[0].strip() and not _is_number(fields[0]):
            return None  # a header: its first field is text
        if len(fields) != _FIELD_COUNT:
            raise self._error(CsvFormatError, line_number, f"expected {_FIELD_COUNT} fields, got {len(fields)}")
        try:
            numbers = list(map(float, fields))
        except ValueError:
            position, field = next((i, f) for i, f in enumerate(fields, start=1) if not _is_number(f))
            raise self._error(CsvFormatError, line_number, f"field {position} is not a number: {field.strip()!r}") from None
        reason = self._broken_rule(numbers)
        if reason is not None:
            raise self._error(CsvFormatError, line_number, reason)
        return int(numbers[0]), numbers[1:]

    def _broken_rule(self, numbers: list[float]) -> str | None:
        timestamp = numbers[0]
        if not math.isfinite(timestamp):
            return "non-finite value"
        if timestamp % self._length_ms:
            return f"timestamp is not a multiple of the timeframe ({self._length_ms} ms)"
        if self._last_open_ms is not None and timestamp <= self._last_open_ms:
            return "timestamp is not after the previous row's"
        return candle_problem(*numbers[1:])

    def _error(self, kind: type[CsvFileError], line_number: int, reason: str) -> CsvFileError:
        return kind(self.path, line_number, reason, symbol=self.symbol, timeframe=self.timeframe)

    def _keep(self, open_ms: int, values: list[float]) -> None:
        if self._end == len(self._open_ms):
            kept = self._end - self._start
            if len(self._open_ms) < 2 * self._window:
                capacity = min(2 * len(self._open_ms), 2 * self._window)
                self._open_ms = np.concatenate([self._open_ms[self._start : self._end], np.empty(capacity - kept, np.int64)])
                self._values = np.concatenate(
                    [self._values[self._start : self._end], np.empty((capacity - kept, len(OHLCV_COLUMNS)))]
                )
            else:  # full at twice the window: move the window to the front
                self._open_ms[:kept] = self._open_ms[self._start : self._end]
                self._values[:kept] = self._values[self._start : self._end]
            self._start, self._end = 0, kept
        self._open_ms[self._end] = open_ms
        self._values[self._end] = values
        self._end += 1
        if self._end - self._start > self._window:
            self._start += 1


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class CsvMarket:
    """Replays CSV candles with a clock that `advance()` moves by one base candle."""

    __slots__ = (
        "_base_ms",
        "_broken",
        "_closed",
        "_directory",
        "_dropped",
        "_elapsed_candles",
        "_readers",
        "_start_ms",
        "_stats",
        "_symbols",
        "_timeframes",
        "_window_candles",
        "name",
    )

    name: str
    _directory: Path
    _timeframes: tuple[str, ...]
    _base_ms: int
    _symbols: tuple[str, ...]
    _start_ms: int
    _elapsed_candles: int
    _window_candles: int
    _readers: dict[tuple[str, str], _SeriesReader]
    _broken: dict[tuple[str, str], CsvFileError]
    _dropped: dict[str, str]
    _stats: SourceStats
    _closed: bool

    def __init__(
        self,
        directory: str | Path,
        *,
        timeframes: Iterable[str] = ("1m",),
        base_timeframe: str | None = None,
        start_ms: int | None = None,
        warmup_candles: int = DEFAULT_WARMUP_CANDLES,
        window_candles: int = MAX_LIMIT,
    ) -> None:
        """`base_timeframe` defaults to the smallest of `timeframes`; `start_ms` to the earliest
        base candle plus `warmup_candles` base candles (read from the first line of each file).
        `window_candles` is how many of the newest candles are kept per file (the bot's window;
        by default as many as one fetch may ask for)."""
        self.name = "csv"
        self._directory = Path(directory)
        if not self._directory.is_dir():
            raise ValueError(f"directory must be an existing directory; got {str(directory)!r}")
        timeframes = tuple(timeframes)
        if base_timeframe is None:
            if not timeframes:
                raise ValueError("timeframes must name at least one timeframe; got none")
            base_timeframe = min(timeframes, key=timeframe_ms)
        self._timeframes = validate_timeframes(timeframes, base_timeframe)
        self._base_ms = timeframe_ms(base_timeframe)
        self._symbols = tuple(csv_symbols(self._directory, base_timeframe))
        self._window_candles = validation.integer("window_candles", window_candles, minimum=1, maximum=MAX_LIMIT)
        validation.integer("warmup_candles", warmup_candles, minimum=0)
        self._readers = {}  # the base files' readers are made here when they give the default start
        self._broken = {}  # series whose file broke: the error every later fetch of it raises
        self._dropped = {}
        self._stats = SourceStats()
        if start_ms is None:
            start_ms = self._default_start_ms(base_timeframe, warmup_candles)
        validation.integer("start_ms", start_ms, minimum=0)
        if start_ms % self._base_ms:
            raise ValueError(f"start_ms must be a multiple of base_timeframe {base_timeframe!r}, got {start_ms!r}")
        self._start_ms = start_ms
        self._elapsed_candles = 0
        self._closed = False
        logger.info("CSV replay of %d symbols from %s starting at %d ms", len(self._symbols), self._directory, start_ms)

    def _default_start_ms(self, base_timeframe: str, warmup_candles: int) -> int:
        first_opens_ms = []
        errors = []
        for symbol in self._symbols:
            try:
                first_ms = self._reader(symbol, base_timeframe).first_open_ms()
            except CsvFileError as error:
                errors.append(error)
                continue
            if first_ms is not None:
                first_opens_ms.append(first_ms)
        if errors and len(errors) == len(self._symbols):
            raise errors[0]  # nothing left to replay: the replay's error, not one symbol's
        for error in errors:
            self._broke(error)
        if not first_opens_ms:
            raise ValueError(
                f"directory {str(self._directory)!r} has no candles for base timeframe {base_timeframe!r} "
                f"(expected files like BTC_USDT-{base_timeframe}.csv); pass start_ms explicitly"
            )
        earliest_ms = min(first_opens_ms)
        return earliest_ms - earliest_ms % self._base_ms + warmup_candles * self._base_ms

    def __repr__(self) -> str:
        return f"CsvMarket(directory={str(self._directory)!r}, symbols={len(self._symbols)}, now_ms={self.now_ms})"

    @property
    def now_ms(self) -> int:
        """Replay clock: the start plus one base candle per `advance()`."""
        return self._start_ms + self._elapsed_candles * self._base_ms

    @property
    def timeframes(self) -> tuple[str, ...]:
        """Timeframes served, smallest (the base) first."""
        return self._timeframes

    @property
    def loaded_bytes(self) -> int:
        """Bytes of the candles kept, over every file read so far (at most window_candles per file)."""
        return sum(reader.nbytes for reader in self._readers.values())

    def universe(self) -> list[str]:
        """Symbols with a base-timeframe file, sorted, without those whose files broke."""
        return [symbol for symbol in self._symbols if symbol not in self._dropped]

    def advance(self) -> None:
        """Move the replay clock by one base candle."""
        self._elapsed_candles += 1
        self._stats.end_cycle()

    def stats(self) -> dict[str, Any]:
        """The common counters (`SourceStats.snapshot`; no REST calls) and `dropped_symbols` (symbol -> the file's error)."""
        return {**self._stats.snapshot(), "dropped_symbols": dict(self._dropped)}

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 200
    ) -> pd.DataFrame:
        """Replayed candles closed by `now_ms` (see `source` for the window rule), from the kept window."""
        if self._closed:
            raise RuntimeError("CsvMarket is closed")
        length_ms = checked_fetch(timeframe, self._timeframes, since_ms=since_ms, limit=limit)
        try:
            broken = self._broken.get((symbol, timeframe))
            if broken is not None:
                raise broken
            reader = self._reader(symbol, timeframe)
            reader.catch_up(self.now_ms)
        except CsvFileError as error:
            self._broke(error)
            raise
        except MarketDataError as error:
            self._stats.count_error(error)
            raise
        open_ms, values = reader.candles()
        rows = visible_slice(open_ms, self.now_ms, length_ms, since_ms, limit)
        return ohlcv_frame(open_ms[rows], values[rows])

    def _reader(self, symbol: str, timeframe: str) -> _SeriesReader:
        key = (symbol, timeframe)
        reader = self._readers.get(key)
        if reader is None:
            path = self._directory / csv_file_name(symbol, timeframe)
            if not path.is_file():
                raise UnknownSymbol(
                    f"no data for symbol {symbol!r} at {timeframe!r}: missing file {path}", symbol=symbol, timeframe=timeframe
                )
            reader = self._readers[key] = _SeriesReader(path, symbol, timeframe, self._window_candles)
        return reader

    def _broke(self, error: CsvFileError) -> None:
        """Remember a series' file error for its later fetches, and drop its symbol from the universe (one warning)."""
        self._stats.count_error(error)
        key = (error.symbol, error.timeframe)
        if key in self._broken:
            return
        self._broken[key] = error  # type: ignore[index]
        self._readers.pop(key, None)  # type: ignore[arg-type]
        if error.symbol is not None and error.symbol not in self._dropped:
            self._dropped[error.symbol] = error.message
            logger.warning("CSV replay: %s leaves the universe, its other symbols replay on: %s", error.symbol, error)

    async def close(self) -> None:
        """Drop the kept candles; later fetches raise RuntimeError. Safe to call twice."""
        self._readers.clear()
        self._closed = True
