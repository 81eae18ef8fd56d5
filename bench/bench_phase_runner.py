"""What PhaseRunner's memory monitoring and maintenance add to a trading cycle of the default configuration.

One TradingBot on production_config_enhanced.yaml (journal and model under a temporary directory),
warmed up, then cycles alternate monitor_memory on / off (ABAB...) in one process, so drift in the
market and the machine hits both sides alike. Three figures:
- median cycle time of each side, and the median of the paired (on - off) differences: the direct
  answer, but cycles differ by a few percent among themselves, so it is noisy on a busy machine;
- the runner's own time per cycle outside the phases (cycle time minus the phases' seconds), on
  and off: the monitoring happens exactly there, and the phases' variation cancels out;
- the runner's cost per phase over no-op phases, on and off (monitoring in isolation).
Target: monitoring adds at most 1% to the cycle.

Run: .venv/bin/python bench/bench_phase_runner.py [--cycles 40] [--warmup 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from crypto_bot.bot import TradingBot
from crypto_bot.phase_runner import BotContext, PhaseRunner
from crypto_bot.settings import Settings, parse_settings
from crypto_bot.utils.enhanced_memory_manager import reset_enhanced_memory_manager

REPO_ROOT = Path(__file__).resolve().parents[1]
NO_OP_PHASES = 6
NO_OP_RUNS = 2000
TARGET_OVERHEAD_RATIO = 0.01


def default_settings(directory: Path) -> Settings:
    """The repository config with the journal and the model moved under `directory`."""
    raw = yaml.safe_load((REPO_ROOT / "production_config_enhanced.yaml").read_text(encoding="utf-8"))
    raw["strategy"]["model_path"] = str(directory / "signal_model.npz")
    raw["storage"]["journal_path"] = str(directory / "journal.sqlite")
    return parse_settings(raw)


async def interleaved_cycles(bot: TradingBot, cycles: int, warmup: int) -> dict[bool, list[tuple[float, float]]]:
    """(cycle seconds, seconds outside the phases) per cycle, monitoring on (True) and off (False), ABAB."""
    await bot.prepare_model()
    for _ in range(warmup):
        await bot.run_cycle()
    samples: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for index in range(2 * cycles):
        monitor = index % 2 == 0
        bot.runner.monitor_memory = monitor
        started = time.perf_counter()
        timings = await bot.run_cycle()
        cycle_seconds = time.perf_counter() - started
        samples[monitor].append((cycle_seconds, cycle_seconds - sum(timings.values())))
    await bot.runner.drain()
    return samples


async def no_op_microseconds_per_phase(ctx: BotContext) -> dict[bool, float]:
    """The runner's cost per phase over no-op phases, monitoring on and off (interleaved)."""

    async def no_op(context: BotContext) -> None:
        return None

    runners = {flag: PhaseRunner([no_op] * NO_OP_PHASES, monitor_memory=flag) for flag in (True, False)}
    for runner in runners.values():
        await runner.run(ctx)
        await runner.drain()
    totals = {True: 0.0, False: 0.0}
    for _ in range(NO_OP_RUNS):
        for flag, runner in runners.items():
            started = time.perf_counter()
            await runner.run(ctx)
            totals[flag] += time.perf_counter() - started
    return {flag: total / (NO_OP_RUNS * NO_OP_PHASES) * 1e6 for flag, total in totals.items()}


def report(
    samples: dict[bool, list[tuple[float, float]]], no_op_us: dict[bool, float], cycles: int, warmup: int
) -> None:
    """Print the side-by-side table and the verdict against the 1% target."""
    cycle_ms = {flag: statistics.median(s[0] for s in rows) * 1e3 for flag, rows in samples.items()}
    outside_us = {flag: statistics.median(s[1] for s in rows) * 1e6 for flag, rows in samples.items()}
    paired_ms = statistics.median((on[0] - off[0]) * 1e3 for on, off in zip(samples[True], samples[False]))
    base_ms = cycle_ms[False]
    outside_delta_us = outside_us[True] - outside_us[False]
    overhead_ratio = outside_delta_us / 1e3 / base_ms
    rows = [
        (
            "median cycle (ms)",
            f"{cycle_ms[True]:.2f}",
            f"{base_ms:.2f}",
            f"{paired_ms:+.2f} ms = {paired_ms / base_ms:+.2%} (paired, noisy)",
        ),
        (
            "runner time outside phases (us/cycle)",
            f"{outside_us[True]:.0f}",
            f"{outside_us[False]:.0f}",
            f"{outside_delta_us:+.0f} us = {overhead_ratio:+.2%} of the cycle",
        ),
        (
            "runner cost per no-op phase (us)",
            f"{no_op_us[True]:.1f}",
            f"{no_op_us[False]:.1f}",
            f"{no_op_us[True] - no_op_us[False]:+.1f} us",
        ),
    ]
    print(f"default config: {cycles} cycles per side after {warmup} warm-up cycles, interleaved ABAB, one process")
    print(f"{'':40}{'monitor on':>12}{'monitor off':>13}   difference")
    for label, on, off, difference in rows:
        print(f"{label:40}{on:>12}{off:>13}   {difference}")
    verdict = "OK" if overhead_ratio <= TARGET_OVERHEAD_RATIO else "OVER TARGET"
    print(f"monitoring overhead {overhead_ratio:.2%} of the cycle (target <= {TARGET_OVERHEAD_RATIO:.0%}): {verdict}")


async def measure(cycles: int, warmup: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-phase-runner-") as directory:
        bot = TradingBot(default_settings(Path(directory)))
        try:
            samples = await interleaved_cycles(bot, cycles, warmup)
            no_op_us = await no_op_microseconds_per_phase(bot.ctx)
        finally:
            await bot.close()
            reset_enhanced_memory_manager()
    report(samples, no_op_us, cycles, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=40, help="cycles per side (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up cycles (default: %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(measure(args.cycles, args.warmup))


if __name__ == "__main__":
    main()
