"""Compare ManagedCache with a locked OrderedDict LRU, cachetools and cachebox: speed and bytes per entry.

Speed: a read-through workload, Zipf(1.1) keys over 10k keys against 5k entries of capacity; each
operation is a `get`, and a miss is followed by a `put`. Repetitions are interleaved across the
caches and the median is reported, with the ratio to the OrderedDict + Lock baseline.
Overhead: bookkeeping bytes per entry of a cache holding 100k pre-allocated keys and values
(allocated before measuring, so only the cache's own memory counts), read with tracemalloc and,
as a cross-check and for cachebox (Rust allocations are invisible to tracemalloc), as RSS growth.
Run: .venv/bin/python bench/bench_cache.py
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import statistics
import threading
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import cachebox
import cachetools
import numpy as np
import psutil

from crypto_bot.memory.cache import ManagedCache

KEY_COUNT = 10_000
CAPACITY_ENTRIES = 5_000
OPERATION_COUNT = 500_000
ZIPF_EXPONENT = 1.1
TTL_SECONDS = 3600
SPEED_REPEATS = 7
OVERHEAD_ENTRIES = 100_000
TARGET_SPEED_RATIO = 1.25
TARGET_OVERHEAD_BYTES = 150
# Large enough never to bind on this workload (5k entries of ~136 B), so hit rates stay comparable.
BYTE_BUDGET_BYTES = 4 * 1024 * 1024
BASELINE = "OrderedDict + Lock"

Getter = Callable[[Hashable], Any]
Putter = Callable[[Hashable, Any], Any]


class LockedLRU:
    """The baseline: an OrderedDict LRU with an entry cap, guarded by one lock (puts here only add new keys)."""

    __slots__ = ("_entries", "_lock", "_max_entries")

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)


class LockedTTLCache:
    """cachetools.TTLCache (LRU + TTL, not thread-safe) behind a lock, as its docs recommend."""

    __slots__ = ("_cache", "_lock")

    def __init__(self, max_entries: int) -> None:
        self._cache: cachetools.TTLCache[Hashable, Any] = cachetools.TTLCache(max_entries, TTL_SECONDS)
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            return self._cache.get(key)

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._cache[key] = value


def build_managed(max_entries: int) -> tuple[object, Getter, Putter]:
    cache = ManagedCache(max_size=max_entries, ttl_seconds=TTL_SECONDS)
    return cache, cache.get, cache.put


def build_managed_with_byte_budget(max_entries: int) -> tuple[object, Getter, Putter]:
    cache = ManagedCache(max_size=max_entries, ttl_seconds=TTL_SECONDS, max_bytes=max(BYTE_BUDGET_BYTES, 400 * max_entries))
    return cache, cache.get, cache.put


def build_locked_lru(max_entries: int) -> tuple[object, Getter, Putter]:
    cache = LockedLRU(max_entries)
    return cache, cache.get, cache.put


def build_cachetools(max_entries: int) -> tuple[object, Getter, Putter]:
    cache = LockedTTLCache(max_entries)
    return cache, cache.get, cache.put


def build_cachebox(max_entries: int) -> tuple[object, Getter, Putter]:
    cache: cachebox.TTLCache = cachebox.TTLCache(max_entries, TTL_SECONDS)
    return cache, cache.get, cache.insert


CACHES: list[tuple[str, Callable[[int], tuple[object, Getter, Putter]]]] = [
    (BASELINE, build_locked_lru),
    ("ManagedCache", build_managed),
    ("ManagedCache + max_bytes", build_managed_with_byte_budget),
    ("cachetools.TTLCache + Lock", build_cachetools),
    ("cachebox.TTLCache (FIFO+TTL)", build_cachebox),
]


def zipf_keys(count: int) -> list[int]:
    """`count` keys drawn from Zipf(ZIPF_EXPONENT) over KEY_COUNT keys, most popular key 0, seeded."""
    ranks = np.arange(1, KEY_COUNT + 1, dtype=np.float64)
    weights = ranks**-ZIPF_EXPONENT
    rng = np.random.default_rng(42)
    return rng.choice(KEY_COUNT, size=count, p=weights / weights.sum()).tolist()


def small_values(count: int) -> list[tuple[float, float, float]]:
    """Distinct small values (3 floats, like a bid/ask/last quote)."""
    prices = np.random.default_rng(7).random((count, 3)) * 30_000
    return [tuple(row) for row in prices.tolist()]


def read_through(get: Getter, put: Putter, keys: list[int], values: list[Any]) -> int:
    """Run the workload; returns the number of misses."""
    misses = 0
    for key in keys:
        if get(key) is None:
            put(key, values[key])
            misses += 1
    return misses


def measure_speed(keys: list[int], values: list[Any]) -> dict[str, tuple[float, float]]:
    """Median ns per operation and hit rate of each cache, repetitions interleaved."""
    durations_ns: dict[str, list[float]] = {name: [] for name, _ in CACHES}
    hit_ratios: dict[str, float] = {}
    for _ in range(SPEED_REPEATS):
        for name, build in CACHES:
            _, get, put = build(CAPACITY_ENTRIES)
            gc.collect()
            start_ns = time.perf_counter_ns()
            misses = read_through(get, put, keys, values)
            durations_ns[name].append((time.perf_counter_ns() - start_ns) / len(keys))
            hit_ratios[name] = 1 - misses / len(keys)
    return {name: (statistics.median(durations_ns[name]), hit_ratios[name]) for name, _ in CACHES}


def fill(build: Callable[[int], tuple[object, Getter, Putter]], keys: list[int], values: list[Any]) -> tuple[object, Getter]:
    cache, get, put = build(len(keys))
    for key in keys:
        put(key, values[key])
    return cache, get


def get_every_key(get: Getter, keys: list[int]) -> None:
    for key in keys:
        get(key)


def traced_bytes_per_entry(build: Callable[[int], tuple[object, Getter, Putter]], keys: list[int], values: list[Any]) -> tuple[float, float]:
    """tracemalloc bytes per entry after filling the cache, and after then reading every key once."""
    gc.collect()
    tracemalloc.start()
    try:
        before_bytes = tracemalloc.get_traced_memory()[0]
        cache, get = fill(build, keys, values)
        gc.collect()
        filled_bytes = tracemalloc.get_traced_memory()[0]
        get_every_key(get, keys)
        gc.collect()
        read_bytes = tracemalloc.get_traced_memory()[0]
        del cache, get
    finally:
        tracemalloc.stop()
    return (filled_bytes - before_bytes) / len(keys), (read_bytes - before_bytes) / len(keys)


def _trim_heap() -> Callable[[], None]:
    """glibc's malloc_trim, so memory freed by earlier measurements is not silently reused; else a no-op."""
    libc_name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None) if libc_name else None
    return (lambda: trim(0)) if trim is not None else (lambda: None)


