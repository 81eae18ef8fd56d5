"""Replay of OHLCV CSV files as a market: one file per symbol and timeframe, stepped by a replay clock.

Covers `CsvMarket` and its file format. Does not cover downloading data or live exchanges
(`ccxt_market`); the frame layout and window rule live in `source`.

File layout: `<directory>/<BASE>_<QUOTE>-<timeframe>.csv`, e.g. `BTC_USDT-1m.csv` for "BTC/USDT"
at "1m". Each row is `timestamp_ms,open,high,low,close,volume` with the candle's open time in epoch
milliseconds, rows in strictly increasing time, each timestamp a multiple of the timeframe. An
optional header line (first field not a number) is skipped; blank lines are ignored; gaps are
allowed. Any other deviation (wrong field count, non-numbers, non-finite values, unordered or
unaligned timestamps, high/low not enclosing open and close, negative volume) raises
`CsvFormatError` naming the file and line.

Each file is read once, lazily, on its first fetch, into two numpy arrays (int64 open times and an
(n, 5) float64 block): memory is the size of the data fetched so far (`loaded_bytes`), never a
DataFrame per fetch. The universe is the symbols with a file for the base timeframe.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_bot.market.source import OHLCV_COLUMNS, ohlcv_frame, visible_slice
from crypto_bot.market.timeframes import (
    TIMEFRAME_MS,
    require_served,
    timeframe_ms,
    validate_limit,
    validate_since_ms,
    validate_symbol,
    validate_timeframes,
)

logger = logging.getLogger(__name__)

DEFAULT_WARMUP_CANDLES = 200
"""Without `start_ms`, the clock starts when this many base candles have closed."""

_FIELD_COUNT = 1 + len(OHLCV_COLUMNS)
_FILE_PATTERN = re.compile(rf"^([A-Z0-9]+)_([A-Z0-9]+)-({'|'.join(TIMEFRAME_MS)})\.csv$")


class CsvFormatError(ValueError):
    """A CSV file that does not follow the documented layout; names the file and line."""

    def __init__(self, path: Path, line_number: int, reason: str) -> None:
        super().__init__(f"{path}:{line_number}: {reason}")
        self.path = path
        self.line_number = line_number


@dataclass(frozen=True, slots=True)
class _Candles:
    """One file's candles: sorted open times and the matching OHLCV rows."""

    open_ms: np.ndarray
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.open_ms.nbytes + self.values.nbytes


def csv_file_name(symbol: str, timeframe: str) -> str:
    """File name holding `symbol` at `timeframe`, e.g. "BTC_USDT-1m.csv"."""
    timeframe_ms(timeframe)
    return f"{validate_symbol(symbol).replace('/', '_')}-{timeframe}.csv"


def csv_symbols(directory: str | Path, timeframe: str) -> list[str]:
    """Symbols with a file for `timeframe` in `directory`, sorted (the universe of a replay on that base)."""
    return sorted(
        f"{match[1]}/{match[2]}"
        for match in map(_FILE_PATTERN.match, (path.name for path in Path(directory).iterdir()))
        if match and match[3] == timeframe
    )


def _header_lines(path: Path) -> int:
    """1 if the first line is a header (its first field is not a number), else 0."""
    with path.open(encoding="utf-8") as lines:
        first_field = next(lines, "").split(",", 1)[0].strip()
    if not first_field:
        return 0
    try:
        float(first_field)
    except ValueError:
        return 1
    return 0


def _data_lines(path: Path, header_lines: int) -> Iterable[tuple[int, str]]:
    """(line number, text) of each non-blank line after the header."""
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if line_number > header_lines and line.strip():
                yield line_number, line


def _unparsable_line(path: Path, header_lines: int) -> CsvFormatError | None:
    """Error for the first line that is not six comma-separated numbers, if any."""
    for line_number, line in _data_lines(path, header_lines):
        fields = line.split(",")
        if len(fields) != _FIELD_COUNT:
            return CsvFormatError(path, line_number, f"expected {_FIELD_COUNT} fields, got {len(fields)}")
        for position, field in enumerate(fields):
            try:
                float(field)
            except ValueError:
                return CsvFormatError(path, line_number, f"field {position + 1} is not a number: {field.strip()!r}")
    return None


def _first_invalid_row(rows: np.ndarray, length_ms: int) -> tuple[int, str] | None:
    """(row index, reason) of the first row breaking a value rule, or None if all rows are valid."""
    timestamps, opens, highs, lows, closes, volumes = rows.T
    with np.errstate(invalid="ignore"):
        misaligned = timestamps % length_ms != 0
    checks = (
        (~np.isfinite(rows).all(axis=1), "non-finite value"),
        (misaligned, f"timestamp is not a multiple of the timeframe ({length_ms} ms)"),
        (np.r_[False, np.diff(timestamps) <= 0], "timestamp is not after the previous row's"),
        (
            (lows > np.minimum(opens, closes)) | (highs < np.maximum(opens, closes)),
            "high/low do not enclose open and close (need low <= open, close <= high)",
        ),
        (volumes < 0, "negative volume"),
    )
    invalid = np.zeros(len(rows), dtype=bool)
    for mask, _ in checks:
        invalid |= mask
    if not invalid.any():
        return None
    row = int(np.argmax(invalid))
    return row, next(reason for mask, reason in checks if mask[row])


