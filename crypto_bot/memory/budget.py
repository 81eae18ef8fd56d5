"""SharedBudget: one byte budget across several ManagedCaches.

A put into a budgeted cache is admitted in three steps under the budget's lock: the put itself
goes first, so what it frees in its own cache counts (the entry it replaces, the entries of that
cache that have expired, its per-cache limits); if the caches are then over the budget, the
other caches' expired entries go; then the coldest entries across all of them (the least recently
used entry of whichever cache has the oldest one), never the entry just put, until the budget
holds. This matches a per-cache `max_bytes`, and a put that fails (a key whose `__eq__` raises)
fails in the first step, so no cache changes. The per-cache limits stay in `cache.py`;
pressure-driven shrinking is the manager's.

Lock order is always budget, then the stores: every put into a budgeted cache takes the budget
lock for the whole admission, and `used_bytes` is read under it, so the sum of cache bytes it
reports never exceeds the budget, even under threads (outside the lock, bytes only go down).
Listeners are called once the lock is released.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from . import validation
from .cache import RemovalCause

if TYPE_CHECKING:
    from .cache import ManagedCache, Removed


class SharedBudget:
    """A byte limit shared by the caches attached to it."""

    max_bytes: int
    lock: threading.RLock  # re-entrant: a key's __eq__ or the clock may put into a budgeted cache

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = validation.integer("max_bytes", max_bytes, minimum=1)
        self.lock = threading.RLock()
        self._caches: list[ManagedCache] = []

    def attach(self, cache: ManagedCache) -> None:
        """Put `cache` under this budget, evicting the coldest entries across caches if it does not fit."""
        removals: list[tuple[ManagedCache, Removed]] = []
        with self.lock:
            if cache not in self._caches:
                self._caches.append(cache)
                cache._budget = self
            self._reclaim_locked(removals, newest=None)
        _notify_all(removals)

    def detach(self, cache: ManagedCache) -> None:
        with self.lock:
            if cache in self._caches:
                self._caches.remove(cache)
                cache._budget = None

    def set_limit(self, max_bytes: int) -> int:
        """Change the budget; returns the bytes of the coldest entries evicted to meet it."""
        removals: list[tuple[ManagedCache, Removed]] = []
        with self.lock:
            self.max_bytes = validation.integer("max_bytes", max_bytes, minimum=1)
            evicted_bytes = self._reclaim_locked(removals, newest=None)
        _notify_all(removals)
        return evicted_bytes

    @property
    def used_bytes(self) -> int:
        """Bytes held by the attached caches, never caught in the middle of an admission."""
        with self.lock:
            return self._used_bytes_locked()

    def admit(self, cache: ManagedCache, key: Hashable, size_bytes: int, store: Callable[[], Removed | None]) -> None:
        """Run `store`, the put of `size_bytes` under `key` into `cache`, and make the budget hold again.

        A value larger than the whole budget is refused with ValueError before anything changes.
        """
        if size_bytes > self.max_bytes:
            validation.hashable("cache key", key)
            raise ValueError(
                f"value for key {key!r} of cache {cache.name!r} is {size_bytes} bytes, more than the shared cache "
                f"budget of {self.max_bytes} bytes"
            )
        removals: list[tuple[ManagedCache, Removed]] = []
        with self.lock:
            removed = store()  # raises before changing anything, or changes only `cache`
            if removed is not None:
                removals.append((cache, removed))
            self._reclaim_locked(removals, newest=cache)
        _notify_all(removals)

    def _used_bytes_locked(self) -> int:
        return sum(cache.total_bytes for cache in self._caches)

    def _reclaim_locked(self, removals: list[tuple[ManagedCache, Removed]], newest: ManagedCache | None) -> int:
        """Remove expired entries from the caches, then the coldest entries, until the budget holds.

        `newest` is the cache that was just put into: its expired entries went with the put, and its
        newest entry, the coldest of all only when it is the cache's only entry, is never evicted for it.
        Returns the bytes of the coldest entries evicted.
        """
        if self._used_bytes_locked() <= self.max_bytes:
            return 0
        for cache in self._caches:
            if cache is not newest:
                removed = cache._expire()
                if removed is not None:
                    removals.append((cache, removed))
        evicted_bytes = 0
        while self._used_bytes_locked() > self.max_bytes:
            coldest = self._coldest_cache(newest)
            if coldest is None:
                break
            freed_bytes, removed = coldest._evict_coldest(RemovalCause.SIZE)
            evicted_bytes += freed_bytes
            if removed is not None:
                removals.append((coldest, removed))
        return evicted_bytes

    def _coldest_cache(self, newest: ManagedCache | None) -> ManagedCache | None:
        best, best_time = None, None
        for cache in self._caches:
            if cache is newest and len(cache) <= 1:
                continue
            accessed = cache.coldest_access_time()
            if accessed is not None and (best_time is None or accessed < best_time):
                best, best_time = cache, accessed
        return best


def _notify_all(removals: list[tuple[ManagedCache, Removed]]) -> None:
    """Hand each cache's removals to its listeners, in the order they happened (no lock held)."""
    for cache, removed in removals:
        cache._notify(removed)
