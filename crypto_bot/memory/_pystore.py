"""The pure-Python entry store behind ManagedCache: the specification of the C store `_cachecore`.

Covers: the store's contract, method for method, with the same results, eviction order, removal
causes, counters and expiry as `_cachecore.CacheCore` (`get`, `in`, `len`,
`coldest_access_time()`, the read-only limits and counters, and the private `_store`, `_take`,
`_expire`, `_evict`, ... that ManagedCache builds on). As `functools` keeps a pure-Python
`_lru_cache_wrapper` beside the C one, this store is what the C store must behave like, and it
runs where the C one cannot: no compiler at install time, or a free-threaded interpreter (importing
the C store would turn the GIL back on). `cache.py` chooses; `tests/memory` run every cache test
against both. Not covered: argument validation for users, sizing, budgets and listeners
(ManagedCache's, in `cache.py`).

Thread safety: one re-entrant lock per store. Re-entrant, because Python code runs inside the
store's calls and may call the cache again on the same thread: a key's `__hash__`/`__eq__`, the
clock, `__index__`/`__float__` of arguments, finalizers of dropped objects, and garbage
collections started by any allocation of a GC-tracked object (their finalizers and gc.callbacks).
The rule, as in the C store: no Python code runs while the structure is inconsistent, and what
was read before Python code could run is read again after it. So each call hashes the key and
reads the clock before it changes anything; allocates what it needs (the new entry, the list of
removed entries) first; changes the structure with plain attribute writes only (the links below;
list growth is no GC-tracked allocation); and builds the (key, value, cause) triples it returns
once the lock is released. Removed entries are never reused, so a triple always shows what left.
Hidden allocations count too: a with-statement allocates a bound `__exit__` and `min`/`max`
an argument tuple (either may start a collection), so neither appears mid-change.

Layout: a dict from key to entry for lookups; the recency list and the two put-order expiry
queues are doubly linked lists through the entries' own slots (no allocation to move an entry);
per-entry TTLs sit in a binary min-heap laid out as the C one, so ties expire in the same order.
Changing the dict hashes the key again, which may run Python code, so removals leave the entry in
the dict, dead (the lookups skip it), and the dict is rebuilt from the live entries once the dead
outnumber them (`_compact`). Values are released at once; a removed key stays referenced by the
dict until that rebuild.

Listeners never run under the lock: the store returns what it removed and ManagedCache notifies
(`_notify` is also called by `get` itself, after releasing the lock, for an expired entry it found).
"""

from __future__ import annotations

import math
import operator
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

_EXPIRED, _SIZE, _PRESSURE, _EXPLICIT, _REPLACED = range(5)
_CAUSE_COUNT = 5
_ALIVE = -1  # the `cause` of an entry that is in the cache
_INF = math.inf
_LLONG_MAX = (1 << 63) - 1

Removed = list[tuple[Hashable, Any, Any]]


class _Entry:
    """One cached value and its places in the recency list, its expiry queue and (own TTL) the heap."""

    __slots__ = (
        "key",
        "value",
        "size",
        "timestamp",  # put time on the store's clock
        "expires",  # timestamp + ttl; +inf without one; -inf once removed
        "last_accessed",
        "access_count",  # get hits
        "heap_pos",  # index in the heap; -1 for default-TTL entries
        "cause",  # _ALIVE while cached, then the removal cause code
        "prev",  # recency list: least recently used first
        "next",
        "queue_prev",  # the put-order queue of its kind (default TTL or own TTL)
        "queue_next",
    )

    def __init__(self) -> None:
        self.key = self.value = None
        self.size = self.access_count = 0
        self.timestamp = self.expires = self.last_accessed = 0.0
        self.heap_pos = -1
        self.cause = _ALIVE
        self.prev = self.next = self.queue_prev = self.queue_next = None


ENTRY_BYTES = sys.getsizeof(_Entry())  # the record alone; the dict slot and the floats come on top


def _sentinel() -> _Entry:
    """The root of an empty circular list (recency and queue links both point at itself)."""
    root = _Entry()
    root.prev = root.next = root.queue_prev = root.queue_next = root
    return root


