"""The two entry stores as one contract: the same calls give the same results, removals and counters
on the C store and on the Python one; the rules both keep (time never goes back, sizes range-checked);
and what only the Python store has to take care of (its lock, its dead table entries, its links)."""

from __future__ import annotations

import gc
import random
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from crypto_bot.memory import RemovalCause, SharedBudget, _pystore
from crypto_bot.memory.cache import BACKENDS, ManagedCache, managed_cache_class
from tests.fakes import FakeClock
from tests.memory.support import C_STORE_BUILT, CollidingKey

# ------------------------------------------------------------- one contract


class Twin:
    """Two caches under one budget over one store; removals logged as (cache, key, value, cause)."""

    def __init__(self, backend: str, clock: FakeClock) -> None:
        cache_class = managed_cache_class(backend)
        self.removed: list[tuple[int, Any, Any, RemovalCause]] = []
        self.budget = SharedBudget(2500)
        self.caches = []
        for index, max_size in enumerate((40, 25)):
            cache = cache_class(
                max_size=max_size, max_bytes=1500, ttl_seconds=20, clock=clock, name=str(index), sizer=lambda value: 10 * len(value)
            )
            cache.add_listener(lambda key, value, cause, index=index: self.removed.append((index, key, value, cause)))
            self.budget.attach(cache)
            self.caches.append(cache)

    def observe(self) -> list[Any]:
        """Everything a user can read, without changing anything."""
        seen: list[Any] = [self.budget.used_bytes, self.removed]
        for cache in self.caches:
            stats = {k: v for k, v in cache.stats().items() if k not in ("backend", "load_seconds")}
            entries = [(key, (e.value, e.size_bytes, e.timestamp, e.last_accessed, e.access_count)) for key, e in cache.cache.items()]
            seen += [stats, entries, cache.items(), len(cache), cache.coldest_access_time(), cache.expiry_checks]
        return seen


def random_call(rng: random.Random) -> Callable[[Twin, FakeClock], Any]:
    """One call chosen at random, to make on each twin; returns what the call returned (or raised)."""
    index = rng.randrange(2)
    key: Any = rng.randrange(50) if rng.random() < 0.7 else CollidingKey(rng.randrange(50))
    choice = rng.random()
    size = rng.choice([0, 1, 10, rng.randrange(300)])
    ttl = rng.choice([None, None, 20, 3, 3, 40])  # 20 is the default, given explicitly
    advance = rng.choice([0.0, 0.5, 1.0, 3.0])  # ties included
    step_back = rng.random() * 5
    target = rng.randrange(1500)
    limits = (rng.randrange(1, 60), rng.randrange(1, 2000))

    def call(twin: Twin, clock: FakeClock) -> Any:
        cache = twin.caches[index]
        if choice < 0.35:
            return cache.put(key, [key], size_bytes=size, ttl_seconds=ttl)
        if choice < 0.55:
            return cache.get(key, "miss")
        if choice < 0.6:
            return key in cache
        if choice < 0.65:
            return cache.pop(key, "absent")
        if choice < 0.7:
            return cache.get_or_load(key, lambda: [key, "loaded"])
        if choice < 0.74:
            return cache.cleanup_expired()
        if choice < 0.77:
            return cache.shrink_to(target)
        if choice < 0.79:
            return cache.resize(*limits)
        if choice < 0.81:
            return cache.evict_coldest()
        if choice < 0.815:
            return cache.clear()
        if choice < 0.95:
            clock.advance(advance)
            return None
        clock.now -= step_back  # the clock steps back: each store holds its time
        return None

    return call


def outcome(call: Callable[[Twin, FakeClock], Any], twin: Twin, clock: FakeClock) -> Any:
    try:
        return call(twin, clock)
    except Exception as error:  # both stores must raise the same kind of error
        return type(error)


@pytest.mark.skipif(not C_STORE_BUILT, reason="the C cache store was not built")
@pytest.mark.parametrize("seed", range(3))
def test_both_stores_give_the_same_results_removals_and_counters(seed):
    rng = random.Random(seed)
    clocks = {backend: FakeClock() for backend in BACKENDS}
    twins = {backend: Twin(backend, clocks[backend]) for backend in BACKENDS}
    for step in range(2500):
        call = random_call(rng)
        results = {backend: outcome(call, twins[backend], clocks[backend]) for backend in BACKENDS}
        assert results["c"] == results["python"], f"step {step}"
        assert twins["c"].observe() == twins["python"].observe(), f"step {step}"
        if step % 250 == 0:
            for twin in twins.values():
                for cache in twin.caches:
                    cache._verify()


def test_stats_name_the_store(cache_class):
    assert cache_class().stats()["backend"] == cache_class._backend in BACKENDS


# --------------------------------------------------------------- time rule


def test_each_store_holds_its_time_when_the_clock_steps_back(cache_class):
    clock = FakeClock(100.0)
    cache = cache_class(ttl_seconds=10, clock=clock)
    cache.put("a", 1, size_bytes=1)
    clock.now = 50.0
    cache.put("b", 2, size_bytes=1)
    assert cache.cache["b"].timestamp == 100.0
    assert cache.stats()["clock_regressions"] == cache.clock_regressions == 1
    clock.now = 110.0
    assert cache.cleanup_expired() == 2  # put order stayed expiry order
    cache._verify()


