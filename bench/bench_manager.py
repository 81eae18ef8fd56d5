"""Latency of the memory manager's routine calls on a crowded heap, beside the heap walk they replaced.

Measured in one process: `get_memory_stats()` and an idle `perform_maintenance()` (nothing due)
for `MemoryManager` and the seed-compatible `EnhancedMemoryManager`, each holding 10 caches x 10k
entries with 2 million other tracked objects on the heap, beside `len(gc.get_objects())` (the heap
walk the seed's statistics did, ~69 ms in the issue); `stop()` with the maintenance thread asleep
(the seed took 5 s and left the thread alive); one `MemoryProbe().read()`.
Targets: stats and idle maintenance <= 1 ms, stop <= 100 ms with the thread gone, a reading
<= 100 us. Run: .venv/bin/python bench/bench_manager.py
"""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from crypto_bot.memory import MemoryConfig, MemoryManager, MemoryProbe, PressureLevel
from crypto_bot.utils import enhanced_memory_manager as facade_module
from crypto_bot.utils.enhanced_memory_manager import EnhancedMemoryManager

CACHES = 10
ENTRIES_PER_CACHE = 10_000
ENTRY_SIZE_BYTES = 64
BALLAST_OBJECTS = 2_000_000
CALL_REPEATS = 300
HEAP_WALK_REPEATS = 5
STOP_REPEATS = 5
THREAD_SETTLE_SECONDS = 0.05
PROBE_CALLS = 20_000
WARMUP_CALLS = 20
SEED_STOP_SECONDS = 5.0  # from the issue: join(timeout=5) on a thread sleeping in time.sleep
MAINTENANCE_THREAD_NAME = "memory-maintenance"

STATS_TARGET_SECONDS = 1e-3
STOP_TARGET_SECONDS = 0.1
PROBE_TARGET_SECONDS = 100e-6


@dataclass(slots=True)
class Samples:
    """Wall time per call, and the calling thread's CPU time (the gap is preemption or waiting)."""

    wall_seconds: list[float]
    cpu_seconds: list[float]


@dataclass(slots=True)
class Row:
    call: str
    samples: Samples
    target_seconds: float | None
    baseline: str = "-"
    baseline_seconds: float | None = None
    note: str = ""

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.samples.wall_seconds)

    @property
    def mean_seconds(self) -> float:
        return statistics.fmean(self.samples.wall_seconds)

    @property
    def p99_seconds(self) -> float:
        return p99(self.samples.wall_seconds)

    @property
    def cpu_p99_seconds(self) -> float:
        return p99(self.samples.cpu_seconds)


def p99(samples: list[float]) -> float:
    """The 99th percentile; the maximum below 100 samples."""
    return max(samples) if len(samples) < 100 else statistics.quantiles(samples, n=100)[98]


def timed(call: Callable[[], object], samples: Samples) -> None:
    wall_started, cpu_started = time.perf_counter(), time.thread_time()
    call()
    samples.cpu_seconds.append(time.thread_time() - cpu_started)
    samples.wall_seconds.append(time.perf_counter() - wall_started)


def per_call(call: Callable[[], object], repeats: int) -> Samples:
    """Each call timed on its own, after a warm-up, so the p99 shows the tail."""
    for _ in range(WARMUP_CALLS):
        call()
    samples = Samples([], [])
    for _ in range(repeats):
        timed(call, samples)
    return samples


def fill(manager: MemoryManager) -> None:
    for index in range(CACHES):
        cache = manager.register_cache(f"cache-{index}", max_size=ENTRIES_PER_CACHE)
        for key in range(ENTRIES_PER_CACHE):
            cache.put(key, (key, float(key)), size_bytes=ENTRY_SIZE_BYTES)


def heap_walk() -> Samples:
    samples = Samples([], [])
    for _ in range(HEAP_WALK_REPEATS):
        timed(lambda: len(gc.get_objects()), samples)
    return samples


def stop_seconds(
    build: Callable[[], MemoryManager],
    start: Callable[[MemoryManager], None],
    stop: Callable[[MemoryManager], None],
) -> tuple[Samples, int]:
    """stop() latency with the maintenance thread asleep mid-interval; also how many threads outlived it."""
    samples, survivors = Samples([], []), 0
    for _ in range(STOP_REPEATS):
        manager = build()
        start(manager)
        time.sleep(THREAD_SETTLE_SECONDS)
        (thread,) = [t for t in threading.enumerate() if t.name == MAINTENANCE_THREAD_NAME and t.is_alive()]
        timed(lambda: stop(manager), samples)
        survivors += thread.is_alive()
    return samples, survivors


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def print_table(rows: list[Row]) -> None:
    header = ("call", "median", "mean", "p99", "cpu p99", "target", "median/target", "meets", "baseline", "baseline/median")
    lines = [header]
    for row in rows:
        target = row.target_seconds
        meets = "-"
        if target is not None:
            meets = "median+p99" if row.p99_seconds <= target else "median" if row.median_seconds <= target else "NO"
        speedup = "-" if row.baseline_seconds is None else f"{row.baseline_seconds / row.median_seconds:,.0f}x"
        lines.append((
            row.call,
            fmt_seconds(row.median_seconds),
            fmt_seconds(row.mean_seconds),
            fmt_seconds(row.p99_seconds),
            fmt_seconds(row.cpu_p99_seconds),
            fmt_seconds(target),
            "-" if target is None else f"{row.median_seconds / target:.3f}",
            meets,
            row.baseline,
            speedup,
        ))
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    for number, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths))
    for row in rows:
        if row.note:
            print(f"note: {row.call}: {row.note}")


