"""Shared helpers for the memory tests."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable

import pytest


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
