"""ManagedCache: a thread-safe LRU cache with TTL expiry, an honest byte budget, stats and listeners.

This module covers one cache. A byte budget shared by several caches lives in `budget.py`;
shrinking caches under memory pressure is decided in `pressure.py` and done by `manager.py`,
which calls `shrink_to`. Sizes come from `sizing.sizeof` unless the caller knows better.

Design notes:
- Recency is an `OrderedDict` (C implementation: `move_to_end` is the cheapest LRU in CPython).
- Expiry is O(what expired): entries with the cache's default TTL expire in put order, so a
  FIFO of them is already sorted; entries with their own TTL go into a heap. Both hold entries
  lazily (a removed entry stays queued until it reaches the front or a compaction), and a removed
  entry drops its value at once, so a queue never keeps an evicted value alive.
- Listeners run after the lock is released; their exceptions are logged, never raised.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .flight import Flight
from .sizing import sizeof

if TYPE_CHECKING:
    from .budget import SharedBudget

logger = logging.getLogger(__name__)

_MISSING: Any = object()
_UNSET: Any = object()
_COMPACT_SLACK = 64


class RemovalCause(str, Enum):
    """Why an entry left the cache (the `cause` passed to eviction listeners)."""

    EXPIRED = "expired"
    SIZE = "size"
    PRESSURE = "pressure"
    EXPLICIT = "explicit"
    REPLACED = "replaced"


EvictionListener = Callable[[Hashable, Any, RemovalCause], None]


class CacheEntry:
    """One cached value with its bookkeeping; `timestamp` is the put time on the cache's clock."""

    __slots__ = ("key", "value", "size_bytes", "timestamp", "ttl_seconds", "last_accessed", "access_count")

    def __init__(self, key: Hashable, value: Any, size_bytes: int, timestamp: float, ttl_seconds: float | None):
        self.key = key
        self.value = value
        self.size_bytes = size_bytes
        self.timestamp = timestamp
        self.ttl_seconds = ttl_seconds
        self.last_accessed = timestamp
        self.access_count = 0

    def __repr__(self) -> str:
        return f"CacheEntry(key={self.key!r}, size_bytes={self.size_bytes}, access_count={self.access_count})"


def _expired(entry: CacheEntry, now: float) -> bool:
    ttl = entry.ttl_seconds
    return ttl is not None and now - entry.timestamp >= ttl


