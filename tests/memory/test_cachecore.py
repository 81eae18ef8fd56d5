"""The entry stores, C and Python, under the hazards of a data structure that Python code can enter
mid-operation: hash collisions, key __eq__/__hash__ and value destructors that run Python code (and
touch the cache), reference cycles, a faulty clock, and memory that must come back when entries
leave. `_verify()` walks the whole store and checks its own invariants."""

from __future__ import annotations

import gc
import importlib
import random
import tracemalloc
import weakref
from collections.abc import Callable

import pytest

from crypto_bot.memory import ManagedCache, RemovalCause
from tests.fakes import FakeClock
from tests.memory.support import CollidingKey


@pytest.fixture
def make(cache_class) -> Callable[..., ManagedCache]:
    """Caches over each entry store, on a fake clock unless the test gives one."""

    def build(**kwargs) -> ManagedCache:
        kwargs.setdefault("clock", FakeClock())
        return cache_class(**kwargs)

    return build


def test_colliding_keys_are_stored_found_and_removed_correctly(make):
    cache = make(max_size=1000)
    for i in range(200):
        cache.put(CollidingKey(i), i, size_bytes=1)
    for i in range(0, 200, 3):
        assert cache.pop(CollidingKey(i)) == i
    cache._verify()
    for i in range(200):
        assert cache.get(CollidingKey(i)) == (None if i % 3 == 0 else i)
    assert len(cache) == 200 - len(range(0, 200, 3))


def test_structured_integer_keys_spread_over_the_table(make):
    # candle open times in ms: multiples of 60_000 share their low bits
    cache = make(max_size=50_000)
    keys = [1_700_000_000_000 + 60_000 * i for i in range(20_000)]
    for key in keys:
        cache.put(key, key, size_bytes=1)
    for key in keys[::2]:
        cache.delete(key)
    cache._verify()
    assert all(cache.get(key) == key for key in keys[1::2])
    assert all(key not in cache for key in keys[::2])


def test_random_operations_keep_the_store_intact(make):
    clock = FakeClock()
    cache = make(max_size=300, max_bytes=20_000, ttl_seconds=50, clock=clock)
    rng = random.Random(3)
    for step in range(30_000):
        key = rng.randrange(600)
        op = rng.random()
        if op < 0.45:
            cache.put(key, step, size_bytes=rng.randrange(0, 200), ttl_seconds=rng.choice([None, None, 5, 200]))
        elif op < 0.8:
            cache.get(key)
        elif op < 0.88:
            cache.delete(key)
        elif op < 0.93:
            clock.advance(rng.random() * 3)
        elif op < 0.96:
            cache.cleanup_expired()
        elif op < 0.98:
            cache.shrink_to(rng.randrange(20_000))
        else:
            cache.resize(max_size=rng.randrange(1, 400))
        if step % 500 == 0:
            cache._verify()
    cache._verify()


class MutatingKey(CollidingKey):
    """A key whose first __eq__ call fills the cache it is being looked up in (a rehash mid-lookup)."""

    __hash__ = CollidingKey.__hash__

    def __init__(self, ident: int, cache: ManagedCache | None = None) -> None:
        super().__init__(ident)
        self.cache = cache

    def __eq__(self, other: object) -> bool:
        cache, self.cache = self.cache, None
        if cache is not None:
            for i in range(100):
                cache.put(("filler", self.ident, i), i, size_bytes=1)
        return super().__eq__(other)


def test_a_lookup_survives_a_key_eq_that_rehashes_the_table(make):
    cache = make(max_size=100_000)
    for i in range(5):
        cache.put(CollidingKey(i), i, size_bytes=1)
    for i in range(5):
        assert cache.get(MutatingKey(i, cache)) == i
    assert len(cache) == 5 + 5 * 100
    cache._verify()