def test_a_key_eq_that_reads_the_clock_again_never_dates_an_entry_earlier(cache_class):
    clock = FakeClock(100.0)
    cache = cache_class(clock=clock)

    class ClockReadingKey(CollidingKey):
        __hash__ = CollidingKey.__hash__

        def __eq__(self, other: object) -> bool:
            clock.now = 200.0
            cache.get("anything")  # a nested call reads the clock: the store's time is now 200
            clock.now = 100.0
            return super().__eq__(other)

    cache.put(CollidingKey(1), "one", size_bytes=1)
    cache.put(ClockReadingKey(2), "two", size_bytes=1)
    assert cache.cache[CollidingKey(2)].timestamp == 200.0
    cache._verify()


# ------------------------------------------------------------------- sizes


@pytest.mark.parametrize("result", [-1, 2**62, 1.5, "10", None, float("inf")])
def test_a_sizer_result_out_of_range_is_refused_naming_the_cache_and_the_key(cache_class, result):
    cache = cache_class(name="quotes", sizer=lambda value: result)
    with pytest.raises(ValueError, match=r"cache 'quotes'.*key 'BTC/USDT'.*\[0, 2\*\*48\]"):
        cache.put("BTC/USDT", 1)
    assert len(cache) == 0 and cache.total_bytes == 0


def test_sizes_above_2_to_the_48_are_refused_so_totals_never_overflow(cache_class):
    cache = cache_class()
    for key in ("a", "b"):
        with pytest.raises(ValueError, match="size_bytes"):
            cache.put(key, 1, size_bytes=2**62)
    cache.put("c", 1, size_bytes=2**48)
    assert cache.total_bytes == 2**48


def test_a_sizer_may_return_a_whole_float_or_a_numpy_integer(cache_class):
    numpy = pytest.importorskip("numpy")
    sizes = iter([10.0, numpy.int64(20)])
    cache = cache_class(sizer=lambda value: next(sizes))
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.total_bytes == 30


# ------------------------------------------------------- the Python store


@pytest.fixture
def python_cache_class() -> type[ManagedCache]:
    return managed_cache_class("python")


def test_python_store_entries_are_slotted_records(python_cache_class):
    cache = python_cache_class()
    cache.put("a", 1, size_bytes=1)
    entry = cache._table["a"]
    assert not hasattr(entry, "__dict__") and type(entry).__slots__


def test_python_store_dead_table_entries_never_outnumber_live_ones(python_cache_class):
    cache = python_cache_class(max_size=1000, ttl_seconds=5, clock=FakeClock())
    rng = random.Random(1)
    for step in range(20_000):
        key = rng.randrange(2000)
        if rng.random() < 0.5:
            cache.put(key, step, size_bytes=1)
        else:
            cache.delete(key) if rng.random() < 0.5 else cache.shrink_to(rng.randrange(1000))
        assert cache._dead <= len(cache)
        assert len(cache._table) <= 2 * len(cache)
    cache.clear()
    assert cache._table == {}


def test_python_store_values_leave_with_their_entries_though_keys_wait_for_compaction(python_cache_class):
    class Value:
        pass

    cache = python_cache_class(max_size=10)
    for key in range(10):
        cache.put(key, Value(), size_bytes=1)
    watch = weakref.ref(cache.cache[0].value)
    cache.evict_coldest()  # key 0 stays in the table, dead, until the dead outnumber the live
    assert 0 in cache._table and 0 not in cache
    assert watch() is None


def test_python_store_a_dropped_cache_frees_its_values_without_the_cycle_collector(python_cache_class):
    class Value:
        pass

    cache = python_cache_class()
    value = Value()
    watch = weakref.ref(value)
    cache.put("a", value, size_bytes=1)
    cache.put("b", 2, size_bytes=1, ttl_seconds=5)
    del value
    gc.disable()
    try:
        del cache
        assert watch() is None
    finally:
        gc.enable()


class RestoringKey(CollidingKey):
    """A key whose second hash (the put's first table update; the first is the put's own check)
    replaces its own key in the cache and empties it: Python code inside a put's table update."""

    def __init__(self, ident: int, cache: ManagedCache) -> None:
        super().__init__(ident)
        self.cache = cache
        self.hashes = 0

    def __hash__(self) -> int:
        self.hashes += 1
        if self.hashes == 2:
            self.cache.put(CollidingKey(self.ident), "from __hash__", size_bytes=1)
            self.cache.shrink_to(0)  # empties it, so the store would compact its table meanwhile
            self.cache.put(CollidingKey(self.ident), "again", size_bytes=1)
        return 7

    __eq__ = CollidingKey.__eq__


def test_python_store_a_key_hash_that_changes_the_cache_mid_put_leaves_it_whole(python_cache_class):
    removed = []
    cache = python_cache_class(on_evict=lambda key, value, cause: removed.append((value, cause)))
    for i in range(5):
        cache.put(CollidingKey(i), i, size_bytes=1)
    cache.put(RestoringKey(2, cache), "put", size_bytes=1)
    cache._verify()
    assert cache.items() == [(RestoringKey(2, cache), "put")]
    assert removed[-1] == ("again", RemovalCause.REPLACED)


def test_python_store_is_the_one_the_module_names(python_cache_class):
    assert python_cache_class.__mro__[-2] is _pystore.CacheCore
