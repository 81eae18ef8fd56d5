"""The cache's time: a clock that steps back (a custom clock, wall time after an NTP step) is held
at its latest reading, so entries still expire in put order and none is left unswept."""

from __future__ import annotations

from crypto_bot.memory import RemovalCause
from tests.fakes import FakeClock


def test_a_clock_that_steps_back_is_held_at_its_latest_reading(cache_class):
    clock = FakeClock(100.0)
    cache = cache_class(ttl_seconds=10, clock=clock)
    cache.put("a", 1, size_bytes=1)
    clock.now = 50.0
    cache.put("b", 2, size_bytes=1)
    assert cache.clock_regressions == 1
    assert cache.cache["b"].timestamp == 100.0
    cache._verify()  # put order is still expiry order


def test_entries_put_after_a_step_back_expire_with_the_others(cache_class):
    clock = FakeClock(100.0)
    removed: list[tuple[str, RemovalCause]] = []
    cache = cache_class(ttl_seconds=10, clock=clock, on_evict=lambda key, value, cause: removed.append((key, cause)))
    cache.put("a", 1, size_bytes=1)
    clock.now = 50.0
    cache.put("b", 2, size_bytes=1)
    clock.now = 105.0
    assert cache.cleanup_expired() == 0
    assert cache.get("b") == 2 and len(cache) == 2  # what get sees, the sweep and len agree on
    clock.now = 110.0
    assert cache.cleanup_expired() == 2
    assert removed == [("a", RemovalCause.EXPIRED), ("b", RemovalCause.EXPIRED)]
    assert len(cache) == 0


def test_each_clock_reading_below_the_latest_is_counted(cache_class):
    clock = FakeClock(100.0)
    cache = cache_class(clock=clock)
    cache.get("x")
    clock.now = 99.0
    cache.get("x")
    cache.get("x")
    clock.now = 101.0
    cache.get("x")
    assert cache.clock_regressions == 2