def test_a_key_eq_that_raises_reaches_the_caller_and_changes_nothing(make):
    class BadKey(CollidingKey):
        __hash__ = CollidingKey.__hash__

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("broken __eq__")

    cache = make()
    cache.put(CollidingKey(1), "one", size_bytes=1)
    with pytest.raises(RuntimeError, match="broken __eq__"):
        cache.put(BadKey(2), "two", size_bytes=1)
    with pytest.raises(RuntimeError, match="broken __eq__"):
        cache.get(BadKey(2))
    assert cache.keys() == [CollidingKey(1)]
    assert cache.total_bytes == 1
    cache._verify()


def test_get_takes_key_and_default_by_position_or_name_and_nothing_else(make):
    cache = make()
    cache.put("a", 1, size_bytes=1)
    assert cache.get(key="a") == 1
    assert cache.get("b", default=2) == 2
    assert cache.get(key="b", default=3) == 3
    # the stores word these like the C and the Python function they are; each names get()
    with pytest.raises(TypeError, match=r"get\(\)"):
        cache.get()
    with pytest.raises(TypeError, match=r"get\(\)"):
        cache.get("a", 1, 2)
    with pytest.raises(TypeError, match=r"get\(\).*'fallback'"):
        cache.get("a", fallback=1)
    with pytest.raises(TypeError, match=r"get\(\).*'key'"):
        cache.get("a", key="a")


def test_limits_are_read_only_and_change_through_resize(make):
    cache = make(max_size=3, max_bytes=100)
    with pytest.raises(AttributeError):
        cache.max_size = 10  # type: ignore[misc]
    cache.resize(max_size=10, max_bytes=200)
    assert (cache.max_size, cache.max_bytes) == (10, 200)


def test_a_hash_error_other_than_unhashable_is_passed_through(make):
    class Unlucky:
        def __hash__(self) -> int:
            raise ValueError("no hash today")

    with pytest.raises(ValueError, match="no hash today"):
        make().get(Unlucky())


class Reentrant:
    """A value whose destructor uses the cache that just dropped it."""

    def __init__(self, cache: ManagedCache, ident: int) -> None:
        self.cache = cache
        self.ident = ident

    def __del__(self) -> None:
        self.cache.get(self.ident)
        self.cache.put(("from __del__", self.ident), None, size_bytes=1)


def test_value_destructors_may_use_the_cache_that_evicted_them(make):
    cache = make(max_size=20)
    for i in range(200):
        cache.put(i, Reentrant(cache, i), size_bytes=1)
    cache.shrink_to(5)
    cache.clear()
    cache._verify()
    assert len(cache) <= 20


def test_a_dropped_cache_is_freed_at_once_without_the_cycle_collector(make):
    cache = make()
    cache.put("a", 1, size_bytes=1)
    _ = cache.cache["a"], cache.stats()
    watch = weakref.ref(cache)
    gc.disable()
    try:
        del cache
        assert watch() is None
    finally:
        gc.enable()


def test_a_cache_in_a_reference_cycle_is_collected(make):
    cache = make()
    cache.put("self", cache)  # value -> cache -> value
    cache.put("listener", [cache])
    watch = weakref.ref(cache)
    del cache
    gc.collect()
    assert watch() is None


def test_a_cache_collected_as_garbage_drops_its_entries_without_calling_listeners(make):
    collected = []

    class Holder:
        pass

    holder = Holder()
    cache = make(on_evict=lambda key, value, cause: collected.append(cause))
    holder.cache = cache
    cache.put("holder", holder)
    del holder, cache
    gc.collect()
    # collected via tp_clear, which drops entries without calling listeners
    assert collected == []


def test_clock_failures_reach_the_caller_and_change_nothing(cache_class):
    class FailingClock:
        fail = False

        def __call__(self) -> float:
            if self.fail:
                raise OSError("clock unavailable")
            return 5.0

    clock = FailingClock()
    cache = cache_class(clock=clock)
    cache.put("a", 1, size_bytes=3)
    clock.fail = True
    with pytest.raises(OSError, match="clock unavailable"):
        cache.get("a")
    with pytest.raises(OSError, match="clock unavailable"):
        cache.put("b", 2, size_bytes=3)
    clock.fail = False
    assert cache.keys() == ["a"] and cache.total_bytes == 3
    assert cache.stats()["hits"] == 0 and cache.stats()["misses"] == 0