def rss_bytes_per_entry(build: Callable[[int], tuple[object, Getter, Putter]], keys: list[int], values: list[Any], trim: Callable[[], None]) -> float:
    """Resident-set growth per entry while filling the cache (sees Rust allocations too; page-granular)."""
    process = psutil.Process()
    gc.collect()
    trim()
    before_bytes = process.memory_info().rss
    cache, _ = fill(build, keys, values)
    gc.collect()
    trim()
    grown_bytes = process.memory_info().rss - before_bytes
    del cache
    return grown_bytes / len(keys)


def main() -> None:
    keys = zipf_keys(OPERATION_COUNT)
    values = small_values(KEY_COUNT)
    speed = measure_speed(keys, values)
    baseline_ns = speed[BASELINE][0]
    print(
        f"read-through: {OPERATION_COUNT:,} ops, Zipf({ZIPF_EXPONENT}) over {KEY_COUNT:,} keys, capacity {CAPACITY_ENTRIES:,}, "
        f"median of {SPEED_REPEATS} interleaved runs"
    )
    header = f"{'cache':30} {'ns/op':>7} {'hit rate':>8} {'vs baseline':>11}"
    print(header)
    print("-" * len(header))
    for name, _ in CACHES:
        ns_per_op, hit_ratio = speed[name]
        print(f"{name:30} {ns_per_op:>7.0f} {hit_ratio:>8.1%} {ns_per_op / baseline_ns:>10.2f}x")
    managed_ratio = speed["ManagedCache"][0] / baseline_ns
    print(f"ManagedCache {managed_ratio:.2f}x the baseline (target <= {TARGET_SPEED_RATIO}x): {'met' if managed_ratio <= TARGET_SPEED_RATIO else 'NOT met'}")

    overhead_keys = list(range(OVERHEAD_ENTRIES))
    overhead_values = small_values(OVERHEAD_ENTRIES)
    trim = _trim_heap()
    print(f"\nbookkeeping bytes per entry, {OVERHEAD_ENTRIES:,} entries (keys and values allocated beforehand)")
    header = f"{'cache':30} {'traced B':>9} {'traced B after get':>18} {'RSS B':>7}"
    print(header)
    print("-" * len(header))
    for name, build in CACHES:
        filled_bytes, read_bytes = traced_bytes_per_entry(build, overhead_keys, overhead_values)
        rss_bytes = rss_bytes_per_entry(build, overhead_keys, overhead_values, trim)
        print(f"{name:30} {filled_bytes:>9.0f} {read_bytes:>18.0f} {rss_bytes:>7.0f}")


if __name__ == "__main__":
    main()