def _as_double(value: Any) -> float:
    """`value` as C's PyFloat_AsDouble reads it: floats, ints and objects with __float__ or __index__, never text."""
    if isinstance(value, (str, bytes, bytearray)):
        raise TypeError(f"must be real number, not {type(value).__name__}")
    return float(value)


def _unhashable(key: object) -> TypeError:
    return TypeError(f"cache keys must be hashable; got an unhashable {type(key).__name__}")


def _optional(value: float) -> float | None:
    return None if math.isinf(value) else value


class CacheCore:
    """CacheCore(max_size, max_bytes, ttl_seconds, clock, causes)

    The entry store behind ManagedCache: LRU + TTL + byte accounting + counters, in Python.
    Subclasses provide _notify(removed) for removals found by get.
    """

    __slots__ = (
        "_store_lock",
        "_table",
        "_recency",
        "_default_queue",
        "_custom_queue",
        "_heap",
        "_store_clock",
        "_causes",
        "_max_size",
        "_max_bytes",
        "_ttl",
        "_last_now",
        "_used",
        "_dead",
        "_pinned",
        "_version",
        "_total_bytes",
        "_hits",
        "_misses",
        "_puts",
        "_evictions",
        "_expiry_checks",
        "_clock_regressions",
    )

    _store_lock: threading.RLock
    _table: dict[Hashable, _Entry]  # live entries, and dead ones until the next _compact
    _recency: _Entry  # sentinel: .next least recently used, .prev most recently used
    _default_queue: _Entry  # sentinel of the default-TTL entries in put order, which is expiry order
    _custom_queue: _Entry  # sentinel of the own-TTL entries in put order (for the oldest timestamp)
    _heap: list[_Entry]  # own-TTL entries, a min-heap on `expires`
    _used: int  # live entries
    _dead: int  # dead entries still in _table
    _pinned: int  # > 0 while a call is inside a _table operation that hashes: no _compact then
    _version: int  # bumped whenever an entry joins or leaves

    def __new__(cls, *args: Any, **kwargs: Any) -> CacheCore:
        self = super().__new__(cls)
        self._store_lock = threading.RLock()
        self._table = {}
        self._recency = _sentinel()
        self._default_queue = _sentinel()
        self._custom_queue = _sentinel()
        self._heap = []
        self._store_clock = time.monotonic
        self._causes = (None,) * _CAUSE_COUNT
        self._max_size = sys.maxsize
        self._max_bytes = -1
        self._ttl = _INF
        self._last_now = -_INF
        self._used = self._dead = self._pinned = self._version = 0
        self._total_bytes = self._hits = self._misses = self._puts = 0
        self._evictions = [0] * _CAUSE_COUNT
        self._expiry_checks = self._clock_regressions = 0
        return self

    def __init__(self, max_size: int, max_bytes: int | None, ttl_seconds: float | None, clock: Callable[[], float], causes: tuple) -> None:
        max_size = operator.index(max_size)
        max_bytes_value = -1 if max_bytes is None else operator.index(max_bytes)
        ttl = _INF if ttl_seconds is None else _as_double(ttl_seconds)
        if max_size < 1 or (max_bytes is not None and max_bytes_value < 1) or not ttl > 0:
            raise ValueError("max_size, max_bytes and ttl_seconds must be positive")
        if not callable(clock) or not isinstance(causes, tuple) or len(causes) != _CAUSE_COUNT:
            raise TypeError("clock must be callable and causes a tuple of 5 removal causes")
        with self._store_lock:
            if self._used > 0:
                raise RuntimeError("a cache can only be configured while empty")
            self._max_size = max_size
            self._max_bytes = max_bytes_value
            self._ttl = ttl
            self._last_now = -_INF  # a new clock starts its own time; the store is empty
            self._store_clock = clock
            self._causes = causes

    def __del__(self) -> None:
        # The lists link entries both ways; a dropped store breaks those cycles so that its entries
        # and values are freed now, not by the cycle collector. No lock: nothing else can reach it.
        root = self._recency
        entry = root.next
        while entry is not root and entry is not None:
            following = entry.next
            entry.prev = entry.next = entry.queue_prev = entry.queue_next = None
            entry = following
        for sentinel in (root, self._default_queue, self._custom_queue):
            sentinel.prev = sentinel.next = sentinel.queue_prev = sentinel.queue_next = sentinel
        self._used = self._total_bytes = self._dead = 0
        self._heap = []
        self._table = {}

    # ------------------------------------------------------------------ reads

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value for `key`, marked most recently used; `default` on a miss."""
        try:
            hash(key)
        except TypeError:
            raise _unhashable(key) from None
        lock = self._store_lock
        lock.acquire()  # the hot path: acquire/release cost half of a with-statement on 3.11
        try:
            now = self._store_clock()
            if now.__class__ is float and now >= self._last_now:  # _read_clock's common case, inline
                self._last_now = now
            else:
                now = self._held_time(now)
            entry = self._table.get(key)
            if self._last_now > now:  # a key's __eq__ read the clock again: time never goes back
                now = self._last_now
            if entry is not None and now < entry.expires:
                previous, following = entry.prev, entry.next
                previous.next = following
                following.prev = previous
                root = self._recency
                last = root.prev
                entry.prev = last
                entry.next = root
                last.next = root.prev = entry
                entry.access_count += 1
                entry.last_accessed = now
                self._hits += 1
                return entry.value
            self._misses += 1
            if entry is None or entry.cause != _ALIVE:
                return default
            self._unlink(entry, _EXPIRED)
            self._compact()
        finally:
            lock.release()
        self._notify(self._triples([entry]))
        return default

    def _peek(self, key: Hashable, default: Any, /) -> Any:
        """_peek(key, default) -> the live value for key, or default; no refresh, no stats."""
        entry, now = self._find(key)
        return entry.value if entry is not None and now < entry.expires else default

    def __contains__(self, key: Hashable) -> bool:
        entry, now = self._find(key)
        return entry is not None and now < entry.expires

    def __len__(self) -> int:
        return self._used

    def _entry(self, key: Hashable, /) -> tuple[Any, int, float, float, int] | None:
        """_entry(key) -> (value, size_bytes, timestamp, last_accessed, access_count) or None; no refresh."""
        try:
            hash(key)
        except TypeError:
            raise _unhashable(key) from None
        with self._store_lock:
            entry = self._table.get(key)
            if entry is None or entry.cause != _ALIVE:
                return None
            value, size, timestamp, last_accessed, access_count = (
                entry.value, entry.size, entry.timestamp, entry.last_accessed, entry.access_count
            )
        return value, size, timestamp, last_accessed, access_count

    def _keys(self, live_only: Any, /) -> list[Hashable]:
        """_keys(live_only) -> keys, least recently used first (live_only: unexpired ones)."""
        keys: list[Hashable] = []
        live_only = operator.truth(live_only)
        with self._store_lock:
            now = self._read_clock() if live_only else -_INF
            root = self._recency
            entry = root.next
            while entry is not root:  # appending grows the list without a GC-tracked allocation
                if now < entry.expires:
                    keys.append(entry.key)
                entry = entry.next
        return keys

    def _items(self) -> list[tuple[Hashable, Any]]:
        """_items() -> [(key, value)] of unexpired entries, least recently used first."""
        keys: list[Hashable] = []
        values: list[Any] = []
        with self._store_lock:
            now = self._read_clock()
            root = self._recency
            entry = root.next
            while entry is not root:
                if now < entry.expires:
                    keys.append(entry.key)
                    values.append(entry.value)
                entry = entry.next
        return list(zip(keys, values))  # the pairs are allocated once the walk is over

    def _counters(self) -> tuple[int, int, int, tuple[int, ...], int, int, float | None]:
        """_counters() -> (hits, misses, puts, evictions by cause code, entries, total_bytes, oldest timestamp or None)."""
        with self._store_lock:
            oldest = _INF
            for queue in (self._default_queue, self._custom_queue):
                head = queue.queue_next
                if head is not queue and head.timestamp < oldest:  # no min(): its argument tuple is an allocation
                    oldest = head.timestamp
            expired, size, pressure, explicit, replaced = self._evictions
            hits, misses, puts, used, total_bytes = self._hits, self._misses, self._puts, self._used, self._total_bytes
        return hits, misses, puts, (expired, size, pressure, explicit, replaced), used, total_bytes, _optional(oldest)

    def coldest_access_time(self) -> float | None:
        """Last access time of the least recently used entry, or None when empty."""
        with self._store_lock:
            coldest = self._recency.next
            return None if coldest is self._recency else coldest.last_accessed

    @property
    def total_bytes(self) -> int:
        """Bytes charged for the entries held."""
        return self._total_bytes

    @property
    def max_size(self) -> int:
        """Entry cap (change with resize)."""
        return self._max_size

    @property
    def max_bytes(self) -> int | None:
        """Byte budget or None (change with resize)."""
        return None if self._max_bytes < 0 else self._max_bytes

    @property
    def ttl_seconds(self) -> float | None:
        """Default time to live in seconds, or None."""
        return _optional(self._ttl)

    @property
    def expiry_checks(self) -> int:
        """Entries looked at by expiry sweeps so far."""
        return self._expiry_checks

    @property
    def clock_regressions(self) -> int:
        """Clock readings below an earlier one (the store held its time at the earlier one)."""
        return self._clock_regressions

    # ----------------------------------------------------------------- writes

    def _store(self, key: Hashable, value: Any, size: int, ttl: float | None, /) -> Removed | None:
        """_store(key, value, size, ttl_or_None) -> removed triples or None

        Insert or replace; then expire what is due and evict least recently used entries over the limits.
        """
        removed: list[_Entry] = []
        entry = _Entry()
        lock = self._store_lock
        try:
            lock.acquire()  # as in get: cheaper than a with-statement
            try:
                self._store_locked(entry, key, value, size, ttl, removed)
            finally:
                lock.release()
        except BaseException:
            if removed:  # a key's __hash__/__eq__ failed after it had replaced the old entry
                self._notify(self._triples(removed))
            raise
        return self._triples(removed)

    def _store_locked(self, entry: _Entry, key: Hashable, value: Any, size: int, ttl: float | None, removed: list[_Entry]) -> None:
        size = operator.index(size)
        if size < 0:
            raise ValueError(f"size_bytes must be a non-negative number of bytes, got {size}")
        if size > _LLONG_MAX - self._total_bytes:
            raise OverflowError(f"size_bytes={size} would take the cache past 2**63 bytes")
        ttl_value = self._ttl
        if ttl is not None:
            ttl_value = _as_double(ttl)
            if not ttl_value > 0:
                raise ValueError(f"ttl_seconds must be a positive number of seconds, got {ttl!r}")
        custom = ttl_value != self._ttl
        try:
            hash(key)
        except TypeError:
            raise _unhashable(key) from None
        now = self._read_clock()
        # Take out whatever holds the key, then insert `entry`: both hash the key (Python code),
        # and each runs while the structure is whole. If that code stored the key again meanwhile,
        # setdefault finds it and the loop takes that out too: this put replaces it.
        self._pinned += 1
        try:
            while True:
                previous = self._table.pop(key, None)
                if previous is not None:
                    if previous.cause == _ALIVE:
                        self._unlink(previous, _REPLACED)
                        removed.append(previous)
                    self._dead -= 1  # out of the table now, dead either way
                if self._table.setdefault(key, entry) is entry:
                    break
        finally:
            self._pinned -= 1
        # From setdefault to the last link below, `entry` is in the table but not yet linked: nothing
        # here may run Python code, not even an allocation (a collection could run a finalizer).
        if self._last_now > now:  # the table updates ran Python code that read the clock again
            now = self._last_now
        entry.key = key
        entry.value = value
        entry.size = size
        entry.timestamp = entry.last_accessed = now
        entry.expires = now + ttl_value
        root = self._recency
        last = root.prev
        entry.prev = last
        entry.next = root
        last.next = root.prev = entry
        queue = self._custom_queue if custom else self._default_queue
        last = queue.queue_prev
        entry.queue_prev = last
        entry.queue_next = queue
        last.queue_next = queue.queue_prev = entry
        if custom:
            self._heap.append(entry)  # grows without a GC-tracked allocation
            self._heap_sift_up(len(self._heap) - 1)
        self._used += 1
        self._total_bytes += size
        self._puts += 1
        self._version += 1
        self._expire_due(now, removed)
        self._evict_over_limits(removed)
        self._compact()

    def _take(self, key: Hashable, /) -> Removed | None:
        """_take(key) -> [(key, value, cause)] or None

        Remove `key` (cause expired if it had expired, else explicit).
        """
        try:
            hash(key)
        except TypeError:
            raise _unhashable(key) from None
        with self._store_lock:
            now = self._read_clock()
            self._pinned += 1
            try:
                entry = self._table.pop(key, None)
            finally:
                self._pinned -= 1
            if entry is None:
                return None
            self._dead -= 1  # out of the table: once unlinked below (if live), it is counted nowhere
            if entry.cause != _ALIVE:
                self._compact()
                return None
            if self._last_now > now:
                now = self._last_now
            self._unlink(entry, _EXPLICIT if now < entry.expires else _EXPIRED)
            self._compact()
        return self._triples([entry])

    def _expire(self) -> Removed | None:
        """_expire() -> removed triples or None: remove what has expired, at a cost proportional to it."""
        removed: list[_Entry] = []
        with self._store_lock:
            self._expire_due(self._read_clock(), removed)
            self._compact()
        return self._triples(removed)

    def _evict(self, target_bytes: int, cause: Any, /) -> tuple[int, Removed | None]:
        """_evict(target_bytes, cause) -> (bytes freed, removed triples or None)

        Remove least recently used entries until at most target_bytes remain (-1: all of them).
        """
        target = operator.index(target_bytes)
        code = self._cause_code(cause)
        removed: list[_Entry] = []
        freed = 0
        with self._store_lock:
            root = self._recency
            while self._total_bytes > target and root.next is not root:
                entry = root.next
                freed += entry.size
                self._unlink(entry, code)
                removed.append(entry)
            self._compact()
        return freed, self._triples(removed)

    def _evict_coldest(self, cause: Any, /) -> tuple[int, Removed | None]:
        """_evict_coldest(cause) -> (bytes freed, removed triples or None): remove the least recently used entry."""
        code = self._cause_code(cause)
        with self._store_lock:
            entry = self._recency.next
            if entry is self._recency:
                return 0, None
            self._unlink(entry, code)
            self._compact()
        return entry.size, self._triples([entry])

    def _set_limits(self, max_size: int, max_bytes: int | None, /) -> tuple[int, Removed | None]:
        """_set_limits(max_size, max_bytes_or_None) -> (bytes freed, removed triples or None)

        Change the limits and evict least recently used entries until they hold.
        """
        max_size = operator.index(max_size)
        max_bytes_value = -1 if max_bytes is None else operator.index(max_bytes)
        if max_size < 1 or (max_bytes is not None and max_bytes_value < 1):
            raise ValueError("max_size and max_bytes must be positive")
        removed: list[_Entry] = []
        with self._store_lock:
            self._max_size = max_size
            self._max_bytes = max_bytes_value
            self._evict_over_limits(removed)
            self._compact()
        return sum(entry.size for entry in removed), self._triples(removed)

    # ------------------------------------------------------------- internals

    def _read_clock(self) -> float:
        """The clock's reading, held at the latest one if the clock went back (lock held)."""
        return self._held_time(self._store_clock())

    def _held_time(self, reading: Any) -> float:
        """The store's time for a clock reading: the reading, or the latest one if it is lower (counted)."""
        now = reading if reading.__class__ is float else _as_double(reading)
        if now != now:
            raise ValueError("the cache clock returned NaN")
        if now < self._last_now:
            self._clock_regressions += 1
            return self._last_now
        self._last_now = now
        return now

    def _find(self, key: Hashable) -> tuple[_Entry | None, float]:
        """Hash, read the clock, look up: the live or expired entry for `key` (None if absent) and the time."""
        try:
            hash(key)
        except TypeError:
            raise _unhashable(key) from None
        with self._store_lock:
            now = self._read_clock()
            entry = self._table.get(key)
            if entry is not None and entry.cause != _ALIVE:
                entry = None
            return entry, (now if now >= self._last_now else self._last_now)

    def _cause_code(self, cause: Any) -> int:
        for code, known in enumerate(self._causes):
            if known is cause:
                return code
        raise ValueError(f"unknown removal cause {cause!r}")

    def _unlink(self, entry: _Entry, code: int) -> None:
        """Take a live entry out of the lists and the heap and account for it (lock held, no Python code runs).

        It stays in the table, dead, until `_compact`; a caller that popped it from the table uncounts it.
        """
        previous, following = entry.prev, entry.next
        previous.next = following
        following.prev = previous
        previous, following = entry.queue_prev, entry.queue_next
        previous.queue_next = following
        following.queue_prev = previous
        if entry.heap_pos >= 0:
            self._heap_remove(entry)
        entry.prev = entry.next = entry.queue_prev = entry.queue_next = None
        entry.cause = code
        entry.expires = -_INF  # lookups that find it in the table treat it as absent
        self._used -= 1
        self._dead += 1
        self._total_bytes -= entry.size
        self._evictions[code] += 1
        self._version += 1

    def _expire_due(self, now: float, removed: list[_Entry]) -> None:
        queue = self._default_queue
        while queue.queue_next is not queue:
            entry = queue.queue_next
            self._expiry_checks += 1
            if now < entry.expires:
                break
            self._unlink(entry, _EXPIRED)
            removed.append(entry)
        heap = self._heap
        while heap:
            self._expiry_checks += 1
            entry = heap[0]
            if entry.expires > now:
                break
            self._unlink(entry, _EXPIRED)
            removed.append(entry)

    def _evict_over_limits(self, removed: list[_Entry]) -> None:
        root = self._recency
        while (self._used > self._max_size or 0 <= self._max_bytes < self._total_bytes) and root.next is not root:
            entry = root.next
            self._unlink(entry, _SIZE)
            removed.append(entry)

    def _compact(self) -> None:
        """Rebuild the table from the live entries once the dead ones outnumber them (lock held).

        Rebuilding hashes every live key, which may run Python code that changes the cache: the new
        table replaces the old one only if no entry joined or left meanwhile, else it starts over. A
        key whose hash fails now keeps the old table, dead entries and all, until that key leaves
        (the C store never hashes a key twice); the cache keeps working.
        """
        while self._dead > self._used and not self._pinned:
            version = self._version
            fresh: dict[Hashable, _Entry] = {}
            root = self._recency
            entry = root.next
            try:
                while entry is not root and self._version == version:
                    fresh[entry.key] = entry
                    entry = entry.next
            except Exception:
                return
            if self._version == version:
                old = self._table  # dropped only once the new table is in place: finalizers see a whole store
                self._table = fresh
                self._dead = 0
                del old

    def _triples(self, removed: list[_Entry]) -> Removed | None:
        """(key, value, cause) for each removed entry, in removal order; None if there are none.

        Built after the lock is released: removed entries are never reused, so nothing changes them.
        """
        if not removed:
            return None
        causes = self._causes
        triples = [(entry.key, entry.value, causes[entry.cause]) for entry in removed]
        for entry in removed:
            entry.value = None  # the triple holds the value now; a dead entry in the table must not
        return triples

    # ------------------------------------------------------------------- heap

    def _heap_sift_up(self, index: int) -> None:
        heap = self._heap
        entry = heap[index]
        while index > 0:
            parent = (index - 1) >> 1
            moved = heap[parent]
            if moved.expires <= entry.expires:
                break
            heap[index] = moved
            moved.heap_pos = index
            index = parent
        heap[index] = entry
        entry.heap_pos = index

    def _heap_sift_down(self, index: int) -> None:
        heap = self._heap
        count = len(heap)
        entry = heap[index]
        while True:
            child = 2 * index + 1
            if child >= count:
                break
            if child + 1 < count and heap[child + 1].expires < heap[child].expires:
                child += 1
            moved = heap[child]
            if entry.expires <= moved.expires:
                break
            heap[index] = moved
            moved.heap_pos = index
            index = child
        heap[index] = entry
        entry.heap_pos = index

    def _heap_remove(self, entry: _Entry) -> None:
        heap = self._heap
        index = entry.heap_pos
        last = heap.pop()
        if last is not entry:
            heap[index] = last
            last.heap_pos = index
            self._heap_sift_up(index)
            self._heap_sift_down(last.heap_pos)
        entry.heap_pos = -1

    # ---------------------------------------------------------------- checks

    def _verify(self) -> None:
        """_verify() -> None; raises AssertionError naming the first broken invariant of the store."""
        with self._store_lock:
            broken = self._broken_invariant()
        if broken is not None:
            raise AssertionError(broken)

    def _broken_invariant(self) -> str | None:
        """The first broken invariant, or None (lock held).

        The structural walk allocates nothing, so no Python code runs during it; the check that each
        entry is found under its key hashes the keys, and starts over if that changed the cache.
        """
        while True:
            table = self._table
            values = iter(table.values())  # allocated before the walk, which then allocates nothing
            version = self._version
            if table is not self._table:
                continue
            broken = self._broken_structure(values)
            if broken is not None:
                return broken
            root = self._recency
            entry = root.next
            while entry is not root and self._version == version:
                if self._table.get(entry.key) is not entry:
                    if self._version == version:
                        return "an entry cannot be found under its key"
                    break
                entry = entry.next
            if self._version == version:
                return None

    def _broken_structure(self, table_values: Any) -> str | None:
        listed = 0
        size_sum = 0
        root = self._recency
        entry = root.next
        while entry is not root:
            listed += 1
            if entry.next.prev is not entry or listed > self._used or entry.cause != _ALIVE:
                return "the recency list is not a proper list of the entries"
            size_sum += entry.size
            entry = entry.next
        live_in_table = dead_in_table = 0
        for entry in table_values:
            if entry.cause == _ALIVE:
                live_in_table += 1
            else:
                dead_in_table += 1
        if listed != self._used or live_in_table != self._used:
            return "the entry count, the table and the recency list disagree"
        if dead_in_table != self._dead or self._dead > self._used:
            return "the table's dead entries are miscounted or outnumber the live ones"
        if size_sum != self._total_bytes:
            return "total_bytes is not the sum of the entry sizes"
        heap = self._heap
        index = 0
        while index < len(heap):
            entry = heap[index]
            if entry.heap_pos != index or (index > 0 and heap[(index - 1) >> 1].expires > entry.expires):
                return "the expiry heap is out of order"
            index += 1
        default_count = self._queue_length(self._default_queue, custom=False)
        custom_count = self._queue_length(self._custom_queue, custom=True)
        if default_count < 0 or custom_count < 0 or default_count + custom_count != self._used or custom_count != len(heap):
            return "the expiry queues do not hold each entry once, in put order"
        if self._used > self._max_size or 0 <= self._max_bytes < self._total_bytes:
            return "the cache is over its limits"
        return None

    def _queue_length(self, queue: _Entry, *, custom: bool) -> int:
        """Entries on a put-order queue, checking links, heap membership and timestamps in order; -1 if broken."""
        count = 0
        previous_timestamp = -_INF
        heap = self._heap
        entry = queue.queue_next
        while entry is not queue:
            position = entry.heap_pos
            in_heap = 0 <= position < len(heap) and heap[position] is entry
            if (
                entry.queue_next.queue_prev is not entry
                or count >= self._used
                or in_heap != custom
                or (not custom and position != -1)
                or entry.timestamp < previous_timestamp
            ):
                return -1
            previous_timestamp = entry.timestamp
            count += 1
            entry = entry.queue_next
        return count
