"""SharedBudget: one byte budget across caches, admitted the way a per-cache max_bytes is, over each store."""

from __future__ import annotations

import random
import threading

import pytest

from crypto_bot.memory import ManagedCache, RemovalCause, SharedBudget
from tests.fakes import FakeClock
from tests.memory.support import THREAD_WAIT_SECONDS, CollidingKey


@pytest.fixture
def removals() -> list[tuple[str, object, RemovalCause]]:
    return []


@pytest.fixture
def budgeted(cache_class, clock, removals):
    """Caches named as asked, attached in that order to one budget of `budget_bytes`; removals recorded as (cache, key, cause)."""

    def build(budget_bytes: int, *names: str, **settings) -> tuple[SharedBudget, list[ManagedCache]]:
        budget = SharedBudget(budget_bytes)
        caches = []
        for name in names:
            cache = cache_class(clock=clock, name=name, **settings)
            cache.add_listener(lambda key, value, cause, name=name: removals.append((name, key, cause)))
            budget.attach(cache)
            caches.append(cache)
        return budget, caches

    return build


def test_shared_budget_evicts_the_coldest_entries_across_caches(budgeted, clock):
    budget, (a, b) = budgeted(100, "a", "b")
    a.put("a1", 1, size_bytes=40)
    clock.advance(1)
    b.put("b1", 1, size_bytes=40)
    clock.advance(1)
    a.get("a1")
    b.put("b2", 1, size_bytes=40)
    assert a.keys() == ["a1"]
    assert b.keys() == ["b2"]
    assert budget.used_bytes == 80


def test_shared_budget_refuses_a_value_larger_than_the_budget_and_changes_nothing(budgeted, removals):
    budget, (a, b) = budgeted(100, "a", "b")
    a.put("kept", 1, size_bytes=60)
    with pytest.raises(ValueError, match="shared cache budget"):
        b.put("x", 1, size_bytes=101)
    assert (a.keys(), b.keys(), removals) == (["kept"], [], [])


def test_replacing_a_key_frees_its_old_bytes_before_anything_is_evicted(budgeted, removals, clock):
    budget, (cache,) = budgeted(100, "a")
    cache.put("a", 1, size_bytes=60)
    clock.advance(1)
    cache.put("b", 2, size_bytes=30)
    cache.put("a", 3, size_bytes=60)  # 60 replaces 60: b, colder, still fits
    assert cache.keys() == ["b", "a"]
    assert removals == [("a", "a", RemovalCause.REPLACED)]
    assert budget.used_bytes == 90


def test_expired_entries_of_the_cache_put_into_count_as_free_room(budgeted, removals, clock):
    budget, (cache,) = budgeted(100, "a", ttl_seconds=100)
    cache.put("cold but live", 1, size_bytes=40)
    clock.advance(1)
    cache.put("short lived", 2, size_bytes=50, ttl_seconds=1)
    clock.advance(2)
    cache.put("new", 3, size_bytes=50)
    assert cache.keys() == ["cold but live", "new"]
    assert removals == [("a", "short lived", RemovalCause.EXPIRED)]


def test_expired_entries_of_other_caches_count_as_free_room(budgeted, removals, clock):
    budget, (a, b) = budgeted(100, "a", "b", ttl_seconds=100)
    b.put("cold but live", 1, size_bytes=40)
    clock.advance(1)
    a.put("short lived", 2, size_bytes=50, ttl_seconds=1)
    clock.advance(2)
    b.put("new", 3, size_bytes=50)
    assert (a.keys(), b.keys()) == ([], ["cold but live", "new"])
    assert removals == [("a", "short lived", RemovalCause.EXPIRED)]
    assert budget.used_bytes == 90


def test_the_entry_just_put_is_never_evicted_to_make_room_for_itself(budgeted, removals):
    # the clock does not move: the new entry ties with the other cache's coldest one
    budget, (a, b) = budgeted(100, "a", "b")
    b.put("old", 1, size_bytes=60)
    a.put("new", 2, size_bytes=60)
    assert (a.keys(), b.keys()) == (["new"], [])
    assert removals == [("b", "old", RemovalCause.SIZE)]


class RaisingKey(CollidingKey):
    """Collides with CollidingKey and cannot be compared with it."""

    __hash__ = CollidingKey.__hash__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("broken __eq__")