def _load_candles(path: Path, length_ms: int) -> _Candles:
    """Parse and validate one file; CsvFormatError names the first bad line."""
    header_lines = _header_lines(path)
    if next(_data_lines(path, header_lines), None) is None:
        return _Candles(np.empty(0, dtype=np.int64), np.empty((0, len(OHLCV_COLUMNS))))
    try:
        rows = np.loadtxt(path, delimiter=",", skiprows=header_lines, ndmin=2, comments=None, encoding="utf-8")
    except ValueError as exc:
        raise _unparsable_line(path, header_lines) or CsvFormatError(path, 0, str(exc)) from exc
    if rows.shape[1] != _FIELD_COUNT:
        raise _unparsable_line(path, header_lines) or CsvFormatError(path, 0, f"expected {_FIELD_COUNT} fields")
    invalid = _first_invalid_row(rows, length_ms)
    if invalid is not None:
        row, reason = invalid
        line_number, _ = next(itertools.islice(_data_lines(path, header_lines), row, None))
        raise CsvFormatError(path, line_number, reason)
    return _Candles(rows[:, 0].astype(np.int64), np.ascontiguousarray(rows[:, 1:]))


def _first_open_ms(path: Path) -> int | None:
    """Open time of the first candle in `path`, reading only its first data line."""
    first = next(_data_lines(path, _header_lines(path)), None)
    if first is None:
        return None
    line_number, line = first
    try:
        return int(float(line.split(",", 1)[0]))
    except (ValueError, OverflowError):
        raise CsvFormatError(path, line_number, "timestamp is not a number") from None


class CsvMarket:
    """Replays CSV candles with a clock that `advance()` moves by one base candle."""

    __slots__ = (
        "_base_ms",
        "_closed",
        "_directory",
        "_elapsed_candles",
        "_loaded",
        "_start_ms",
        "_symbols",
        "_timeframes",
        "name",
    )

    name: str
    _directory: Path
    _timeframes: tuple[str, ...]
    _base_ms: int
    _symbols: tuple[str, ...]
    _start_ms: int
    _elapsed_candles: int
    _loaded: dict[tuple[str, str], _Candles]
    _closed: bool

    def __init__(
        self,
        directory: str | Path,
        *,
        timeframes: Iterable[str] = ("1m",),
        base_timeframe: str | None = None,
        start_ms: int | None = None,
        warmup_candles: int = DEFAULT_WARMUP_CANDLES,
    ) -> None:
        """`base_timeframe` defaults to the smallest of `timeframes`; `start_ms` to the earliest
        base candle plus `warmup_candles` base candles (read from the first line of each file)."""
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
        if isinstance(warmup_candles, bool) or not isinstance(warmup_candles, int) or warmup_candles < 0:
            raise ValueError(f"warmup_candles must be an int >= 0; got {warmup_candles!r}")
        if start_ms is None:
            start_ms = self._default_start_ms(base_timeframe, warmup_candles)
        if isinstance(start_ms, bool) or not isinstance(start_ms, int) or start_ms < 0 or start_ms % self._base_ms:
            raise ValueError(
                f"start_ms must be an int >= 0, a multiple of base_timeframe {base_timeframe!r}; got {start_ms!r}"
            )
        self._start_ms = start_ms
        self._elapsed_candles = 0
        self._loaded = {}
        self._closed = False
        logger.info("CSV replay of %d symbols from %s starting at %d ms", len(self._symbols), self._directory, start_ms)

    def _default_start_ms(self, base_timeframe: str, warmup_candles: int) -> int:
        first_opens_ms = [
            first_ms
            for symbol in self._symbols
            if (first_ms := _first_open_ms(self._directory / csv_file_name(symbol, base_timeframe))) is not None
        ]
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
        """Bytes held by the arrays of files read so far."""
        return sum(candles.nbytes for candles in self._loaded.values())

    def universe(self) -> list[str]:
        """Symbols with a base-timeframe file, sorted."""
        return list(self._symbols)

    def advance(self) -> None:
        """Move the replay clock by one base candle."""
        self._elapsed_candles += 1

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 200
    ) -> pd.DataFrame:
        """Replayed candles closed by `now_ms` (see `source` for the window rule)."""
        if self._closed:
            raise RuntimeError("CsvMarket is closed")
        length_ms = require_served(timeframe, self._timeframes)
        validate_limit(limit)
        validate_since_ms(since_ms)
        candles = self._candles(symbol, timeframe, length_ms)
        rows = visible_slice(candles.open_ms, self.now_ms, length_ms, since_ms, limit)
        return ohlcv_frame(candles.open_ms[rows], candles.values[rows])

    def _candles(self, symbol: str, timeframe: str, length_ms: int) -> _Candles:
        key = (symbol, timeframe)
        candles = self._loaded.get(key)
        if candles is None:
            path = self._directory / csv_file_name(symbol, timeframe)
            if not path.is_file():
                raise KeyError(f"no data for symbol {symbol!r} at {timeframe!r}: missing file {path}")
            candles = self._loaded[key] = _load_candles(path, length_ms)
            logger.debug("loaded %d candles (%d bytes) from %s", len(candles.open_ms), candles.nbytes, path)
        return candles

    async def close(self) -> None:
        """Drop the loaded arrays; later fetches raise RuntimeError. Safe to call twice."""
        self._loaded.clear()
        self._closed = True
