"""ManagedCache: a thread-safe LRU cache with TTL expiry, an honest byte budget, stats and listeners.

This module covers one cache and the choice of its entry store. A byte budget shared by several
caches lives in `budget.py`; shrinking caches under memory pressure is decided in `pressure.py`
and done by `manager.py`, which calls `shrink_to`. Sizes come from `sizing.sizeof` unless the
caller knows better.

The entries live in an entry store (hash table, recency list, expiry queues, counters) with one
contract and two implementations: the C `_cachecore.CacheCore`, each of whose calls is atomic
under the GIL (see its header), and the pure-Python `_pystore.CacheCore`, its specification, with
a lock of its own. `get`, `in` and `len` are the store's; ManagedCache adds validation, sizing,
shared budgets, single flight and listeners. Listeners run after the store has let go of the
removed entries (and its lock); their exceptions are logged.

Which store: `CRYPTO_BOT_CACHE_BACKEND` = `c` or `python` forces one; unset, the C store when it
imports, else the Python one (the reason is logged once at INFO, when the first cache is built). On a free-threaded
interpreter running without the GIL the default is the Python store, because importing the C
store would turn the GIL on for the whole process. `cache_backend()` names the choice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any

from . import _pystore, validation
from .flight import Flight
from .sizing import sizeof

if TYPE_CHECKING:
    from .budget import SharedBudget

logger = logging.getLogger(__name__)

_MISSING: Any = object()


class RemovalCause(str, Enum):
    """Why an entry left the cache (the `cause` passed to eviction listeners)."""

    EXPIRED = "expired"
    SIZE = "size"
    PRESSURE = "pressure"
    EXPLICIT = "explicit"
    REPLACED = "replaced"


# The stores' cause codes index this tuple.
_CAUSES = (RemovalCause.EXPIRED, RemovalCause.SIZE, RemovalCause.PRESSURE, RemovalCause.EXPLICIT, RemovalCause.REPLACED)

EvictionListener = Callable[[Hashable, Any, RemovalCause], None]
Removed = list[tuple[Hashable, Any, RemovalCause]]

BACKEND_VARIABLE = "CRYPTO_BOT_CACHE_BACKEND"
BACKENDS = ("c", "python")


def _import_c_store() -> type:
    from ._cachecore import CacheCore

    return CacheCore


def _gil_enabled() -> bool:
    """False only on a free-threaded interpreter running without the GIL."""
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_gil_enabled is None else is_gil_enabled()


def _choose_store(requested: str | None, gil_enabled: bool, import_c_store: Callable[[], type]) -> tuple[str, type, str | None]:
    """(backend, store class, why the default is not the C store or None) for a CRYPTO_BOT_CACHE_BACKEND value."""
    choice = (requested or "").strip().lower()
    if choice not in ("", *BACKENDS):
        raise ValueError(f"{BACKEND_VARIABLE} must be one of {', '.join(BACKENDS)} (or unset), got {requested!r}")
    if choice == "python":
        return "python", _pystore.CacheCore, None
    if choice == "c":
        try:
            return "c", import_c_store(), None
        except ImportError as error:
            raise ImportError(
                f"{BACKEND_VARIABLE}=c but the C cache store crypto_bot.memory._cachecore does not import ({error}); "
                f"reinstall with a C compiler, or unset {BACKEND_VARIABLE} to use the pure-Python store"
            ) from error
    if not gil_enabled:
        return "python", _pystore.CacheCore, "the interpreter runs without the GIL, which importing the C store would turn on"
    try:
        return "c", import_c_store(), None
    except ImportError as error:
        return "python", _pystore.CacheCore, f"the C store does not import ({error})"


_BACKEND, _Store, _fallback_reason = _choose_store(os.environ.get(BACKEND_VARIABLE), _gil_enabled(), _import_c_store)


def _log_fallback_once() -> None:
    """Say why the cache runs on the Python store, once, when the first cache is built: logging is
    usually configured by then, and not yet at import time (the CLI imports before it configures)."""
    global _fallback_reason
    reason, _fallback_reason = _fallback_reason, None
    if reason is not None:
        logger.info("cache store: pure Python, because %s; set %s=c to require the C store", reason, BACKEND_VARIABLE)


def cache_backend() -> str:
    """The entry store ManagedCache runs on in this process: "c" or "python"."""
    return _BACKEND


class CacheEntry:
    """A snapshot of one entry for code written for the seed; `timestamp` is the put time on the cache's clock."""

    __slots__ = ("key", "value", "size_bytes", "timestamp", "last_accessed", "access_count")

    def __init__(self, key: Hashable, value: Any, size_bytes: int, timestamp: float, last_accessed: float, access_count: int):
        self.key = key
        self.value = value
        self.size_bytes = size_bytes
        self.timestamp = timestamp
        self.last_accessed = last_accessed
        self.access_count = access_count

    def __repr__(self) -> str:
        return f"CacheEntry(key={self.key!r}, size_bytes={self.size_bytes}, access_count={self.access_count})"