def _check_positive_int(name: str, value: Any, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        allowed = "a positive integer or None" if allow_none else "a positive integer"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def _check_seconds(name: str, value: Any, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isnan(value):
        allowed = "a positive number of seconds or None" if allow_none else "a positive number of seconds"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return float(value)


def _check_size_bytes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
        raise ValueError(f"size_bytes must be a non-negative number of bytes, got {value!r}")
    return int(value)


def _check_hashable(key: Any) -> None:
    try:
        hash(key)
    except TypeError:
        raise TypeError(f"cache keys must be hashable; got an unhashable {type(key).__name__}") from None


class ManagedCache:
    """Thread-safe LRU + TTL cache with an entry cap, a byte budget, O(1) stats and eviction listeners."""

    name: str
    max_size: int
    max_bytes: int | None
    ttl_seconds: float | None

    def __init__(
        self,
        max_size: int = 1000,
        ttl_seconds: float | None = 3600,
        max_bytes: int | None = None,
        *,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_evict: EvictionListener | None = None,
        sizer: Callable[[Any], int] = sizeof,
    ) -> None:
        self.max_size = _check_positive_int("max_size", max_size, allow_none=False)
        self.max_bytes = _check_positive_int("max_bytes", max_bytes, allow_none=True)
        self.ttl_seconds = _check_seconds("ttl_seconds", ttl_seconds, allow_none=True)
        self.name = name if name is not None else f"cache-{id(self):x}"
        self._clock = clock
        self._sizer = sizer
        self._listeners: tuple[EvictionListener, ...] = (on_evict,) if on_evict is not None else ()
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, CacheEntry] = OrderedDict()
        self._view = MappingProxyType(self._entries)
        self._fifo_default: deque[CacheEntry] = deque()  # default-TTL entries in put (= expiry) order
        self._fifo_custom: deque[CacheEntry] = deque()  # per-entry-TTL entries in put order (for ages)
        self._custom_heap: list[tuple[float, int, CacheEntry]] = []  # (expires_at, seq, entry)
        self._custom_live = 0
        self._seq = 0
        self._flights: dict[Hashable, Flight] = {}
        self._async_flights: dict[Hashable, asyncio.Future[Any]] = {}
        self._budget: SharedBudget | None = None
        self.total_bytes = 0
        self._hits = 0
        self._misses = 0
        self._puts = 0
        self._loads = 0
        self._load_failures = 0
        self._load_seconds = 0.0
        self._evictions = {cause: 0 for cause in RemovalCause}

    # ------------------------------------------------------------------ reads

    def get(self, key: Hashable, default: Any = None) -> Any:
        """Return the value for `key` and mark it most recently used; `default` on a miss."""
        with self._lock:
            try:
                entry = self._entries.get(key)
            except TypeError:
                _check_hashable(key)
                raise
            if entry is None:
                self._misses += 1
                return default
            now = self._clock()
            ttl = entry.ttl_seconds
            if ttl is None or now - entry.timestamp < ttl:
                self._entries.move_to_end(key)
                entry.access_count += 1
                entry.last_accessed = now
                self._hits += 1
                return entry.value
            self._misses += 1
            expired = self._remove_locked(entry, RemovalCause.EXPIRED)
        self._notify(expired)
        return default

    def __contains__(self, key: Hashable) -> bool:
        """True when `key` holds a live (unexpired) value; does not refresh recency."""
        entry = self._entries.get(key)
        return entry is not None and not _expired(entry, self._clock())

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Hashable]:
        """Snapshot of live keys, least recently used first."""
        return [key for key, _ in self.items()]

    def items(self) -> list[tuple[Hashable, Any]]:
        """Snapshot of live (key, value) pairs, least recently used first."""
        with self._lock:
            now = self._clock()
            return [(k, e.value) for k, e in self._entries.items() if not _expired(e, now)]

    @property
    def cache(self) -> Mapping[Hashable, CacheEntry]:
        """Read-only live view of the entries, LRU order (oldest first), for code written for the seed."""
        return self._view

    # ----------------------------------------------------------------- writes

    def put(self, key: Hashable, value: Any, size_bytes: int | None = None, ttl_seconds: float | None = None) -> None:
        """Store `value`, evicting least recently used entries until both limits hold.

        A value larger than `max_bytes` (or than a shared budget) is refused with ValueError and
        the cache is left unchanged.
        """
        try:
            hash(key)
        except TypeError:
            _check_hashable(key)
        size = self._sizer(value) if size_bytes is None else _check_size_bytes(size_bytes)
        ttl = self.ttl_seconds if ttl_seconds is None else _check_seconds("ttl_seconds", ttl_seconds, allow_none=False)
        max_bytes = self.max_bytes
        if max_bytes is not None and size > max_bytes:
            raise ValueError(f"value for key {key!r} is {size} bytes, more than cache {self.name!r} max_bytes={max_bytes}")
        budget = self._budget
        if budget is None:
            removed = self._put_locked(key, value, size, ttl)
        else:
            with budget.lock:
                budget.make_room(size, self)
                removed = self._put_locked(key, value, size, ttl)
        if removed:
            self._notify(removed)

    def _put_locked(self, key: Hashable, value: Any, size: int, ttl: float | None) -> list[tuple[Hashable, Any, RemovalCause]]:
        removed: list[tuple[Hashable, Any, RemovalCause]] = []
        with self._lock:
            now = self._clock()
            entries = self._entries
            old = entries.pop(key, None)
            if old is not None:
                removed.append(self._unlink(old, RemovalCause.REPLACED))
            entry = entries[key] = CacheEntry(key, value, size, now, ttl)
            self.total_bytes += size
            self._puts += 1
            fifo = self._fifo_default
            if ttl == self.ttl_seconds:
                fifo.append(entry)
            else:
                self._fifo_custom.append(entry)
                self._seq += 1
                heapq.heappush(self._custom_heap, (now + ttl, self._seq, entry))
                self._custom_live += 1
            head = fifo[0] if fifo else None
            if (head is not None and (entries.get(head.key) is not head or _expired(head, now))) or (
                self._custom_heap and self._custom_heap[0][0] <= now
            ):
                self._expire_locked(now, removed)
            max_bytes = self.max_bytes
            if len(entries) > self.max_size or (max_bytes is not None and self.total_bytes > max_bytes):
                self._evict_over_limits_locked(removed)
            if len(fifo) + len(self._fifo_custom) > 2 * len(entries) + _COMPACT_SLACK or (
                len(self._custom_heap) > 2 * self._custom_live + _COMPACT_SLACK
            ):
                self._compact_locked()
        return removed

    def pop(self, key: Hashable, default: Any = None) -> Any:
        """Remove `key` and return its value (`default` if absent or expired)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return default
            expired = _expired(entry, self._clock())
            removed = self._remove_locked(entry, RemovalCause.EXPIRED if expired else RemovalCause.EXPLICIT)
        self._notify(removed)
        return default if expired else removed[1]

    def delete(self, key: Hashable) -> bool:
        """Remove `key`; True if a live value was removed."""
        return self.pop(key, _MISSING) is not _MISSING

    def clear(self, cause: RemovalCause | str = RemovalCause.EXPLICIT) -> int:
        """Remove every entry; returns the bytes freed."""
        return self.shrink_to(0, cause=cause)

    def cleanup_expired(self) -> int:
        """Remove expired entries at a cost proportional to what expired; returns how many."""
        removed: list[tuple[Hashable, Any, RemovalCause]] = []
        with self._lock:
            self._expire_locked(self._clock(), removed)
        self._notify(removed)
        return len(removed)

    def shrink_to(self, target_bytes: int, cause: RemovalCause | str = RemovalCause.PRESSURE) -> int:
        """Evict coldest entries until the cache holds at most `target_bytes`; returns the bytes freed."""
        if isinstance(target_bytes, bool) or not isinstance(target_bytes, int) or target_bytes < 0:
            raise ValueError(f"target_bytes must be a non-negative integer, got {target_bytes!r}")
        cause = RemovalCause(cause)
        removed: list[tuple[Hashable, Any, RemovalCause]] = []
        with self._lock:
            before = self.total_bytes
            while self._entries and self.total_bytes > target_bytes:
                removed.append(self._remove_locked(next(iter(self._entries.values())), cause))
            if not self._entries:
                self._reset_queues_locked()
            freed = before - self.total_bytes
        self._notify(removed)
        return freed

    def resize(self, max_size: int | None = None, max_bytes: int | None = None) -> int:
        """Change the limits at run time (None keeps a limit as it is); returns the bytes evicted."""
        new_size = _check_positive_int("max_size", max_size, allow_none=True)
        new_bytes = _check_positive_int("max_bytes", max_bytes, allow_none=True)
        removed: list[tuple[Hashable, Any, RemovalCause]] = []
        with self._lock:
            before = self.total_bytes
            if new_size is not None:
                self.max_size = new_size
            if new_bytes is not None:
                self.max_bytes = new_bytes
            self._evict_over_limits_locked(removed)
            freed = before - self.total_bytes
        self._notify(removed)
        return freed

    # ---------------------------------------------------------- single flight

    def get_or_load(self, key: Hashable, loader: Callable[[], Any]) -> Any:
        """Return the cached value or run `loader()` once for all concurrent callers of a missing key.

        A loader exception reaches every waiting caller and nothing is cached.
        """
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not _expired(entry, self._clock()):
                return entry.value
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = Flight()
        if not leader:
            return flight.result()
        try:
            flight.value = self._load(key, loader)
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return flight.value

    async def aget_or_load(self, key: Hashable, loader: Callable[[], Awaitable[Any]]) -> Any:
        """Async `get_or_load`: concurrent tasks for a missing key await one `loader()` call."""
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        loop = asyncio.get_running_loop()
        with self._lock:
            future = self._async_flights.get(key)
            leader = future is None or future.get_loop() is not loop
            if leader:
                future = self._async_flights[key] = loop.create_future()
        if not leader:
            return await asyncio.shield(future)
        started = time.perf_counter()
        try:
            value = await loader()
        except BaseException as error:
            self._record_load(started, ok=False)
            future.set_exception(error)
            future.exception()  # the error is re-raised below; waiters read it from the future
            raise
        finally:
            with self._lock:
                if self._async_flights.get(key) is future:
                    del self._async_flights[key]
        self._record_load(started, ok=True)
        self._store_loaded(key, value)
        future.set_result(value)
        return value

    def _load(self, key: Hashable, loader: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            value = loader()
        except BaseException:
            self._record_load(started, ok=False)
            raise
        self._record_load(started, ok=True)
        self._store_loaded(key, value)
        return value

    def _record_load(self, started: float, *, ok: bool) -> None:
        with self._lock:
            self._load_seconds += time.perf_counter() - started
            if ok:
                self._loads += 1
            else:
                self._load_failures += 1

    def _store_loaded(self, key: Hashable, value: Any) -> None:
        try:
            self.put(key, value)
        except ValueError as error:
            logger.warning("cache %s: loaded value for %r not cached: %s", self.name, key, error)

    # ------------------------------------------------------------- listeners

    def add_listener(self, listener: EvictionListener) -> None:
        """Also call `listener(key, value, cause)` whenever an entry leaves the cache."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: EvictionListener) -> None:
        with self._lock:
            self._listeners = tuple(fn for fn in self._listeners if fn is not listener)

    def _notify(self, removed: list[tuple[Hashable, Any, RemovalCause]] | tuple[Hashable, Any, RemovalCause] | None) -> None:
        if not removed or not self._listeners:
            return
        if isinstance(removed, tuple):
            removed = [removed]
        for listener in self._listeners:
            for key, value, cause in removed:
                try:
                    listener(key, value, cause)
                except Exception:
                    logger.exception("cache %s: eviction listener failed for key %r (%s)", self.name, key, cause.value)

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        """Counters and gauges, O(1)."""
        with self._lock:
            now = self._clock()
            oldest = self._oldest_timestamp_locked()
            hits, misses = self._hits, self._misses
            evictions = {cause.value: count for cause, count in self._evictions.items()}
            return {
                "name": self.name,
                "hits": hits,
                "misses": misses,
                "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
                "puts": self._puts,
                "evictions": evictions,
                "evictions_total": sum(evictions.values()),
                "entries": len(self._entries),
                "total_bytes": self.total_bytes,
                "max_bytes": self.max_bytes,
                "loads": self._loads,
                "load_failures": self._load_failures,
                "load_seconds": self._load_seconds,
                "ttl_seconds": self.ttl_seconds,
                "size": len(self._entries),
                "max_size": self.max_size,
                "total_size_mb": self.total_bytes / (1024 * 1024),
                "oldest_entry_age": 0.0 if oldest is None else max(0.0, now - oldest),
            }

    def coldest_access_time(self) -> float | None:
        """Last access time of the least recently used entry (None when empty); used by shared budgets."""
        with self._lock:
            for entry in self._entries.values():
                return entry.last_accessed
            return None

    def evict_coldest(self, cause: RemovalCause = RemovalCause.SIZE) -> int:
        """Evict the least recently used entry; returns the bytes freed (0 when empty)."""
        with self._lock:
            if not self._entries:
                return 0
            entry = next(iter(self._entries.values()))
            freed = entry.size_bytes
            removed = self._remove_locked(entry, cause)
        self._notify(removed)
        return freed

    # -------------------------------------------------------------- internals

    def _remove_locked(self, entry: CacheEntry, cause: RemovalCause) -> tuple[Hashable, Any, RemovalCause]:
        """Remove live `entry`; the queues drop it lazily. Returns the listener triple."""
        del self._entries[entry.key]
        return self._unlink(entry, cause)

    def _unlink(self, entry: CacheEntry, cause: RemovalCause) -> tuple[Hashable, Any, RemovalCause]:
        """Account for an entry already taken out of the mapping and let go of its value."""
        self.total_bytes -= entry.size_bytes
        self._evictions[cause] += 1
        if entry.ttl_seconds != self.ttl_seconds:
            self._custom_live -= 1
        value, entry.value = entry.value, None
        return (entry.key, value, cause)

    def _is_live(self, entry: CacheEntry) -> bool:
        return self._entries.get(entry.key) is entry

    def _expire_locked(self, now: float, removed: list[tuple[Hashable, Any, RemovalCause]]) -> None:
        fifo = self._fifo_default
        while fifo:
            entry = fifo[0]
            if not self._is_live(entry):
                fifo.popleft()
            elif _expired(entry, now):
                fifo.popleft()
                removed.append(self._remove_locked(entry, RemovalCause.EXPIRED))
            else:
                break
        heap = self._custom_heap
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)
            entry = item[2]
            if not self._is_live(entry):
                continue
            if not _expired(entry, now):  # timestamp + ttl rounded below now - timestamp
                heapq.heappush(heap, item)
                break
            removed.append(self._remove_locked(entry, RemovalCause.EXPIRED))

    def _evict_over_limits_locked(self, removed: list[tuple[Hashable, Any, RemovalCause]]) -> None:
        entries = self._entries
        max_bytes = self.max_bytes
        while len(entries) > self.max_size or (max_bytes is not None and self.total_bytes > max_bytes):
            removed.append(self._unlink(entries.popitem(last=False)[1], RemovalCause.SIZE))

    def _compact_locked(self) -> None:
        """Drop removed entries from the queues once they outnumber the live ones (amortised O(1))."""
        live = len(self._entries)
        if len(self._fifo_default) + len(self._fifo_custom) > 2 * live + _COMPACT_SLACK:
            self._fifo_default = deque(e for e in self._fifo_default if self._is_live(e))
            self._fifo_custom = deque(e for e in self._fifo_custom if self._is_live(e))
        if len(self._custom_heap) > 2 * self._custom_live + _COMPACT_SLACK:
            self._custom_heap = [item for item in self._custom_heap if self._is_live(item[2])]
            heapq.heapify(self._custom_heap)

    def _reset_queues_locked(self) -> None:
        self._fifo_default.clear()
        self._fifo_custom.clear()
        self._custom_heap.clear()
        self._custom_live = 0

    def _oldest_timestamp_locked(self) -> float | None:
        oldest = None
        for fifo in (self._fifo_default, self._fifo_custom):
            while fifo and not self._is_live(fifo[0]):
                fifo.popleft()
            if fifo and (oldest is None or fifo[0].timestamp < oldest):
                oldest = fifo[0].timestamp
        return oldest

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.keys())

    def __repr__(self) -> str:
        return (
            f"ManagedCache(name={self.name!r}, entries={len(self._entries)}, total_bytes={self.total_bytes}, "
            f"max_size={self.max_size}, max_bytes={self.max_bytes}, ttl_seconds={self.ttl_seconds})"
        )
