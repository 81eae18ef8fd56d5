"""Fakes and helpers shared by the manager, config and facade tests (fixtures live in conftest.py)."""

from __future__ import annotations

import importlib
import os
import random
import threading
from collections.abc import Callable

import pytest

from crypto_bot.memory.cache import ManagedCache
from crypto_bot.memory.manager import MaintenanceReport, MemoryManager
from crypto_bot.memory.probe import MemoryReading
from tests.fakes import FakeClock

KIB = 1024
MIB = 1024 * KIB
LIMIT_BYTES = 100 * MIB
THREAD_WAIT_SECONDS = 10.0  # an upper bound for a real thread to be observed, never an assertion on time


def c_store_builds() -> bool:
    """Whether the C entry store was built and imports (the Python one always does)."""
    try:
        importlib.import_module("crypto_bot.memory._cachecore")
    except ImportError:
        return False
    return True


C_STORE_BUILT = c_store_builds()
# The entry stores every cache test runs against (the `cache_class` fixture). Where the C store was
# not built its cases are skipped, visibly; on CI (which has a compiler) they run and fail instead.
_SKIP_C = not C_STORE_BUILT and not os.environ.get("CI")
CACHE_BACKENDS = [pytest.param("c", marks=pytest.mark.skipif(_SKIP_C, reason="the C cache store was not built")), "python"]


class CollidingKey:
    """Equal by `ident`; every instance hashes alike, so all of them share one probe run of the table
    and every lookup among them runs this Python-level __eq__."""

    def __init__(self, ident: int) -> None:
        self.ident = ident

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CollidingKey) and other.ident == self.ident


class FakeProbe:
    """Stands in for MemoryProbe: the test sets `usage_ratio`, `limit_bytes` and `rss`."""

    def __init__(self, usage_ratio: float | None = 0.3, limit_bytes: int | None = LIMIT_BYTES, rss: int = 50 * MIB):
        self.usage_ratio = usage_ratio
        self.limit_bytes = limit_bytes
        self.rss = rss

    def read(self) -> MemoryReading:
        return MemoryReading(
            rss_bytes=self.rss,
            system_total_bytes=None,
            system_available_bytes=None,
            system_percent=None,
            cgroup_limit_bytes=None,
            cgroup_high_bytes=None,
            cgroup_usage_bytes=None,
            working_set_bytes=None,
            oom_kills=None,
            psi_some_avg10=None,
            limit_bytes=self.limit_bytes,
            usage_ratio=self.usage_ratio,
            cgroup_version=None,
        )

    def rss_bytes(self) -> int:
        return self.rss


class Payload:
    """A weakly referenceable value, so release checks can see whether it died."""


ManagerFactory = Callable[..., MemoryManager]


def forbidden(name: str) -> Callable[..., None]:
    """A stand-in that fails the test if called."""

    def call(*args, **kwargs) -> None:
        raise AssertionError(f"{name} was called")

    return call


def fill(cache: ManagedCache, clock: FakeClock, keys: list[str], size_bytes: int) -> None:
    """Put one entry per key, one clock second apart, so their recency is unambiguous."""
    for key in keys:
        clock.now += 1
        cache.put(key, Payload(), size_bytes=size_bytes)


class PassCountingManager(MemoryManager):
    """Fails its first `failures` passes, then signals `enough` once `wanted` passes have succeeded."""

    failures = 0
    wanted = 2

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.enough = threading.Event()

    def perform_maintenance(self) -> MaintenanceReport:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"pass {self.calls} broke")
        report = super().perform_maintenance()
        if self.maintenance_runs >= self.wanted:
            self.enough.set()
        return report


def race(step: Callable[[random.Random], None], check: Callable[[], None], *, threads: int, seconds: float) -> list[BaseException]:
    """Call `step(rng)` in a loop on `threads` real threads (each with its own seeded rng) and `check()`
    in a loop on one more, for `seconds`; returns everything they raised."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop(action: Callable[[], None]) -> None:
        try:
            while not stop.is_set():
                action()
        except BaseException as error:  # reported to the test
            errors.append(error)

    workers = [threading.Thread(target=loop, args=(lambda rng=random.Random(seed): step(rng),)) for seed in range(threads)]
    workers.append(threading.Thread(target=loop, args=(check,)))
    try:
        for worker in workers:
            worker.start()
        stop.wait(seconds)
    finally:
        stop.set()
        for worker in workers:
            worker.join(THREAD_WAIT_SECONDS)
    return errors
