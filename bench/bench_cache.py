"""Compare ManagedCache, on its C and on its pure-Python entry store, with a locked OrderedDict LRU,
cachetools and cachebox: speed and bytes per entry; then the two stores side by side.

Speed: a read-through workload (a `get`, and on a miss a `put`) over Zipf(1.1) keys drawn from 10k
keys against 5k entries of capacity; repetitions are interleaved across the caches, the median is
reported with the ratio to the OrderedDict + Lock baseline. A second table splits the cost into a
`get` that hits and a `put` that adds a key to a full cache. Times are this process's CPU time, so
other load on a shared machine inflates them less than wall time would.

Overhead: bookkeeping bytes per entry of a cache holding 100k keys and values allocated before the
measurement, so only the cache's own memory counts. tracemalloc gives exact requested bytes (it
sees ManagedCache's C store, which allocates through PyMem) but cannot see cachebox's Rust allocations; resident-set growth sees everything, includes allocator
overhead and is only good to some 20 bytes per entry (freed memory gets reused).

Stores: both run in this one process (crypto_bot.memory.cache.managed_cache_class), whatever
CRYPTO_BOT_CACHE_BACKEND says; the last table gives each Python-store figure as a ratio to the C one.

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

from crypto_bot.memory import sizeof
from crypto_bot.memory.cache import managed_cache_class

KEY_COUNT = 10_000
CAPACITY_ENTRIES = 5_000
OPERATION_COUNT = 500_000
SPLIT_OPERATION_COUNT = 100_000
ZIPF_EXPONENT = 1.1
TTL_SECONDS = 3600
SPEED_REPEATS = 5
OVERHEAD_ENTRIES = 100_000
TARGET_SPEED_RATIO = 1.25
TARGET_OVERHEAD_BYTES = 150
# Values here are ~136 bytes, so a budget of 1 KiB per entry never binds and hit rates stay comparable.
BYTE_BUDGET_PER_ENTRY_BYTES = 1024
BASELINE = "OrderedDict + Lock"
MANAGED = "ManagedCache, C store"
MANAGED_PYTHON = "ManagedCache, Python store"
STORES = {"c": MANAGED, "python": MANAGED_PYTHON}

Getter = Callable[[Hashable], Any]
Putter = Callable[[Hashable, Any], Any]
Builder = Callable[[int], tuple[object, Getter, Putter]]


class LockedLRU:
    """The baseline: an OrderedDict LRU with an entry cap behind one lock (puts here only add new keys)."""

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
    """cachetools.TTLCache (LRU + TTL, not thread-safe) behind a lock, as its documentation asks."""

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


def build_locked_lru(max_entries: int) -> tuple[object, Getter, Putter]:
    cache = LockedLRU(max_entries)
    return cache, cache.get, cache.put


def managed_builders(backend: str) -> tuple[Builder, Builder]:
    """Builders of ManagedCache on the store `backend`: plain, and with a byte budget that never binds."""
    cache_class = managed_cache_class(backend)

    def build_managed(max_entries: int) -> tuple[object, Getter, Putter]:
        cache = cache_class(max_size=max_entries, ttl_seconds=TTL_SECONDS)
        return cache, cache.get, cache.put

    def build_managed_with_byte_budget(max_entries: int) -> tuple[object, Getter, Putter]:
        cache = cache_class(max_size=max_entries, ttl_seconds=TTL_SECONDS, max_bytes=BYTE_BUDGET_PER_ENTRY_BYTES * max_entries)
        return cache, cache.get, cache.put

    return build_managed, build_managed_with_byte_budget


def build_cachetools(max_entries: int) -> tuple[object, Getter, Putter]:
    cache = LockedTTLCache(max_entries)
    return cache, cache.get, cache.put


def build_cachebox(max_entries: int) -> tuple[object, Getter, Putter]:
    cache: cachebox.TTLCache = cachebox.TTLCache(max_entries, TTL_SECONDS)
    return cache, cache.get, cache.insert


def managed_caches() -> list[tuple[str, Builder]]:
    caches = []
    for backend, name in STORES.items():
        plain, with_byte_budget = managed_builders(backend)
        caches += [(name, plain), (f"{name} + max_bytes", with_byte_budget)]
    return caches


CACHES: list[tuple[str, Builder]] = [
    (BASELINE, build_locked_lru),
    *managed_caches(),
    ("cachetools.TTLCache + Lock", build_cachetools),
    ("cachebox.TTLCache (FIFO+TTL)", build_cachebox),
]


def zipf_keys(count: int) -> list[int]:
    """`count` keys drawn from Zipf(ZIPF_EXPONENT) over KEY_COUNT keys (key 0 the most popular), seeded."""
    weights = np.arange(1, KEY_COUNT + 1, dtype=np.float64) ** -ZIPF_EXPONENT
    return np.random.default_rng(42).choice(KEY_COUNT, size=count, p=weights / weights.sum()).tolist()


def quotes(count: int) -> list[tuple[float, float, float]]:
    """Distinct (bid, ask, last) tuples, built without leaving freed small objects behind to skew RSS."""
    columns = np.random.default_rng(7).random((3, count)) * 30_000
    return list(zip(*(column.tolist() for column in columns)))


def read_through(get: Getter, put: Putter, keys: list[int], values: list[Any]) -> int:
    """Run the workload; returns the number of misses."""
    misses = 0
    for key in keys:
        if get(key) is None:
            put(key, values[key])
            misses += 1
    return misses


def get_each(get: Getter, keys: list[int]) -> None:
    for key in keys:
        get(key)


def put_each(put: Putter, items: list[tuple[int, Any]]) -> None:
    for key, value in items:
        put(key, value)


def size_each(value: object, count: int) -> None:
    for _ in range(count):
        sizeof(value)


def timed(run: Callable[[], Any], operation_count: int) -> tuple[Any, float]:
    """What `run()` returns and the CPU ns it took per operation."""
    gc.collect()
    start_ns = time.process_time_ns()
    result = run()
    return result, (time.process_time_ns() - start_ns) / operation_count


def measure_read_through(keys: list[int], values: list[Any]) -> dict[str, tuple[float, float]]:
    """Median ns per operation and hit ratio of each cache, repetitions interleaved."""
    durations_ns: dict[str, list[float]] = {name: [] for name, _ in CACHES}
    hit_ratios: dict[str, float] = {}
    for _ in range(SPEED_REPEATS):
        for name, build in CACHES:
            _, get, put = build(CAPACITY_ENTRIES)
            misses, ns_per_operation = timed(lambda: read_through(get, put, keys, values), len(keys))
            durations_ns[name].append(ns_per_operation)
            hit_ratios[name] = 1 - misses / len(keys)
    return {name: (statistics.median(durations_ns[name]), hit_ratios[name]) for name, _ in CACHES}


def measure_split(keys: list[int], values: list[Any]) -> dict[str, tuple[float, float]]:
    """Median ns of a `get` that hits and of a `put` that adds a key to a full cache (evicting one)."""
    resident_keys = [key % CAPACITY_ENTRIES for key in keys[:SPLIT_OPERATION_COUNT]]
    new_items = [(KEY_COUNT + index, values[index % KEY_COUNT]) for index in range(SPLIT_OPERATION_COUNT)]
    hit_ns: dict[str, list[float]] = {name: [] for name, _ in CACHES}
    put_ns: dict[str, list[float]] = {name: [] for name, _ in CACHES}
    for _ in range(SPEED_REPEATS):
        for name, build in CACHES:
            _, get, put = build(CAPACITY_ENTRIES)
            for key in range(CAPACITY_ENTRIES):
                put(key, values[key])
            hit_ns[name].append(timed(lambda: get_each(get, resident_keys), len(resident_keys))[1])
            put_ns[name].append(timed(lambda: put_each(put, new_items), len(new_items))[1])
    return {name: (statistics.median(hit_ns[name]), statistics.median(put_ns[name])) for name, _ in CACHES}


def sizeof_ns(value: object) -> float:
    """Median ns of the default sizer on `value`, the part of ManagedCache.put spent sizing."""
    return statistics.median(timed(lambda: size_each(value, SPLIT_OPERATION_COUNT), SPLIT_OPERATION_COUNT)[1] for _ in range(SPEED_REPEATS))


def fill(build: Builder, keys: list[int], values: list[Any]) -> tuple[object, Getter]:
    cache, get, put = build(len(keys))
    for key in keys:
        put(key, values[key])
    return cache, get


def traced_bytes_per_entry(build: Builder, keys: list[int], values: list[Any]) -> tuple[float, float]:
    """tracemalloc bytes per entry after filling the cache, and after then reading every key once."""
    gc.collect()
    tracemalloc.start()
    try:
        before_bytes = tracemalloc.get_traced_memory()[0]
        cache, get = fill(build, keys, values)
        gc.collect()
        filled_bytes = tracemalloc.get_traced_memory()[0]
        get_each(get, keys)
        gc.collect()
        read_bytes = tracemalloc.get_traced_memory()[0]
        del cache, get
    finally:
        tracemalloc.stop()
    return (filled_bytes - before_bytes) / len(keys), (read_bytes - before_bytes) / len(keys)


def heap_trimmer() -> Callable[[], None]:
    """glibc's malloc_trim(0), returning freed heap to the OS so RSS tracks live memory; else a no-op."""
    libc_name = ctypes.util.find_library("c")
    malloc_trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None) if libc_name else None
    if malloc_trim is None:
        return lambda: None
    return lambda: malloc_trim(0)


