"""The leak corpus through the automatic diagnosis: cycles until named, whether the line is right, and the cost.

Each case of `tests/leak_corpus` runs as a strategy under a MemoryManager as the tests run it (six
symbols, 500-candle 1m and 200-candle 5m windows replaced in a managed cache every cycle, one
maintenance pass per cycle, the process's real RSS, one minute of fake time per cycle, leak
windows of 10 readings at 1 MiB/hour), called 20 frames deep as a strategy is under the bot's
event loop (tracemalloc's cost per allocation grows with the frames it captures). Columns:
- named: the cycle whose maintenance pass delivered the diagnosis (detection needs two 10-reading
  windows, the diagnosis four more passes: 24 at best with these settings);
- line right: the top site (a Python leak), the allocation line of the case's type (a leak of
  threads), or the verdict "unexplained" with no line (a native leak) matches the case's marker;
- cycle ms: the cycle's work (market and strategy, not the maintenance pass) outside windows and
  inside one (tracing), and the ratio;
- passes ms: the maintenance passes that start tracing, take the baseline and close the window.
Then what the diagnosis adds outside windows (the per-pass trend update, target <= 1% of the
cycle), and the frames trade-off: which cases are named right with 8, 12, 16 (the default) and 32 frames
per trace, and what tracing costs the cycle with each.

Run: .venv/bin/python bench/bench_leak_diagnosis.py [--max-cycles 60] [--clean-cycles 300]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crypto_bot.memory.diagnosis import DEFAULT_FRAMES, DiagnosisSettings, Verdict  # noqa: E402
from crypto_bot.memory.reclaim import collect_garbage  # noqa: E402
from tests.leak_corpus import CASES  # noqa: E402
from tests.leak_corpus.harness import CYCLE_SECONDS, SYMBOLS, Market, build_manager, leak_lines, load_case  # noqa: E402

STACK_DEPTH = 20
TARGET_OUTSIDE_RATIO = 0.01


def at_depth(depth: int, function, *args: Any) -> Any:
    """Call `function` `depth` frames below here."""
    return function(*args) if depth <= 0 else at_depth(depth - 1, function, *args)


@dataclass
class CaseRun:
    name: str
    expected: str
    named_at: int | None = None
    verdict: str | None = None
    named_line: str | None = None
    right: bool = False
    explained_ratio: float | None = None
    cycle_seconds: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})
    window_pass_seconds: list[float] = field(default_factory=list)
    idle_pass_seconds: list[float] = field(default_factory=list)
    on_pass_seconds: list[float] = field(default_factory=list)


def work(strategy: Any, market: Market) -> None:
    market.advance()
    for symbol in SYMBOLS:
        strategy.signal(symbol, market.candles(symbol))
    strategy.on_cycle_end()


def judge_case(module: Any, diagnosis: Any) -> tuple[str | None, bool]:
    """(the line the diagnosis names, whether it is the case's marked line or the right verdict)."""
    marked = leak_lines(module)
    if module.EXPECTED == "native":
        return None, diagnosis.verdict == Verdict.UNEXPLAINED and not any(line in diagnosis.message for line in marked)
    if module.EXPECTED == "type":
        grown = {growing.name: growing for growing in diagnosis.types}
        sites = grown[module.GROWING_TYPE].allocated_at if module.GROWING_TYPE in grown else ()
        line = sites[0][0] if sites else None
        return line, line in marked
    line = diagnosis.sites[0].site if diagnosis.sites else None
    return line, diagnosis.verdict == Verdict.PYTHON and line in marked


def run_case(name: str, *, frames: int, max_cycles: int) -> CaseRun:
    module = load_case(name)
    strategy = module.STRATEGY()
    collect_garbage()
    manager, clock = build_manager(diagnosis=DiagnosisSettings(window_passes=3, frames=frames))
    market = Market(manager)
    result = CaseRun(name, module.EXPECTED or "-")
    timed_on_pass = manager.diagnoser.on_pass

    def on_pass(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return timed_on_pass(*args)
        finally:
            result.on_pass_seconds.append(time.perf_counter() - started)

    manager.diagnoser.on_pass = on_pass
    try:
        for cycle in range(1, max_cycles + 1):
            tracing = tracemalloc.is_tracing()
            started = time.perf_counter()
            at_depth(STACK_DEPTH, work, strategy, market)
            result.cycle_seconds[tracing].append(time.perf_counter() - started)
            manager.note_cycle()
            clock.advance(CYCLE_SECONDS)
            window_before = manager.diagnoser.window_open
            started = time.perf_counter()
            manager.perform_maintenance()
            pass_seconds = time.perf_counter() - started
            if window_before or manager.diagnoser.window_open:
                result.window_pass_seconds.append(pass_seconds)
            else:
                result.idle_pass_seconds.append(pass_seconds)
            diagnosis = manager.diagnoser.last
            if diagnosis is not None:
                result.named_at = cycle
                result.verdict = diagnosis.verdict
                result.explained_ratio = diagnosis.explained_ratio
                result.named_line, result.right = judge_case(module, diagnosis)
                break
    finally:
        strategy.close()
        manager.stop()
    return result


def clean_overhead(cycles: int) -> CaseRun:
    """The clean strategy for `cycles` cycles: no window ever opens, every pass follows the trend."""
    run = run_case("clean", frames=DEFAULT_FRAMES, max_cycles=cycles)
    assert run.named_at is None, "the clean run was diagnosed"
    return run


def tracing_slowdown(frames: int, cycles: int = 15) -> float:
    """The clean cycle's work while tracing with `frames` frames, over the same work untraced (medians)."""
    module = load_case("clean")
    strategy = module.STRATEGY()
    manager, _ = build_manager()
    market = Market(manager)
    samples: dict[bool, list[float]] = {False: [], True: []}
    try:
        for index in range(2 * cycles):
            traced = index % 2 == 1  # ABAB: drift hits both sides alike
            if traced:
                tracemalloc.start(frames)
            started = time.perf_counter()
            at_depth(STACK_DEPTH, work, strategy, market)
            samples[traced].append(time.perf_counter() - started)
            if traced:
                tracemalloc.stop()
    finally:
        strategy.close()
        manager.stop()
    return statistics.median(samples[True]) / statistics.median(samples[False])


def ms(values: list[float]) -> float:
    return 1000 * statistics.median(values) if values else float("nan")


def short(line: str | None) -> str:
    if line is None:
        return "-"
    path, _, number = line.rpartition(":")
    return f"{Path(path).name}:{number}"


def print_cases(runs: list[CaseRun]) -> None:
    header = (
        f"{'case':<20} {'expected':<8} {'named':>5} {'verdict':<11} {'named line':<26} {'right':<5} "
        f"{'explained':>9} {'cycle ms':>8} {'in window':>9} {'x':>5} {'passes ms':>17}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        outside, inside = ms(run.cycle_seconds[False]), ms(run.cycle_seconds[True])
        passes = "/".join(f"{1000 * seconds:.0f}" for seconds in run.window_pass_seconds if seconds > 0.005)
        explained = "-" if run.explained_ratio is None else f"{run.explained_ratio:.0%}"
        print(
            f"{run.name:<20} {run.expected:<8} {run.named_at if run.named_at else 'never':>5} "
            f"{run.verdict or '-':<11} {short(run.named_line):<26} {'yes' if run.right else 'NO':<5} "
            f"{explained:>9} {outside:>8.1f} {inside:>9.1f} {inside / outside:>5.1f} {passes:>17}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-cycles", type=int, default=60)
    parser.add_argument("--clean-cycles", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    print(f"Leak corpus, {DEFAULT_FRAMES} frames per trace, strategy called {STACK_DEPTH} frames deep; python {sys.version.split()[0]}\n")
    runs = [run_case(name, frames=DEFAULT_FRAMES, max_cycles=args.max_cycles) for name in CASES]
    print_cases(runs)
    print(f"\nnamed right: {sum(run.right for run in runs)} of {len(runs)}")

    clean = clean_overhead(args.clean_cycles)
    cycle_ms = ms(clean.cycle_seconds[False])
    on_pass_us = 1e6 * statistics.median(clean.on_pass_seconds)
    pass_ms = ms(clean.idle_pass_seconds)
    print(f"\nOutside windows (clean strategy, {args.clean_cycles} cycles, one pass per cycle, never diagnosed):")
    print(f"{'cycle work ms':>14} {'maintenance pass ms':>20} {'diagnosis per pass us':>22} {'share of cycle':>15} {'target':>7}")
    ratio = on_pass_us / 1000 / (cycle_ms + pass_ms)
    print(f"{cycle_ms:>14.2f} {pass_ms:>20.3f} {on_pass_us:>22.1f} {ratio:>15.4%} {TARGET_OUTSIDE_RATIO:>7.0%}")

    print("\nFrames per trace: cases named right, and what tracing costs the clean cycle (ABAB medians)")
    print(f"{'frames':>6} {'named right':>12} {'cycle while tracing':>20}")
    for frames in (8, 12, DEFAULT_FRAMES, 32):
        right = sum(run.right for run in runs) if frames == DEFAULT_FRAMES else sum(
            run_case(name, frames=frames, max_cycles=args.max_cycles).right for name in CASES
        )
        print(f"{frames:>6} {f'{right} of {len(CASES)}':>12} {tracing_slowdown(frames):>19.1f}x")


if __name__ == "__main__":
    main()
