"""Cost of one memory reading: MemoryProbe().read() against read_memory() and bare psutil calls.

MemoryProbe keeps its sources open and re-reads them with pread; read_memory() resolves the
cgroup and opens every file on each call. psutil's process and host calls are shown for scale.
Target: one MemoryProbe reading <= 100 us. Run: .venv/bin/python bench/bench_probe.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import psutil

from crypto_bot.memory.probe import MemoryProbe, read_memory

TARGET_MICROSECONDS = 100.0
WARMUP_CALLS = 200
TIMED_CALLS = 20_000


def per_call_microseconds(call: Callable[[], object], calls: int) -> list[float]:
    """Each call timed on its own, so the p99 shows the tail rather than a mean of batches."""
    for _ in range(WARMUP_CALLS):
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1000.0)
    return samples


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def main() -> None:
    process = psutil.Process()
    with MemoryProbe() as probe:
        reading = probe.read()
        print(
            f"cgroup v{reading.cgroup_version} at {probe.location.directory if probe.location else '-'}; "
            f"limit {reading.limit_bytes} B, usage ratio {reading.usage_ratio:.3f}"
        )
        candidates: list[tuple[str, Callable[[], object], int]] = [
            ("MemoryProbe().read()", probe.read, TIMED_CALLS),
            ("MemoryProbe().rss_bytes()", probe.rss_bytes, TIMED_CALLS),
            ("read_memory() (resolves each call)", read_memory, TIMED_CALLS // 10),
            ("psutil.Process().memory_info()", lambda: psutil.Process().memory_info(), TIMED_CALLS),
            ("process.memory_info() (Process kept)", process.memory_info, TIMED_CALLS),
            ("psutil.virtual_memory()", psutil.virtual_memory, TIMED_CALLS),
        ]
        rows = [(name, per_call_microseconds(call, calls)) for name, call, calls in candidates]
    baseline_mean = statistics.fmean(rows[0][1])
    print(f"{'call':<38} {'mean us':>9} {'median us':>10} {'p99 us':>9} {'x probe':>8}")
    for name, samples in rows:
        mean = statistics.fmean(samples)
        median = statistics.median(samples)
        print(f"{name:<38} {mean:>9.1f} {median:>10.1f} {p99(samples):>9.1f} {mean / baseline_mean:>8.2f}")
    baseline_median = statistics.median(rows[0][1])
    for statistic, value in (("median", baseline_median), ("mean", baseline_mean)):
        verdict = "meets" if value <= TARGET_MICROSECONDS else "MISSES"
        print(f"MemoryProbe().read() {statistic} {value:.1f} us {verdict} the {TARGET_MICROSECONDS:.0f} us target")
    print("(mean and p99 include preemption: compare them with the load average of a shared host)")


if __name__ == "__main__":
    main()
