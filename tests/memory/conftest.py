"""Shared helpers for the memory tests."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from crypto_bot.memory import manager as manager_module
from crypto_bot.memory.cache import ManagedCache, managed_cache_class
from crypto_bot.memory.config import MemoryConfig
from crypto_bot.memory.manager import MemoryManager
from tests.fakes import FakeClock
from tests.memory.support import CACHE_BACKENDS, FakeProbe, ManagerFactory


def released_bytes(build: Callable[[], object]) -> int:
    """Bytes freed when the last reference to ``build()``'s value is dropped, as tracemalloc sees it.

    Arrow buffers live in pyarrow's own memory pool, which tracemalloc cannot
    see; when pyarrow is loaded its pool's release is added.
    """
    pyarrow = sys.modules.get("pyarrow")
    gc.collect()
    tracemalloc.start()
    try:
        value = build()
        gc.collect()
        arrow_before_bytes = pyarrow.total_allocated_bytes() if pyarrow else 0
        traced_before_bytes = tracemalloc.get_traced_memory()[0]
        del value
        gc.collect()
        traced_after_bytes = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    arrow_released_bytes = arrow_before_bytes - pyarrow.total_allocated_bytes() if pyarrow else 0
    # traced_before_bytes is itself an int allocated after its reading and alive at the second one.
    return traced_before_bytes - traced_after_bytes + sys.getsizeof(traced_before_bytes) + arrow_released_bytes


@pytest.fixture
def measure_released_bytes() -> Callable[[Callable[[], object]], int]:
    """The tracemalloc truth: bytes a freshly built value frees when dropped."""
    return released_bytes


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=CACHE_BACKENDS)
def cache_class(request: pytest.FixtureRequest) -> type[ManagedCache]:
    """ManagedCache over each entry store, C and Python: a test that takes this runs once per store."""
    return managed_cache_class(request.param)


@pytest.fixture
def probe() -> FakeProbe:
    return FakeProbe()


@pytest.fixture
def alerts() -> list[tuple[str, dict]]:
    return []


@pytest.fixture
def make_manager(clock: FakeClock, probe: FakeProbe, alerts: list) -> Iterator[ManagerFactory]:
    """Builds managers on the fake clock and probe (no thread unless a test starts one); stops them all."""
    managers: list[MemoryManager] = []

    def make(manager_class: type[MemoryManager] = MemoryManager, **settings) -> MemoryManager:
        config = MemoryConfig(**{"enable_background_cleanup": False, **settings})
        manager = manager_class(config, probe=probe, clock=clock, on_alert=lambda *alert: alerts.append(alert))
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.stop()


@pytest.fixture
def gc_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the manager's collections (each still runs the real collect_garbage)."""
    calls: list[int] = []
    real_collect_garbage = manager_module.collect_garbage

    def counting_collect_garbage():
        result = real_collect_garbage()
        calls.append(result.collected)
        return result

    monkeypatch.setattr(manager_module, "collect_garbage", counting_collect_garbage)
    return calls