class EntryView(Mapping[Hashable, CacheEntry]):
    """Read-only mapping of key to CacheEntry snapshot, least recently used first; reads do not refresh."""

    __slots__ = ("_cache",)

    def __init__(self, cache: ManagedCache) -> None:
        self._cache = cache

    def __getitem__(self, key: Hashable) -> CacheEntry:
        fields = self._cache._entry(key)
        if fields is None:
            raise KeyError(key)
        return CacheEntry(key, *fields)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._cache._keys(False))

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, key: object) -> bool:
        return self._cache._entry(key) is not None


class _CacheFront:
    """ManagedCache's own half, over either entry store (the other base class): validation, sizing,
    shared budgets, single flight, listeners and stats."""

    __slots__ = ()

    _backend: str  # "c" or "python": the store this class runs on

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
        if _fallback_reason is not None:
            _log_fallback_once()
        super().__init__(
            validation.integer("max_size", max_size, minimum=1, maximum=sys.maxsize),
            validation.integer("max_bytes", max_bytes, minimum=1, maximum=validation.MAX_SIZE_BYTES, optional=True),
            validation.positive("ttl_seconds", ttl_seconds, optional=True),
            clock,
            _CAUSES,
        )
        self.name = name if name is not None else f"cache-{id(self):x}"
        self._clock = clock
        self._sizer = sizer
        self._listeners: tuple[EvictionListener, ...] = (on_evict,) if on_evict is not None else ()
        self._lock = threading.Lock()  # flights, listeners and load counters; the store has its own
        self._flights: dict[Hashable, Flight] = {}
        self._async_flights: dict[Hashable, asyncio.Future[Any]] = {}
        self._budget: SharedBudget | None = None
        self._loads = 0
        self._load_failures = 0
        self._load_seconds = 0.0

    # ------------------------------------------------------------------ reads

    def keys(self) -> list[Hashable]:
        """Snapshot of live keys, least recently used first."""
        return self._keys(True)

    def items(self) -> list[tuple[Hashable, Any]]:
        """Snapshot of live (key, value) pairs, least recently used first."""
        return self._items()

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._keys(True))

    @property
    def cache(self) -> Mapping[Hashable, CacheEntry]:
        """Read-only view of the entries as CacheEntry snapshots, LRU order (oldest first), for code written for the seed."""
        return EntryView(self)  # made per access: kept on the cache it would form a reference cycle

    # ----------------------------------------------------------------- writes

    def put(self, key: Hashable, value: Any, size_bytes: int | None = None, ttl_seconds: float | None = None) -> None:
        """Store `value`, evicting least recently used entries until both limits hold.

        A value larger than `max_bytes` (or than a shared budget) is refused with ValueError and
        the cache is left unchanged.
        """
        if size_bytes is None:
            size = self._sizer(value)
            if size.__class__ is not int or not 0 <= size <= validation.MAX_SIZE_BYTES:
                size = validation.size_bytes(f"cache {self.name!r}: the sizer's result for key {key!r}", size)
        elif size_bytes.__class__ is int and 0 <= size_bytes <= validation.MAX_SIZE_BYTES:
            size = size_bytes
        else:
            size = validation.size_bytes("size_bytes", size_bytes)
        ttl = validation.positive("ttl_seconds", ttl_seconds, optional=True)
        max_bytes = self.max_bytes
        if max_bytes is not None and size > max_bytes:
            validation.hashable("cache key", key)
            raise ValueError(f"value for key {key!r} is {size} bytes, more than cache {self.name!r} max_bytes={max_bytes}")
        budget = self._budget
        if budget is not None:
            budget.admit(self, key, size, functools.partial(self._store, key, value, size, ttl))
            return
        removed = self._store(key, value, size, ttl)
        if removed is not None and self._listeners:
            self._notify(removed)

    def pop(self, key: Hashable, default: Any = None) -> Any:
        """Remove `key` and return its value (`default` if absent or expired)."""
        removed = self._take(key)
        if removed is None:
            return default
        self._notify(removed)
        _, value, cause = removed[0]
        return default if cause is RemovalCause.EXPIRED else value

    def delete(self, key: Hashable) -> bool:
        """Remove `key`; True if a live value was removed."""
        return self.pop(key, _MISSING) is not _MISSING

    def clear(self, cause: RemovalCause | str = RemovalCause.EXPLICIT) -> int:
        """Remove every entry (zero-byte ones too); returns the bytes freed."""
        return self._freed(self._evict, -1, RemovalCause(cause))

    def cleanup_expired(self) -> int:
        """Remove expired entries at a cost proportional to what expired; returns how many."""
        return self._release(self._expire())

    def shrink_to(self, target_bytes: int, cause: RemovalCause | str = RemovalCause.PRESSURE) -> int:
        """Evict coldest entries until the cache holds at most `target_bytes`; returns the bytes freed."""
        target_bytes = validation.integer("target_bytes", target_bytes, minimum=0)
        return self._freed(self._evict, min(target_bytes, validation.MAX_SIZE_BYTES), RemovalCause(cause))

    def resize(self, max_size: int | None = None, max_bytes: int | None = None) -> int:
        """Change the limits at run time (None keeps a limit as it is); returns the bytes evicted."""
        new_size = validation.integer("max_size", max_size, minimum=1, maximum=sys.maxsize, optional=True)
        new_bytes = validation.integer("max_bytes", max_bytes, minimum=1, maximum=validation.MAX_SIZE_BYTES, optional=True)
        return self._freed(
            self._set_limits,
            self.max_size if new_size is None else new_size,
            self.max_bytes if new_bytes is None else new_bytes,
        )

    def evict_coldest(self, cause: RemovalCause = RemovalCause.SIZE) -> int:
        """Evict the least recently used entry; returns the bytes freed (0 when empty)."""
        return self._freed(self._evict_coldest, RemovalCause(cause))

    def _freed(self, remove: Callable[..., tuple[int, Removed | None]], *args: Any) -> int:
        """Run one removing store call; notify listeners and return the bytes it freed."""
        freed, removed = remove(*args)
        self._release(removed)
        return freed

    def _release(self, removed: Removed | None) -> int:
        if removed is None:
            return 0
        self._notify(removed)
        return len(removed)

    # ---------------------------------------------------------- single flight

    def get_or_load(self, key: Hashable, loader: Callable[[], Any]) -> Any:
        """Return the cached value or run `loader()` once for all concurrent callers of a missing key.

        A loader exception reaches every waiting caller and nothing is cached.
        """
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        with self._lock:
            value = self._peek(key, _MISSING)  # a leader may have stored it since
            if value is not _MISSING:
                return value
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

    def _notify(self, removed: Removed) -> None:
        """Call every listener for each removed (key, value, cause); also the stores' hook for expired gets."""
        for listener in self._listeners:
            for key, value, cause in removed:
                try:
                    listener(key, value, cause)
                except Exception:
                    logger.exception("cache %s: eviction listener failed for key %r (%s)", self.name, key, cause.value)

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        """Counters and gauges, O(1)."""
        hits, misses, puts, evictions_by_code, entries, total_bytes, oldest = self._counters()
        now = self._clock()
        evictions = {cause.value: count for cause, count in zip(_CAUSES, evictions_by_code)}
        with self._lock:
            loads, load_failures, load_seconds = self._loads, self._load_failures, self._load_seconds
        return {
            "name": self.name,
            "backend": self._backend,
            "hits": hits,
            "misses": misses,
            "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
            "puts": puts,
            "evictions": evictions,
            "evictions_total": sum(evictions_by_code),
            "entries": entries,
            "total_bytes": total_bytes,
            "max_bytes": self.max_bytes,
            "loads": loads,
            "load_failures": load_failures,
            "load_seconds": load_seconds,
            "ttl_seconds": self.ttl_seconds,
            "size": entries,
            "max_size": self.max_size,
            "total_size_mb": total_bytes / (1024 * 1024),
            "oldest_entry_age": 0.0 if oldest is None else max(0.0, now - oldest),
            "clock_regressions": self.clock_regressions,
        }

    def __repr__(self) -> str:
        return (
            f"ManagedCache(name={self.name!r}, entries={len(self)}, total_bytes={self.total_bytes}, "
            f"max_size={self.max_size}, max_bytes={self.max_bytes}, ttl_seconds={self.ttl_seconds})"
        )


class ManagedCache(_CacheFront, _Store):
    """Thread-safe LRU + TTL cache with an entry cap, a byte budget, O(1) stats and eviction listeners.

    From the entry store (C or Python, see `cache_backend()`): `get(key, default=None)`,
    `key in cache` (live values only; no refresh), `len(cache)`, `coldest_access_time()`, and the
    read-only `total_bytes`, `max_size`, `max_bytes`, `ttl_seconds`, `expiry_checks` and
    `clock_regressions` (limits change through `resize`).
    """

    _backend = _BACKEND


_classes_by_backend: dict[str, type[ManagedCache]] = {_BACKEND: ManagedCache}


def managed_cache_class(backend: str) -> type[ManagedCache]:
    """ManagedCache over the store `backend` ("c" or "python"), for tests and benchmarks that run both
    in one process; for the store this process chose, that is ManagedCache itself."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend not in _classes_by_backend:
        store = _pystore.CacheCore if backend == "python" else _import_c_store()
        namespace = {"__doc__": ManagedCache.__doc__, "__module__": __name__, "__qualname__": "ManagedCache", "_backend": backend}
        _classes_by_backend[backend] = type("ManagedCache", (_CacheFront, store), namespace)
    return _classes_by_backend[backend]