def test_a_put_whose_key_eq_raises_changes_no_cache(budgeted, removals):
    budget, (a, b) = budgeted(100, "a", "b")
    a.put(CollidingKey(1), "one", size_bytes=50)
    b.put("b", "two", size_bytes=50)
    with pytest.raises(RuntimeError, match="broken __eq__"):
        a.put(RaisingKey(2), "three", size_bytes=50)  # would need room
    assert (a.keys(), b.keys(), removals, budget.used_bytes) == ([CollidingKey(1)], ["b"], [], 100)
    a._verify()
    b._verify()


def test_a_put_whose_sizer_raises_changes_no_cache(budgeted, removals):
    def sizer(value):
        if value == "unsizable":
            raise RuntimeError("cannot size")
        return 50

    budget, (a, b) = budgeted(100, "a", "b", sizer=sizer)
    a.put("a", 1)
    b.put("b", 2)
    with pytest.raises(RuntimeError, match="cannot size"):
        a.put("c", "unsizable")
    assert (a.keys(), b.keys(), removals) == (["a"], ["b"], [])


def test_a_budget_over_one_cache_admits_like_its_max_bytes(cache_class):
    # the same puts, gets and time into a cache with max_bytes=B and a cache under a budget of B:
    # the same entries stay, and listeners see the same removals in the same order
    clock = FakeClock()
    seen: dict[str, list] = {"max_bytes": [], "budget": []}
    limited = cache_class(max_size=50, max_bytes=500, ttl_seconds=20, clock=clock, on_evict=lambda *r: seen["max_bytes"].append(r))
    shared = cache_class(max_size=50, ttl_seconds=20, clock=clock, on_evict=lambda *r: seen["budget"].append(r))
    SharedBudget(500).attach(shared)
    rng = random.Random(5)
    for step in range(3000):
        key, choice = rng.randrange(40), rng.random()
        if choice < 0.6:
            size, ttl = rng.randrange(0, 120), rng.choice([None, None, 3.0, 50.0])
            for cache in (limited, shared):
                cache.put(key, step, size_bytes=size, ttl_seconds=ttl)
        elif choice < 0.9:
            assert limited.get(key) == shared.get(key)
        else:
            clock.advance(rng.random() * 4)
        assert limited.items() == shared.items()
    assert seen["max_bytes"] == seen["budget"]
    assert limited.stats()["evictions"] == shared.stats()["evictions"]


def test_used_bytes_never_exceeds_the_budget_under_threads(cache_class):
    budget = SharedBudget(5000)
    caches = [cache_class(name=str(i)) for i in range(4)]
    for cache in caches:
        budget.attach(cache)
    over = []

    def worker(seed):
        rng = random.Random(seed)
        for _ in range(3000):
            rng.choice(caches).put(rng.randrange(100), 1, size_bytes=rng.randrange(1, 300))
            used = budget.used_bytes
            if used > budget.max_bytes:
                over.append(used)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert over == []
    assert budget.used_bytes <= 5000


def test_listeners_under_a_budget_run_once_its_lock_is_released(budgeted):
    budget, (a, b) = budgeted(100, "a", "b")
    reads = []

    def listener(key, value, cause):
        other = threading.Thread(target=lambda: reads.append(budget.used_bytes))  # takes the budget lock
        other.start()
        other.join(THREAD_WAIT_SECONDS)
        reads.append(not other.is_alive())

    b.add_listener(listener)
    b.put("b", 1, size_bytes=60)
    a.put("a", 2, size_bytes=60)
    assert reads == [60, True]


def test_set_limit_and_attach_evict_the_coldest_entries_across_caches(cache_class, budgeted, clock, removals):
    budget, (a, b) = budgeted(200, "a", "b")
    a.put("a1", 1, size_bytes=50)
    clock.advance(1)
    b.put("b1", 2, size_bytes=50)
    clock.advance(1)
    a.put("a2", 3, size_bytes=50)
    assert budget.set_limit(100) == 50
    assert (a.keys(), b.keys()) == (["a2"], ["b1"])
    clock.advance(1)
    c = cache_class(clock=clock, name="c")
    c.put("c1", 4, size_bytes=60)
    budget.attach(c)
    assert (a.keys(), b.keys(), c.keys()) == ([], [], ["c1"])
    assert [key for _, key, _ in removals] == ["a1", "b1", "a2"]