def test_a_clock_returning_nan_is_a_clear_error(cache_class):
    cache = cache_class(clock=lambda: float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        cache.get("a")


def entry_record_bytes(cache_class: type[ManagedCache]) -> int:
    """Bytes of one entry record in the store under `cache_class`: the C struct or the Python record."""
    store = cache_class.__mro__[-2]
    return importlib.import_module(store.__module__).ENTRY_BYTES


def test_memory_comes_back_when_entries_leave(cache_class, make):
    cache = make(max_size=100_000)
    keys = list(range(50_000))
    values = [float(i) for i in keys]
    tracemalloc.start()
    try:
        empty = tracemalloc.get_traced_memory()[0]
        for key, value in zip(keys, values):
            cache.put(key, value, size_bytes=1)
        full = tracemalloc.get_traced_memory()[0]
        cache.clear()
        cleared = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert full - empty > 50_000 * entry_record_bytes(cache_class)  # entries and table were traced
    # all of it returned, the table shrunk back; what stays is CPython's free lists, refilled by the
    # (key, value, cause) triples clear() reported (at most 2,000 tuples of 64 bytes) and, for the
    # Python store, by the entries' float timestamps (at most 100 floats of 24 bytes)
    assert cleared - empty <= 2_000 * 64 + 100 * 24 + 1024


def test_removed_values_are_released_at_once(make):
    class Value:
        pass

    cache = make(max_size=2)
    value = Value()
    watch = weakref.ref(value)
    cache.put("a", value, size_bytes=1)
    del value
    cache.put("b", 1, size_bytes=1)
    cache.put("c", 1, size_bytes=1)  # evicts "a"
    assert watch() is None


def test_removal_listener_order_and_causes_come_from_the_store(cache_class):
    seen = []
    clock = FakeClock()
    cache = cache_class(max_size=2, ttl_seconds=10, clock=clock, on_evict=lambda k, v, c: seen.append((k, c)))
    cache.put("a", 1, size_bytes=1)
    cache.put("b", 2, size_bytes=1)
    cache.put("a", 3, size_bytes=1)
    cache.put("c", 4, size_bytes=1)
    clock.advance(10)
    cache.get("a")
    assert seen == [("a", RemovalCause.REPLACED), ("b", RemovalCause.SIZE), ("a", RemovalCause.EXPIRED)]


def exercise_every_method(cache: ManagedCache, clock: FakeClock, round_number: int) -> None:
    """One pass over every path of the store that creates or drops references."""
    for i in range(200):
        cache.put(i, [round_number, i], size_bytes=10)
        cache.put(("ttl", i), (i,), size_bytes=10, ttl_seconds=1)
        cache.get(i)
        cache.get(-1, "default")
        cache.get(key=i, default=None)
        _ = i in cache, cache.cache[i], cache._peek(i, None)
    cache.put(0, "replaced", size_bytes=10)
    cache.keys(), cache.items(), list(cache.cache), cache.stats(), repr(cache)
    clock.advance(2)
    cache.get(("ttl", 5))  # expired on read
    cache.cleanup_expired()
    cache.pop(1), cache.delete(2), cache.pop("absent")
    cache.get_or_load("loaded", lambda: "value")
    with pytest.raises(ValueError):
        cache.get_or_load("failing", lambda: int("x"))
    cache.evict_coldest()
    cache.resize(max_size=50)
    cache.resize(max_size=1000)
    cache.shrink_to(100)
    cache.clear()


def test_no_store_method_leaks_references(cache_class):
    clock = FakeClock()
    cache = cache_class(max_size=1000, ttl_seconds=60, clock=clock, on_evict=lambda k, v, c: None)
    for round_number in range(3):  # warm up free lists, interned names and caches of the interpreter
        exercise_every_method(cache, clock, round_number)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for round_number in range(20):
            exercise_every_method(cache, clock, round_number)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 20 rounds x ~1,000 objects: a leaked reference anywhere would keep tens of kilobytes alive
    assert grown < 8 * 1024
