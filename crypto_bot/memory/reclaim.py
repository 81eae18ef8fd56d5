"""Garbage collection, timed, followed by handing freed heap back to the OS.

Covers: running ``gc.collect()`` and then glibc's ``malloc_trim(0)``, so memory freed by the
collection leaves the process (RSS drops) instead of lingering in malloc's free lists; elsewhere
(musl, macOS) the trim is a no-op. Not covered: deciding when to collect
(``crypto_bot.memory.pressure.PressurePolicy``, which record_gc() feeds with GcResult.seconds) or
measuring memory (``crypto_bot.memory.probe``).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GcResult:
    """collected: unreachable objects gc.collect() found; trimmed: malloc_trim released memory."""

    collected: int
    seconds: float
    trimmed: bool


def collect_garbage(*, clock: Callable[[], float] = time.perf_counter) -> GcResult:
    """Run a full collection, then malloc_trim(0) where glibc provides it; seconds covers both."""
    started = clock()
    collected = gc.collect()
    malloc_trim = _malloc_trim()
    trimmed = malloc_trim is not None and malloc_trim(0) == 1
    return GcResult(collected=collected, seconds=clock() - started, trimmed=trimmed)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim from the running process's symbols, resolved once; None without glibc."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError) as exc:
        logger.debug("malloc_trim unavailable, collections will not trim the heap: %s", exc)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
