"""Candle windows as bytes for the shared tier: a small versioned header, then numpy arrays (never JSON).

Covers `encode_window` and `decode_window`. Layout, little-endian:

    b"CBW" | version u8 (1) | candles u32 | reserved u32 (0) | candles x int64 open ms | candles x 5 float64 OHLCV

48 bytes a candle and 12 of header: a 300-candle window is 14.4 kB, read back with two `np.frombuffer`
views and no parsing. Decoding refuses anything else (another magic or version, a length that does not
match, a candle that breaks `market.candles`' rules) with `BadData` naming the Redis key, so a worker
keeps the window it holds instead of trading on garbage. Not covered: where windows live (`keys`) or
who reads and writes them (`redis_market`, `feeder`).
"""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd

from crypto_bot.market.candles import checked_arrays
from crypto_bot.market.errors import BadData
from crypto_bot.market.source import OHLCV_COLUMNS, ohlcv_frame

MAGIC = b"CBW"
VERSION = 1
_HEADER = struct.Struct("<3sBII")
_COLUMNS = len(OHLCV_COLUMNS)
CANDLE_BYTES = 8 * (1 + _COLUMNS)
HEADER_BYTES = _HEADER.size


def encode_window(frame: pd.DataFrame) -> bytes:
    """The bytes of an `ohlcv_frame` window (oldest candle first)."""
    opens = frame.index.as_unit("ms").asi8.astype("<i8", copy=False)
    values = np.ascontiguousarray(frame[list(OHLCV_COLUMNS)].to_numpy(dtype="<f8"))
    return b"".join((_HEADER.pack(MAGIC, VERSION, len(frame), 0), opens.tobytes(), values.tobytes()))


def decode_window(data: bytes, *, key: str) -> pd.DataFrame:
    """The window `encode_window` wrote under `key`; BadData naming `key` and what is wrong otherwise."""
    what = f"redis key {key}"
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BadData(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) < HEADER_BYTES:
        raise BadData(f"{what}: {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header of a candle window")
    magic, version, count, _ = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BadData(f"{what}: not a candle window (starts with {bytes(data[:3])!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise BadData(f"{what}: candle window format version {version}; this version reads {VERSION}")
    expected = HEADER_BYTES + count * CANDLE_BYTES
    if len(data) != expected:
        raise BadData(f"{what}: {len(data)} bytes for {count} candles; expected {expected}")
    opens = np.frombuffer(data, dtype="<i8", count=count, offset=HEADER_BYTES)
    values = np.frombuffer(data, dtype="<f8", count=count * _COLUMNS, offset=HEADER_BYTES + 8 * count)
    opens, values = checked_arrays(opens, values.reshape(count, _COLUMNS), what=what)
    return ohlcv_frame(opens, values)