def rss_bytes_per_entry(build: Builder, keys: list[int], values: list[Any], trim_heap: Callable[[], None]) -> float:
    """Resident-set growth per entry of a filled cache, after freeing what the fill itself discarded."""
    process = psutil.Process()
    gc.collect()
    trim_heap()
    before_bytes = process.memory_info().rss
    cache, _ = fill(build, keys, values)
    gc.collect()
    trim_heap()
    grown_bytes = process.memory_info().rss - before_bytes
    del cache
    return grown_bytes / len(keys)


def measure_overhead() -> dict[str, tuple[float, float, float]]:
    """Per cache: traced bytes per entry filled, traced after a get of every key, RSS bytes per entry."""
    keys = list(range(OVERHEAD_ENTRIES))
    values = quotes(OVERHEAD_ENTRIES)
    trim_heap = heap_trimmer()
    # RSS first, while the heap is still free of what the other measurements leave behind.
    rss = {name: rss_bytes_per_entry(build, keys, values, trim_heap) for name, build in CACHES}
    return {name: (*traced_bytes_per_entry(build, keys, values), rss[name]) for name, build in CACHES}


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "NOT met"


def print_table(title: str, header: str, rows: list[str]) -> None:
    print(f"\n{title}\n{header}\n{'-' * len(header)}")
    print("\n".join(rows))


