"""The leak corpus in the real bot through the automatic diagnosis: cycles until named, whether the line is right, the cost.

Each case of `tests/leak_corpus` runs as the tests run it (`tests/leak_corpus/run.py`, in a fresh
interpreter): the case is the strategy plugin of a TradingBot on the built-in simulated market with
the default settings (six symbols, 1m/5m/1h windows of 300 candles in the bot's managed cache, paper
fills in a SQLite journal), `run_cycle()` then `note_cycle()` then one maintenance pass per cycle, the
process's real RSS, one minute of fake time per cycle, leak windows of 10 readings at 1 MiB/hour.
Columns:
- named: the cycle whose maintenance pass delivered the diagnosis (detection needs two 10-reading
  windows, the diagnosis four more passes);
- right: the top site (a Python leak), the allocation line of the case's type (a leak of threads),
  or the verdict "unexplained" with no line (a native leak) matches the case's `# LEAK` marker;
- cycle ms: the bot's cycle (`run_cycle`, without the maintenance pass) outside windows and inside
  one (tracing), and the ratio x;
- outside: what the diagnosis adds to each maintenance pass outside windows (its per-cycle trend),
  as a share of the bot's cycle with its pass (target <= 1%);
- passes ms: the maintenance passes that start tracing, take the baseline and close the window.
Then the same share over a long clean run, and the frames trade-off: which cases are named right
with 8, 12, 16 (the default) and 32 frames per trace, and what tracing costs the bot's cycle.

Run: .venv/bin/python bench/bench_leak_diagnosis.py [--max-cycles 60] [--clean-cycles 1000] [--frames 8 12 16 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crypto_bot.memory.diagnosis import DEFAULT_FRAMES  # noqa: E402
from tests.leak_corpus import CASES  # noqa: E402
from tests.leak_corpus.harness import judge  # noqa: E402
from tests.leak_corpus.run import fresh_run  # noqa: E402

TARGET_OUTSIDE_RATIO = 0.01


def outside_ratio(timings: dict[str, Any]) -> float:
    """The diagnosis's share of a cycle outside windows: its cost per idle pass over the cycle and its pass."""
    return timings["diagnosis_per_idle_pass_us"] / 1000 / (timings["cycle_ms"] + timings["idle_pass_ms"])


def slowdown(timings: dict[str, Any]) -> float:
    """The bot's cycle while tracing over the cycle outside windows (medians); nan without a traced cycle."""
    inside = timings["cycle_in_window_ms"]
    return float("nan") if inside is None else inside / timings["cycle_ms"]


def short(line: str | None) -> str:
    if line is None:
        return "-"
    path, _, number = line.rpartition(":")
    return f"{Path(path).name}:{number}"


def print_cases(runs: list[dict[str, Any]]) -> None:
    header = (
        f"{'case':<20} {'expected':<8} {'named':>5} {'verdict':<11} {'named line':<26} {'right':<5} "
        f"{'explained':>9} {'cycle ms':>8} {'in window':>9} {'x':>5} {'outside':>8} {'passes ms':>17}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        line, right = judge(run)
        diagnosis, timings = run["diagnosis"] or {}, run["timings"]
        explained = diagnosis.get("explained_ratio")
        inside = timings["cycle_in_window_ms"]
        passes = "/".join(f"{ms:.0f}" for ms in timings["window_passes_ms"] if ms > 5)
        print(
            f"{run['case']:<20} {run['expected'] or '-':<8} {run['named_at_cycle'] or 'never':>5} "
            f"{diagnosis.get('verdict', '-'):<11} {short(line):<26} {'yes' if right else 'NO':<5} "
            f"{'-' if explained is None else f'{explained:.0%}':>9} {timings['cycle_ms']:>8.1f} "
            f"{'-' if inside is None else f'{inside:.0f}':>9} {slowdown(timings):>5.1f} "
            f"{outside_ratio(timings):>8.3%} {passes:>17}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-cycles", type=int, default=60)
    parser.add_argument("--clean-cycles", type=int, default=1000)
    parser.add_argument("--frames", type=int, nargs="*", default=[8, 12, DEFAULT_FRAMES, 32])
    args = parser.parse_args()

    print(f"Leak corpus in the real bot, {DEFAULT_FRAMES} frames per trace, a fresh interpreter per case; "
          f"python {sys.version.split()[0]}\n")
    by_frames = {DEFAULT_FRAMES: [fresh_run(name, max_cycles=args.max_cycles) for name in CASES]}
    runs = by_frames[DEFAULT_FRAMES]
    print_cases(runs)
    print(f"\nnamed right: {sum(judge(run)[1] for run in runs)} of {len(runs)}")

    clean = fresh_run("clean", max_cycles=args.clean_cycles)
    timings = clean["timings"]
    print(f"\nOutside windows (the clean plugin, {clean['cycles']} cycles, one pass per cycle, "
          f"{len(clean['suspected_cycles'])} suspected, {'diagnosed' if clean['diagnosis'] else 'never diagnosed'}):")
    print(f"{'bot cycle ms':>13} {'maintenance pass ms':>20} {'diagnosis per pass us':>22} {'share of cycle':>15} {'target':>7}")
    print(
        f"{timings['cycle_ms']:>13.2f} {timings['idle_pass_ms']:>20.3f} {timings['diagnosis_per_idle_pass_us']:>22.1f} "
        f"{outside_ratio(timings):>15.4%} {TARGET_OUTSIDE_RATIO:>7.0%}"
    )

    print("\nFrames per trace: cases named right, and what tracing costs the bot's cycle (median over the cases)")
    print(f"{'frames':>6} {'named right':>12} {'cycle while tracing':>20}  missed")
    for frames in args.frames:
        if frames not in by_frames:
            by_frames[frames] = [fresh_run(name, max_cycles=args.max_cycles, frames=frames) for name in CASES]
        frame_runs = by_frames[frames]
        missed = [run["case"] for run in frame_runs if not judge(run)[1]]
        cost = statistics.median(slowdown(run["timings"]) for run in frame_runs)
        named_right = f"{len(frame_runs) - len(missed)} of {len(frame_runs)}"
        print(f"{frames:>6} {named_right:>12} {cost:>19.1f}x  {', '.join(missed) or '-'}")


if __name__ == "__main__":
    main()