def idle_note(manager: MemoryManager) -> str:
    report = manager.last_report
    if report is None or report.level is not PressureLevel.NORMAL or report.gc_collected or report.expired_entries:
        return f"NOT idle (last pass: {report})"
    return ""


def main() -> None:
    started = time.perf_counter()
    ballast = [[index] for index in range(BALLAST_OBJECTS)]  # lists stay GC-tracked, unlike atomic tuples
    core = MemoryManager(MemoryConfig(enable_background_cleanup=False))
    facade = EnhancedMemoryManager(facade_module.MemoryConfig(enable_background_cleanup=False))
    fill(core)
    fill(facade)
    gc.collect()
    tracked_objects = len(gc.get_objects())
    reading = core.read_memory()
    print(
        f"{CACHES} caches x {ENTRIES_PER_CACHE:,} entries per manager, {len(ballast):,} ballast lists, "
        f"{tracked_objects:,} GC-tracked objects; usage ratio {reading.usage_ratio:.3f} of "
        f"{(reading.limit_bytes or 0) / 2**30:.1f} GiB (cgroup v{reading.cgroup_version}); "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (tails include preemption)\n"
    )

    walk = Row(f"len(gc.get_objects()) ({tracked_objects / 1e6:.1f}M objects)", heap_walk(), None)
    walk_seconds = walk.median_seconds
    walk_label = f"heap walk {fmt_seconds(walk_seconds)}"
    rows = [walk]
    for name, manager in (("MemoryManager", core), ("EnhancedMemoryManager", facade)):
        rows.append(Row(f"{name}.get_memory_stats()", per_call(manager.get_memory_stats, CALL_REPEATS),
                        STATS_TARGET_SECONDS, walk_label, walk_seconds))
    facade_pressure_events = facade.memory_pressure_events
    for name, manager in (("MemoryManager", core), ("EnhancedMemoryManager", facade)):
        # The warm-up passes absorb the facade's first forced GC (its GC clock starts at 0).
        row = Row(f"{name}.perform_maintenance() idle", per_call(manager.perform_maintenance, CALL_REPEATS),
                  STATS_TARGET_SECONDS, walk_label, walk_seconds)
        row.note = idle_note(manager)
        rows.append(row)
    if facade.memory_pressure_events != facade_pressure_events:
        rows[-1].note = "NOT idle: the facade saw memory pressure"

    seed_label = f"seed {fmt_seconds(SEED_STOP_SECONDS)} (issue)"
    for call, build, start, stop in (
        ("MemoryManager.stop()", lambda: MemoryManager(MemoryConfig(maintenance_interval_seconds=3600)),
         MemoryManager.start, MemoryManager.stop),
        ("EnhancedMemoryManager.stop_background_cleanup()",
         lambda: EnhancedMemoryManager(facade_module.MemoryConfig(maintenance_interval_seconds=3600)),
         EnhancedMemoryManager.start_background_cleanup, EnhancedMemoryManager.stop_background_cleanup),
    ):
        samples, survivors = stop_seconds(build, start, stop)
        row = Row(call, samples, STOP_TARGET_SECONDS, seed_label, SEED_STOP_SECONDS)
        row.note = f"thread alive after stop in {survivors} of {STOP_REPEATS} runs" + (" (FAIL)" if survivors else "")
        rows.append(row)

    with MemoryProbe() as probe:
        rows.append(Row("MemoryProbe().read()", per_call(probe.read, PROBE_CALLS), PROBE_TARGET_SECONDS))

    print_table(rows)
    print(f"\nmedians of {CALL_REPEATS} calls ({PROBE_CALLS:,} for the probe, {STOP_REPEATS} for stop, "
          f"{HEAP_WALK_REPEATS} for the heap walk); p99 is the max below 100 samples; "
          f"cpu p99 is the calling thread's CPU time, so wall minus cpu is preemption (or, for stop, the join); "
          f"total {time.perf_counter() - started:.1f} s")
    del ballast


if __name__ == "__main__":
    main()
