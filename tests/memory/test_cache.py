"""ManagedCache behaviour: order, expiry, limits, single flight, listeners, stats, threads, bad input."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import threading
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from crypto_bot.memory import ManagedCache, RemovalCause
from tests.fakes import FakeClock
from tests.memory.support import THREAD_WAIT_SECONDS, CollidingKey, race


@pytest.fixture
def make(cache_class, clock) -> Callable[..., ManagedCache]:
    """Caches on the fake clock whose values all size at 10 bytes, over each entry store."""

    def build(**kwargs) -> ManagedCache:
        kwargs.setdefault("ttl_seconds", 100)
        return cache_class(clock=clock, sizer=lambda v: 10, **kwargs)

    return build


# ----------------------------------------------------------------- order and expiry


def test_get_returns_value_and_default_on_miss(make):
    cache = make()
    cache.put("a", 1)
    assert cache.get("a") == 1
    assert cache.get("missing") is None
    assert cache.get("missing", "dflt") == "dflt"


def test_none_is_a_storable_value(make):
    cache = make()
    cache.put("a", None)
    assert cache.get("a", "dflt") is None
    assert "a" in cache


def test_get_refreshes_recency_so_the_least_recent_is_evicted(make):
    cache = make(max_size=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")
    cache.put("c", 3)
    assert cache.keys() == ["a", "c"]


def test_put_is_not_an_access(make):
    cache = make()
    cache.put("a", 1)
    cache.put("a", 2)
    entry = cache.cache["a"]
    assert entry.access_count == 0
    assert cache.stats()["hits"] == 0


def test_contains_does_not_refresh_recency(make):
    cache = make(max_size=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert "a" in cache
    cache.put("c", 3)
    assert "a" not in cache


def test_expired_entry_is_never_returned(make, clock):
    cache = make(ttl_seconds=10)
    cache.put("a", 1)
    clock.advance(9.999)
    assert cache.get("a") == 1
    clock.advance(0.001)
    assert cache.get("a") is None
    assert "a" not in cache
    assert cache.stats()["evictions"]["expired"] == 1


def test_per_entry_ttl_overrides_the_default(make, clock):
    cache = make(ttl_seconds=10)
    cache.put("short", 1, ttl_seconds=2)
    cache.put("long", 2, ttl_seconds=50)
    cache.put("default", 3)
    clock.advance(11)
    assert cache.keys() == ["long"]
    assert cache.cleanup_expired() == 2


def test_no_default_ttl_means_entries_live_until_evicted(make, clock):
    cache = make(ttl_seconds=None)
    cache.put("a", 1)
    clock.advance(1e9)
    assert cache.get("a") == 1


def test_cleanup_expired_removes_only_expired_entries(make, clock):
    cache = make(ttl_seconds=10, max_size=100)
    for i in range(5):
        cache.put(i, i)
    clock.advance(5)
    for i in range(5, 10):
        cache.put(i, i)
    clock.advance(6)
    assert cache.cleanup_expired() == 5
    assert sorted(cache.keys()) == list(range(5, 10))


def test_cleanup_expired_costs_what_expired_not_every_entry(make, clock):
    cache = make(ttl_seconds=10, max_size=20_000)
    for i in range(10_000):
        cache.put(i, i)
    clock.advance(5)
    cache.put("fresh", 1, ttl_seconds=1)
    clock.advance(2)
    checks_before = cache.expiry_checks
    assert cache.cleanup_expired() == 1
    # the expired entry, then one look at the head of each expiry queue
    assert cache.expiry_checks - checks_before <= 3


def test_replacing_entries_does_not_grow_memory(make):
    cache = make(max_size=10)
    for i in range(5):
        cache.put(i, i)
        cache.put(("custom", i), i, ttl_seconds=7)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(10_000):
            cache.put(i % 5, -i)
            cache.put(("custom", i % 5), -i, ttl_seconds=7)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) == 10
    assert grown < 4096


# ------------------------------------------------------------------------ limits


def test_max_size_evicts_least_recently_used(make):
    cache = make(max_size=3)
    for key in "abcd":
        cache.put(key, key)
    assert cache.keys() == ["b", "c", "d"]
    assert cache.stats()["evictions"]["size"] == 1


def test_max_bytes_evicts_until_the_budget_holds(cache_class, clock):
    cache = cache_class(max_bytes=100, clock=clock)
    cache.put("a", 1, size_bytes=40)
    cache.put("b", 2, size_bytes=40)
    cache.put("c", 3, size_bytes=40)
    assert cache.keys() == ["b", "c"]
    assert cache.total_bytes == 80


def test_value_larger_than_max_bytes_is_refused_and_cache_unchanged(cache_class, clock):
    cache = cache_class(max_bytes=100, clock=clock)
    cache.put("a", 1, size_bytes=60)
    with pytest.raises(ValueError, match="max_bytes=100"):
        cache.put("big", 2, size_bytes=101)
    assert cache.keys() == ["a"]
    assert cache.total_bytes == 60


def test_explicit_size_wins_over_the_sizer(cache_class, clock):
    cache = cache_class(clock=clock, sizer=lambda v: 999)
    cache.put("a", 1, size_bytes=7)
    cache.put("b", 1)
    assert cache.cache["a"].size_bytes == 7
    assert cache.cache["b"].size_bytes == 999


def test_default_sizer_measures_the_value(cache_class, clock):
    cache = cache_class(clock=clock)
    cache.put("blob", b"x" * 100_000)
    assert 100_000 <= cache.total_bytes < 110_000


def test_resize_evicts_to_the_new_limits(cache_class, clock):
    cache = cache_class(max_size=10, clock=clock)
    for i in range(10):
        cache.put(i, i, size_bytes=10)
    freed = cache.resize(max_size=4)
    assert freed == 60
    assert cache.keys() == [6, 7, 8, 9]
    cache.resize(max_bytes=25)
    assert cache.keys() == [8, 9]
    assert cache.max_size == 4 and cache.max_bytes == 25


def test_shrink_to_frees_coldest_first_and_returns_bytes(cache_class, clock):
    cache = cache_class(clock=clock)
    for key in "abcd":
        cache.put(key, key, size_bytes=10)
    cache.get("a")
    assert cache.shrink_to(20) == 20
    assert cache.keys() == ["d", "a"]
    assert cache.stats()["evictions"]["pressure"] == 2


def test_shrink_to_zero_empties_the_cache(make):
    cache = make()
    cache.put("a", 1)
    assert cache.shrink_to(0) == 10
    assert len(cache) == 0 and cache.total_bytes == 0


# --------------------------------------------------------------------------- API


def test_pop_delete_clear_len_keys_items(make):
    cache = make()
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.pop("a") == "A"
    assert cache.pop("a", "gone") == "gone"
    assert cache.delete("b") is True
    assert cache.delete("b") is False
    assert len(cache) == 1
    assert cache.items() == [("c", "C")]
    assert cache.clear() == 10
    assert len(cache) == 0 and cache.keys() == []


def test_keys_and_items_are_snapshots(make):
    cache = make()
    cache.put("a", 1)
    keys = cache.keys()
    cache.put("b", 2)
    assert keys == ["a"]


def test_compat_view_exposes_lru_ordered_entries(make, clock):
    cache = make()
    cache.put("a", 1)
    clock.advance(1)
    cache.put("b", 2)
    clock.advance(1)
    cache.get("a")
    cache.get("a")
    view = cache.cache
    assert list(view) == ["b", "a"]
    assert len(view) == 2 and "a" in view
    entry = view["a"]
    assert entry.value == 1
    assert entry.timestamp == 1000.0
    assert entry.size_bytes == 10
    assert entry.access_count == 2
    assert entry.last_accessed == 1002.0
    with pytest.raises(TypeError):
        view["c"] = 3  # type: ignore[index]


# ---------------------------------------------------------------- single flight


def test_get_or_load_runs_the_loader_once_for_concurrent_threads(make):
    cache = make()
    release = threading.Event()
    calls = []

    def loader():
        calls.append(1)
        release.wait(5)
        return "loaded"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_load("k", loader))) for _ in range(8)]
    for thread in threads:
        thread.start()
    while not calls:
        threading.Event().wait(0.001)
    release.set()
    for thread in threads:
        thread.join(5)
    assert calls == [1]
    assert results == ["loaded"] * 8
    assert cache.get("k") == "loaded"
    assert cache.stats()["loads"] == 1


def test_get_or_load_error_reaches_every_waiter_and_caches_nothing(make):
    cache = make()
    release = threading.Event()
    started = threading.Event()

    def loader():
        started.set()
        release.wait(5)
        raise RuntimeError("exchange down")

    errors = []

    def call():
        try:
            cache.get_or_load("k", loader)
        except RuntimeError as error:
            errors.append(str(error))

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    started.wait(5)
    release.set()
    for thread in threads:
        thread.join(5)
    assert errors == ["exchange down"] * 5
    assert "k" not in cache
    assert cache.stats()["load_failures"] == 1
    assert cache.get_or_load("k", lambda: 42) == 42


def test_get_or_load_returns_a_cached_value_without_loading(make):
    cache = make()
    cache.put("k", 1)
    assert cache.get_or_load("k", lambda: pytest.fail("loader must not run")) == 1


def test_get_or_load_returns_an_oversized_value_uncached(cache_class, clock, caplog):
    cache = cache_class(max_bytes=10, clock=clock, sizer=lambda v: 100)
    with caplog.at_level(logging.WARNING):
        assert cache.get_or_load("k", lambda: "big") == "big"
    assert "k" not in cache
    assert "not cached" in caplog.text


def test_aget_or_load_runs_the_loader_once_across_tasks(make):
    cache = make()
    calls = []

    async def loader():
        calls.append(1)
        await asyncio.sleep(0.01)
        return "loaded"

    async def main():
        return await asyncio.gather(*(cache.aget_or_load("k", loader) for _ in range(10)))

    assert asyncio.run(main()) == ["loaded"] * 10
    assert calls == [1]
    assert cache.get("k") == "loaded"


def test_aget_or_load_error_reaches_every_task_and_caches_nothing(make):
    cache = make()

    async def loader():
        await asyncio.sleep(0.01)
        raise ConnectionError("timeout")

    async def main():
        return await asyncio.gather(*(cache.aget_or_load("k", loader) for _ in range(4)), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, ConnectionError) for r in results)
    assert "k" not in cache


# --------------------------------------------------------------------- listeners


def test_listener_receives_every_cause(cache_class, clock):
    seen = []
    cache = cache_class(max_size=2, ttl_seconds=10, clock=clock, sizer=lambda v: 1,
                         on_evict=lambda k, v, c: seen.append((k, v, c)))
    cache.put("a", 1)
    cache.put("a", 2)  # replaced
    cache.put("b", 3)
    cache.put("c", 4)  # evicts a (size)
    cache.delete("b")  # explicit
    cache.put("d", 5)
    cache.shrink_to(1)  # evicts c (pressure)
    clock.advance(10)
    cache.cleanup_expired()  # d expired
    assert seen == [
        ("a", 1, RemovalCause.REPLACED),
        ("a", 2, RemovalCause.SIZE),
        ("b", 3, RemovalCause.EXPLICIT),
        ("c", 4, RemovalCause.PRESSURE),
        ("d", 5, RemovalCause.EXPIRED),
    ]
    assert {c.value for *_, c in seen} == {"replaced", "size", "explicit", "pressure", "expired"}


def test_listener_runs_outside_the_locks(make):
    # neither ManagedCache's lock nor the store's: another thread can use the cache while a listener runs
    free = []
    cache = make(max_size=1)

    def listener(key, value, cause):
        acquired = cache._lock.acquire(blocking=False)
        free.append(acquired)
        if acquired:
            cache._lock.release()
        other = threading.Thread(target=lambda: free.append(cache.get("b")))
        other.start()
        other.join(THREAD_WAIT_SECONDS)
        free.append(not other.is_alive())

    cache.add_listener(listener)
    cache.put("a", 1)
    cache.put("b", 2)
    assert free == [True, 2, True]


def test_failing_listener_is_logged_and_cache_keeps_working(make, caplog):
    def listener(key, value, cause):
        raise RuntimeError("listener bug")

    cache = make(max_size=1, on_evict=listener)
    with caplog.at_level(logging.ERROR):
        cache.put("a", 1)
        cache.put("b", 2)
    assert cache.get("b") == 2
    assert "listener bug" in caplog.text or "listener failed" in caplog.text


def test_removed_listener_is_not_called(make):
    seen = []
    cache = make(max_size=1)
    listener = lambda k, v, c: seen.append(k)  # noqa: E731
    cache.add_listener(listener)
    cache.remove_listener(listener)
    cache.put("a", 1)
    cache.put("b", 2)
    assert seen == []


def test_evicted_value_is_not_kept_alive_by_the_cache(make):
    import gc
    import weakref

    class Value:
        pass

    cache = make(max_size=1)
    value = Value()
    ref = weakref.ref(value)
    cache.put("a", value)
    del value
    cache.put("b", 2)
    gc.collect()
    assert ref() is None


# ------------------------------------------------------------------------- stats


def test_stats_counts_hits_misses_puts_and_sizes(cache_class, clock):
    cache = cache_class(max_size=10, max_bytes=1000, ttl_seconds=60, clock=clock, name="df")
    cache.put("a", 1, size_bytes=100)
    clock.advance(5)
    cache.put("b", 1, size_bytes=50)
    cache.get("a")
    cache.get("a")
    cache.get("zz")
    stats = cache.stats()
    assert stats["name"] == "df"
    assert (stats["hits"], stats["misses"], stats["puts"]) == (2, 1, 2)
    assert stats["hit_rate"] == pytest.approx(2 / 3)
    assert stats["entries"] == stats["size"] == 2
    assert stats["total_bytes"] == 150
    assert stats["max_bytes"] == 1000 and stats["max_size"] == 10
    assert stats["total_size_mb"] == pytest.approx(150 / 1024 / 1024)
    assert stats["oldest_entry_age"] == pytest.approx(5)
    assert stats["evictions"] == {"expired": 0, "size": 0, "pressure": 0, "explicit": 0, "replaced": 0}
    assert stats["loads"] == 0 and stats["load_failures"] == 0 and stats["load_seconds"] == 0.0


def test_hit_rate_is_zero_without_lookups(make):
    assert make().stats()["hit_rate"] == 0.0


# ----------------------------------------------------------------------- threads


def test_invariants_hold_under_many_threads_mixing_every_operation(cache_class):
    cache = cache_class(max_size=50, max_bytes=4000, ttl_seconds=0.005)

    def step(rng: random.Random) -> None:
        # half the keys compare in Python, which lets the GIL switch threads in the middle of a lookup
        key = rng.randrange(120) if rng.random() < 0.5 else CollidingKey(rng.randrange(120))
        op = rng.random()
        if op < 0.4:
            cache.put(key, key, size_bytes=rng.randrange(1, 200))
        elif op < 0.75:
            value = cache.get(key)
            assert value is None or value == key
        elif op < 0.8:
            cache.delete(key)
        elif op < 0.85:
            cache.get_or_load(key, lambda k=key: k)
        elif op < 0.9:
            cache.cleanup_expired()
        elif op < 0.93:
            assert cache.shrink_to(rng.randrange(3000)) >= 0  # what this call freed, whatever other threads do
        elif op < 0.96:
            cache.stats()
        else:
            cache.items()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        # _verify is one atomic walk: sizes sum to total_bytes, limits hold, structure intact
        assert race(step, cache._verify, threads=8, seconds=1.0) == []
    finally:
        sys.setswitchinterval(interval)
    assert cache.total_bytes == sum(e.size_bytes for e in cache.cache.values())


# --------------------------------------------------------------------- bad input


def test_unhashable_key_is_a_clear_type_error(make):
    cache = make()
    with pytest.raises(TypeError, match="hashable"):
        cache.put(["a"], 1)
    with pytest.raises(TypeError, match="hashable"):
        cache.get({"a": 1})


@pytest.mark.parametrize("size", [-1, "big", float("nan"), float("inf"), True])
def test_bad_size_bytes_names_the_argument(make, size):
    with pytest.raises(ValueError, match="size_bytes"):
        make().put("a", 1, size_bytes=size)


@pytest.mark.parametrize("ttl", [-1, 0, "soon", float("nan")])
def test_bad_ttl_names_the_argument(cache_class, make, ttl):
    with pytest.raises(ValueError, match="ttl_seconds"):
        make().put("a", 1, ttl_seconds=ttl)
    with pytest.raises(ValueError, match="ttl_seconds"):
        cache_class(ttl_seconds=ttl)


@pytest.mark.parametrize("arg", ["max_size", "max_bytes"])
@pytest.mark.parametrize("value", [-5, 0, "10", 1.5])
def test_bad_limits_name_the_argument(cache_class, arg, value):
    with pytest.raises(ValueError, match=arg):
        cache_class(**{arg: value})
    with pytest.raises(ValueError, match=arg):
        cache_class().resize(**{arg: value})


def test_bad_shrink_target_is_rejected(make):
    with pytest.raises(ValueError, match="target_bytes"):
        make().shrink_to(-1)


# ------------------------------------------------------------- reference model


class CacheModel(RuleBasedStateMachine):
    """ManagedCache against a plain reference model with the same LRU/TTL/limit rules."""

    keys = st.integers(0, 7)

    def __init__(self, cache_class: type[ManagedCache]) -> None:
        super().__init__()
        self.clock = FakeClock(0.0)
        self.cache = cache_class(max_size=4, max_bytes=60, ttl_seconds=10, clock=self.clock)
        self.model: OrderedDict[int, tuple[int, int, float, float]] = OrderedDict()

    def _expired(self, key: int) -> bool:
        _, _, put_at, ttl = self.model[key]
        return self.clock.now - put_at >= ttl

    @rule(key=keys, value=st.integers(), size=st.integers(0, 30), ttl=st.sampled_from([None, 3.0, 20.0]))
    def put(self, key, value, size, ttl):
        self.cache.put(key, value, size_bytes=size, ttl_seconds=ttl)
        self.model.pop(key, None)
        for k in [k for k in self.model if self._expired(k)]:
            del self.model[k]
        self.model[key] = (value, size, self.clock.now, 10.0 if ttl is None else ttl)
        while len(self.model) > 4 or sum(v[1] for v in self.model.values()) > 60:
            self.model.popitem(last=False)

    @rule(key=keys)
    def get(self, key):
        expected = None
        if key in self.model:
            if self._expired(key):
                del self.model[key]
            else:
                expected = self.model[key][0]
                self.model.move_to_end(key)
        assert self.cache.get(key, None) == expected

    @rule(key=keys)
    def delete(self, key):
        live = key in self.model and not self._expired(key)
        self.model.pop(key, None)
        assert self.cache.delete(key) is live

    @rule(seconds=st.sampled_from([0.5, 2.0, 5.0]))
    def advance(self, seconds):
        self.clock.advance(seconds)

    @rule()
    def cleanup(self):
        expired = [k for k in self.model if self._expired(k)]
        for k in expired:
            del self.model[k]
        assert self.cache.cleanup_expired() == len(expired)

    @precondition(lambda self: self.model)
    @rule(target_bytes=st.integers(0, 60))
    def shrink(self, target_bytes):
        while self.model and sum(v[1] for v in self.model.values()) > target_bytes:
            self.model.popitem(last=False)
        self.cache.shrink_to(target_bytes)

    @invariant()
    def store_is_intact(self):
        self.cache._verify()

    @invariant()
    def same_live_keys_in_lru_order(self):
        live = [k for k in self.model if not self._expired(k)]
        assert self.cache.keys() == live
        assert len(self.cache) == len(self.model)
        assert self.cache.total_bytes == sum(v[1] for v in self.model.values())


def test_cache_follows_the_reference_model(cache_class):
    run_state_machine_as_test(
        lambda: CacheModel(cache_class), settings=settings(max_examples=150, stateful_step_count=40, deadline=None)
    )