def main() -> None:
    overhead = measure_overhead()
    keys = zipf_keys(OPERATION_COUNT)
    values = quotes(KEY_COUNT)
    read_through_results = measure_read_through(keys, values)
    split = measure_split(keys, values)
    value_sizing_ns = sizeof_ns(values[0])

    baseline_ns = read_through_results[BASELINE][0]
    print_table(
        f"read-through: {OPERATION_COUNT:,} ops (get; put on a miss), Zipf({ZIPF_EXPONENT}) over {KEY_COUNT:,} keys, "
        f"capacity {CAPACITY_ENTRIES:,}, value a 3-float tuple; CPU ns, median of {SPEED_REPEATS} interleaved runs",
        f"{'cache':40} {'ns/op':>7} {'hit rate':>8} {'vs baseline':>11}",
        [
            f"{name:40} {ns:>7.0f} {hit_ratio:>8.1%} {ns / baseline_ns:>10.2f}x"
            for name, (ns, hit_ratio) in read_through_results.items()
        ],
    )
    managed_ratio = read_through_results[MANAGED][0] / baseline_ns
    print(f"ManagedCache {managed_ratio:.2f}x the baseline (target <= {TARGET_SPEED_RATIO}x): {verdict(managed_ratio, TARGET_SPEED_RATIO)}")

    baseline_hit_ns, baseline_put_ns = split[BASELINE]
    print_table(
        f"cost split: get that hits, put of a new key into a full cache (evicts one); CPU ns, median of {SPEED_REPEATS}",
        f"{'cache':40} {'hit get':>7} {'vs base':>7} {'new put':>7} {'vs base':>7}",
        [
            f"{name:40} {hit_ns:>7.0f} {hit_ns / baseline_hit_ns:>6.2f}x {put_ns:>7.0f} {put_ns / baseline_put_ns:>6.2f}x"
            for name, (hit_ns, put_ns) in split.items()
        ],
    )
    print(f"of ManagedCache's put, the default sizer on the 3-float tuple takes {value_sizing_ns:.0f} ns")

    print_table(
        f"bookkeeping bytes per entry, {OVERHEAD_ENTRIES:,} entries, keys and values allocated beforehand "
        "(cachebox allocates in Rust: tracemalloc sees ~0, use RSS)",
        f"{'cache':40} {'traced':>7} {'traced, each key read':>21} {'RSS':>5}",
        [f"{name:40} {filled:>7.0f} {read:>21.0f} {rss:>5.0f}" for name, (filled, read, rss) in overhead.items()],
    )
    managed_read_bytes = overhead[MANAGED][1]
    print(
        f"ManagedCache {managed_read_bytes:.0f} B/entry once entries have been read "
        f"(goal <= {TARGET_OVERHEAD_BYTES} B): {verdict(managed_read_bytes, TARGET_OVERHEAD_BYTES)}"
    )

    print_table(
        "the two entry stores side by side: the same workloads as above, Python store / C store",
        f"{'measure':44} {'C store':>9} {'Python store':>12} {'Python / C':>10}",
        [
            f"{measure:44} {c_value:>9.0f} {python_value:>12.0f} {python_value / c_value:>9.2f}x"
            for measure, c_value, python_value in store_comparison(read_through_results, split, overhead)
        ],
    )


def store_comparison(
    read_through_results: dict[str, tuple[float, float]],
    split: dict[str, tuple[float, float]],
    overhead: dict[str, tuple[float, float, float]],
) -> list[tuple[str, float, float]]:
    """(measure, C figure, Python figure) for each table above, plain and with max_bytes."""
    rows = []
    for suffix in ("", " + max_bytes"):
        c_name, python_name = MANAGED + suffix, MANAGED_PYTHON + suffix
        label = "+ max_bytes: " if suffix else ""
        rows += [
            (f"{label}read-through, ns/op", read_through_results[c_name][0], read_through_results[python_name][0]),
            (f"{label}get that hits, ns", split[c_name][0], split[python_name][0]),
            (f"{label}new put into a full cache, ns", split[c_name][1], split[python_name][1]),
            (f"{label}traced B/entry, each key read", overhead[c_name][1], overhead[python_name][1]),
            (f"{label}RSS B/entry", overhead[c_name][2], overhead[python_name][2]),
        ]
    return rows


if __name__ == "__main__":
    main()
