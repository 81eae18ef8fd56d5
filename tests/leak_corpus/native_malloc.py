"""A native leak: a C buffer per symbol per cycle from malloc, written and never freed (as a C extension would)."""

from __future__ import annotations

import ctypes

import pandas as pd

EXPECTED = "native"
GROWING_TYPE = None

BUFFER_BYTES = 64 * 1024
_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


class NativeStrategy:
    def __init__(self) -> None:
        self.addresses: list[int] = []

    def signal(self, symbol: str, candles: dict[str, pd.DataFrame]) -> float | None:
        address = _libc.malloc(BUFFER_BYTES)  # LEAK (native: tracemalloc cannot see it)
        ctypes.memset(address, 1, BUFFER_BYTES)  # touched, so it is resident
        self.addresses.append(address)
        return None

    def close(self) -> None:
        for address in self.addresses:
            _libc.free(address)
        self.addresses.clear()


STRATEGY = NativeStrategy
