"""The cache when Python code runs inside its own calls: garbage collections started by the store's
allocations, whose finalizers and gc.callbacks change the cache mid-call, and threads that switch
at those points. The sanitizer step of .ci/run (scripts/sanitize) runs this file under ASan+UBSan.
"""

from __future__ import annotations

import gc
import os
import random
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crypto_bot.memory import ManagedCache, RemovalCause

ROOT = Path(__file__).resolve().parents[2]


def run_isolated(source: str, backend: str) -> subprocess.CompletedProcess[str]:
    """Run `source` in a fresh interpreter on the entry store `backend`: a crash fails the test
    instead of ending the run."""
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(source)],
        cwd=ROOT,
        env={**os.environ, "CRYPTO_BOT_CACHE_BACKEND": backend},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def collect_every_allocation() -> Iterator[None]:
    """gc threshold 1: every allocation of a GC-tracked object may start a collection."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(1, 1, 1)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.collect()


def test_keys_survive_a_collection_whose_finalizer_grows_the_cache(cache_class):
    # the reproducer of issue 10: keys() allocated its list, the collection it started put 50 entries
    result = run_isolated(
        """
        import gc
        from crypto_bot.memory import ManagedCache
        cache = ManagedCache(ttl_seconds=None)
        class Grows:
            def __del__(self):
                for i in range(50):
                    cache.put(i, i, size_bytes=1)
        hold = [[] for _ in range(200)]
        g = Grows(); g.me = g; del g
        gc.set_threshold(1)
        keys = cache.keys()
        cache._verify()
        assert sorted(keys) == list(range(50)) or keys == [], keys
        assert sorted(cache.keys()) == list(range(50))
        print("ok")
        """,
        cache_class._backend,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_items_survive_a_collection_whose_finalizer_empties_the_cache(cache_class):
    result = run_isolated(
        """
        import gc
        from crypto_bot.memory import ManagedCache
        cache = ManagedCache(ttl_seconds=None)
        for i in range(100):
            cache.put(i, str(i), size_bytes=1)
        class Empties:
            def __del__(self):
                cache.clear()
        g = Empties(); g.me = g; del g
        gc.set_threshold(1)
        items = cache.items()
        cache._verify()
        assert items == [] or items == [(i, str(i)) for i in range(100)], items
        print("ok")
        """,
        cache_class._backend,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


class Mutator:
    """Changes the cache in every way it can be changed; called from finalizers and gc.callbacks."""

    def __init__(self, cache: ManagedCache, seed: int) -> None:
        self.cache = cache
        self.rng = random.Random(seed)
        self.calls = 0
        self.active = False

    def __call__(self, *_: object) -> None:
        if self.active:  # a collection started by this mutation: leave it be, or it never ends
            return
        self.active = True
        try:
            self.calls += 1
            rng, cache = self.rng, self.cache
            choice = rng.random()
            key = rng.randrange(64)
            if choice < 0.45:
                cache.put(key, [key], size_bytes=rng.randrange(1, 40))
            elif choice < 0.7:
                cache.delete(key)
            elif choice < 0.8:
                cache.get(key)
            elif choice < 0.9:
                cache.shrink_to(rng.randrange(500))
            elif choice < 0.97:
                cache.keys()
            else:
                cache.clear()
        finally:
            self.active = False


class Garbage:
    """A reference cycle whose finalizer calls `action` when the collector frees it."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.me = self

    def __del__(self) -> None:
        self.action()


def drain_free_lists() -> list[object]:
    """Take every list and small tuple the interpreter keeps for reuse: the cache's next list or
    tuple is then a real GC-tracked allocation, the kind that can start a collection."""
    return [[[] for _ in range(100)], [(i, i) for i in range(2100)], [(i, i, i) for i in range(2100)]]


def chaos_step(cache: ManagedCache, rng: random.Random, mutator: Mutator) -> None:
    """One call of every kind, with cyclic garbage whose finalizer mutates the cache."""
    Garbage(mutator)
    held = drain_free_lists()  # noqa: F841 - alive until the call below is done
    key = rng.randrange(64)
    choice = rng.random()
    if choice < 0.3:
        cache.put(key, [key], size_bytes=rng.randrange(1, 40), ttl_seconds=rng.choice([None, 0.5, 50]))
    elif choice < 0.45:
        cache.get(key)
    elif choice < 0.5:
        key in cache  # noqa: B015 - the lookup is the operation under test
    elif choice < 0.6:
        keys = cache.keys()
        assert len(keys) == len(set(keys))  # (the limits are _verify's: another thread may resize meanwhile)
    elif choice < 0.7:
        items = cache.items()
        assert all(value == [key] for key, value in items)
    elif choice < 0.75:
        list(cache)
    elif choice < 0.8:
        snapshot = cache.cache
        for key in list(snapshot):
            snapshot.get(key)
    elif choice < 0.85:
        cache.pop(key)
    elif choice < 0.88:
        cache.cleanup_expired()
    elif choice < 0.91:
        cache.evict_coldest()
    elif choice < 0.94:
        cache.resize(max_size=rng.randrange(16, 128), max_bytes=rng.randrange(500, 5000))
    elif choice < 0.97:
        cache.stats()
    else:
        cache.get_or_load(key, lambda: [key])


@pytest.mark.parametrize("seed", [1, 4])
def test_gc_chaos_every_collection_mutates_the_cache(cache_class, collect_every_allocation, seed):
    cache = cache_class(max_size=100, max_bytes=5000, ttl_seconds=5)
    mutator = Mutator(cache, seed=seed)
    removed: list[RemovalCause] = []
    cache.add_listener(lambda key, value, cause: removed.append(cause))
    gc.callbacks.append(mutator)
    try:
        rng = random.Random(seed + 1)
        for step in range(3000):
            chaos_step(cache, rng, mutator)
            if step % 100 == 0:
                cache._verify()
    finally:
        gc.callbacks.remove(mutator)
    cache._verify()
    assert mutator.calls > 1000  # the chaos really ran inside the cache's calls
    assert removed


def test_eight_threads_with_cyclic_garbage_keep_the_store_intact(cache_class, collect_every_allocation):
    cache = cache_class(max_size=100, max_bytes=5000, ttl_seconds=5)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        mutator = Mutator(cache, seed=100 + seed)
        try:
            start.wait()
            for _ in range(800):
                chaos_step(cache, rng, mutator)
        except BaseException as error:  # reported to the test below
            errors.append(error)

    collection_mutator = Mutator(cache, seed=99)
    gc.callbacks.append(collection_mutator)
    previous_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous_interval)
        gc.callbacks.remove(collection_mutator)
    assert errors == []
    cache._verify()
    assert cache.total_bytes == sum(entry.size_bytes for entry in cache.cache.values())
