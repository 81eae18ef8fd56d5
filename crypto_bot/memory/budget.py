"""SharedBudget: one byte budget across several ManagedCaches.

When a put would take the caches past the budget, the coldest entries across all of them go
first (the least recently used entry of whichever cache has the oldest one). The per-cache limits
stay in `cache.py`; pressure-driven shrinking is the manager's.

Lock order is always budget, then cache: a put into a budgeted cache takes the budget lock for
the whole admission, so the sum of cache bytes never exceeds the budget even under threads.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cache import ManagedCache


class SharedBudget:
    """A byte limit shared by the caches attached to it."""

    max_bytes: int

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = self._check(max_bytes)
        self.lock = threading.RLock()  # re-entrant: an eviction listener may put into a budgeted cache
        self._caches: list[ManagedCache] = []

    @staticmethod
    def _check(max_bytes: int) -> int:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        return max_bytes

    def attach(self, cache: ManagedCache) -> None:
        """Put `cache` under this budget, evicting its coldest entries if it does not fit."""
        with self.lock:
            if cache not in self._caches:
                self._caches.append(cache)
                cache._budget = self
            self._evict_until(self.max_bytes)

    def detach(self, cache: ManagedCache) -> None:
        with self.lock:
            if cache in self._caches:
                self._caches.remove(cache)
                cache._budget = None

    def set_limit(self, max_bytes: int) -> int:
        """Change the budget; returns the bytes evicted to meet it."""
        with self.lock:
            self.max_bytes = self._check(max_bytes)
            return self._evict_until(self.max_bytes)

    @property
    def used_bytes(self) -> int:
        return sum(cache.total_bytes for cache in self._caches)

    def make_room(self, size_bytes: int, requester: ManagedCache) -> None:
        """Evict coldest entries across caches so that `size_bytes` more fit (caller holds `lock`)."""
        if size_bytes > self.max_bytes:
            raise ValueError(
                f"value of {size_bytes} bytes for cache {requester.name!r} exceeds the shared cache budget "
                f"of {self.max_bytes} bytes"
            )
        self._evict_until(self.max_bytes - size_bytes)

    def _evict_until(self, target_bytes: int) -> int:
        freed = 0
        while self.used_bytes > target_bytes:
            coldest = self._coldest_cache()
            if coldest is None:
                break
            freed += coldest.evict_coldest()
        return freed

    def _coldest_cache(self) -> ManagedCache | None:
        best, best_time = None, None
        for cache in self._caches:
            accessed = cache.coldest_access_time()
            if accessed is not None and (best_time is None or accessed < best_time):
                best, best_time = cache, accessed
        return best
