"""`crypto-bot soak`: the full trading cycle back to back, memory recorded every cycle.

The workload is a scanner's: new pairs are listed every cycle and analysed at once, the universe
rotates, so plain dict caches grow without end. `--unmanaged` runs exactly that way (no manager,
dicts never trimmed, the model never unloaded); the default runs under the memory manager.
Output: `soak.csv` (one row per cycle, with the limit the run read), `memory.png` (drawn by
crypto_bot.soak_plot), `summary.json` (with the thresholds the run used) and a printed summary.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import importlib
import json
import logging
import time
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crypto_bot.cli import EXIT_OK, EXIT_USAGE, CommandError, load_config, non_negative_int, non_negative_number, positive_int
from crypto_bot.memory.leaks import LEAK_THRESHOLD_BYTES_PER_CYCLE, LeakDetector
from crypto_bot.memory.units import KIB as _KIB
from crypto_bot.memory.units import MIB as _MIB

# asyncio, the manager and the probe are imported inside the functions that run a soak: every `crypto-bot` command
# builds its command line from `add_soak_command`, and `config check` should not load them for it.
if TYPE_CHECKING:
    from crypto_bot.memory import MemoryProbe
    from crypto_bot.settings import Settings

logger = logging.getLogger(__name__)

FIELDS = (
    "cycle",
    "seconds",
    "rss_bytes",
    "working_set_bytes",
    "cache_bytes",
    "cache_entries",
    "models_loaded",
    "pressure_level",
    "gc_collections",
    "unmanaged_bytes",
    "leak_suspected",
    "limit_bytes",
)
_injected_leak: list[bytes] = []  # --inject-leak-kib appends here and never lets go
PLAIN_SIZING_EVERY = 25  # sizing every plain dict entry costs O(entries): done every 25 cycles, carried between


def add_soak_command(commands: Any, parents: list[argparse.ArgumentParser] | None = None) -> None:
    soak = commands.add_parser("soak", help="run cycles back to back and record memory (see README)", parents=parents or [])
    soak.add_argument("--config", default="production_config_enhanced.yaml")
    soak.add_argument("--cycles", type=positive_int, required=True)
    soak.add_argument("--out", required=True, help="output directory (created)")
    soak.add_argument("--unmanaged", action="store_true", help="plain dict caches and no memory manager")
    soak.add_argument("--symbols", type=positive_int, default=200, help="universe size the scanner rotates through")
    soak.add_argument("--new-symbols-per-cycle", type=positive_int, default=6)
    soak.add_argument("--history-candles", type=positive_int, default=1000, help="window kept per series")
    soak.add_argument("--warmup-cycles", type=non_negative_int, default=None, help="cycles excluded from the slope (default: 20%%)")
    soak.add_argument(
        "--inject-leak-kib", type=non_negative_number, default=0.0, help="leak this many KiB per cycle (detector demo)"
    )
    soak.add_argument("--compare", default=None, help="another soak's output directory to draw beside this one")
    soak.add_argument("--no-plot", action="store_true")
    soak.set_defaults(handler=_soak)


def soak_settings(settings: Settings, args: argparse.Namespace, out: Path) -> Settings:
    """The config's settings with the scanner workload and a fresh journal under `out` (ConfigError if out of range)."""
    market = dataclasses.replace(
        settings.market,
        source="simulated",
        scanner_new_symbols_per_cycle=args.new_symbols_per_cycle,
        max_universe=args.symbols,
    )
    strategy = dataclasses.replace(
        settings.strategy,
        history_candles=args.history_candles,
        fetch_limit=min(args.history_candles, settings.strategy.fetch_limit),
    )
    storage = dataclasses.replace(settings.storage, journal_path=str(out / "journal.sqlite"))
    return dataclasses.replace(settings, market=market, strategy=strategy, storage=storage)


def _soak(args: argparse.Namespace) -> int:
    import asyncio

    from crypto_bot.memory import ConfigError

    settings = load_config(args.config)
    out = Path(args.out)
    try:
        workload = soak_settings(settings, args, out)
    except ConfigError as error:
        raise CommandError(EXIT_USAGE, *(f"soak options out of range: {problem}" for problem in error.problems)) from error
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
        (out / stale).unlink(missing_ok=True)
    logging.getLogger("crypto_bot.execution").setLevel(logging.WARNING)  # a soak does not print every fill
    summary = asyncio.run(run_soak(workload, args, out))
    print_summary(summary)
    if not args.no_plot:
        plot(out, compare=Path(args.compare) if args.compare else None)
        print(f"plot: {out / 'memory.png'}")
    return EXIT_OK


async def run_soak(settings: Settings, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from crypto_bot.bot import TradingBot
    from crypto_bot.memory import MemoryManager, MemoryProbe

    tqdm = _soak_extra("tqdm").tqdm

    managed = not args.unmanaged
    memory = MemoryManager(settings.memory) if managed else None
    bot = TradingBot(settings, memory=memory, manage_memory=managed)
    probe = memory.probe if memory is not None else MemoryProbe()
    detector = LeakDetector(unit="cycle", slope_threshold=LEAK_THRESHOLD_BYTES_PER_CYCLE)
    warmup = args.warmup_cycles if args.warmup_cycles is not None else args.cycles // 5
    leak_bytes = int(args.inject_leak_kib * _KIB)
    plain_cache_bytes = 0
    rss = array("q")  # the soak's own record must not grow much: 8 bytes a cycle per figure
    cache = array("q")
    started = time.perf_counter()
    if memory is not None and settings.memory.enable_background_cleanup:
        memory.start()  # as `crypto-bot run` does
    try:
        await bot.prepare_model()
        with (
            open(out / "soak.csv", "w", newline="") as handle,
            tqdm(total=args.cycles, unit="cycle", disable=None) as bar,
        ):
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            for cycle in range(1, args.cycles + 1):
                await bot.run_cycle()
                if leak_bytes:
                    _injected_leak.append(bytes(leak_bytes))
                if not managed and cycle % PLAIN_SIZING_EVERY == 1:
                    plain_cache_bytes = sum(_plain_cache_bytes(c) for c in (bot.ctx.df_cache, bot.ctx.regime_cache))
                row = _row(bot, probe, cycle, time.perf_counter() - started, plain_cache_bytes)
                if cycle > warmup:  # caches still filling would read as growth
                    row["leak_suspected"] = int(detector.observe(cycle, row["rss_bytes"], row["cache_bytes"]))
                writer.writerow(row)
                handle.flush()
                rss.append(row["rss_bytes"])
                cache.append(row["cache_bytes"])
                bar.update()
    finally:
        await bot.close()
        if memory is not None:
            memory.stop()
    summary = summarise(rss, cache, warmup, time.perf_counter() - started, bot, detector)
    summary["memory"] = {  # what the plot draws, as this run read and configured it
        "limit_bytes": _limit_bytes(probe.read()),
        "thresholds": {
            "GC": settings.memory.gc_threshold,
            "PRESSURE": settings.memory.memory_threshold,
            "CRITICAL": settings.memory.aggressive_cleanup_threshold,
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _limit_bytes(reading: Any) -> int | None:
    """The limit a reading's usage ratio was measured against (the tightest one where none is named)."""
    if reading.limiting is not None and reading.limiting.limit_bytes is not None:
        return reading.limiting.limit_bytes
    return reading.limit_bytes


def _row(bot: Any, probe: MemoryProbe, cycle: int, seconds: float, plain_cache_bytes: int) -> dict[str, Any]:
    reading = probe.read()
    manager = bot.memory
    if manager is not None:
        caches = list(manager.caches.values())
        cache_bytes = manager.cache_bytes
        entries = sum(len(c) for c in caches)
        models_loaded = sum(1 for r in manager.models.records() if r.loaded)
        level = manager.policy.level.name
        unmanaged = manager.unmanaged_bytes(reading)
    else:
        cache_bytes = plain_cache_bytes
        entries = sum(len(v) if isinstance(v, dict) else 1 for v in bot.ctx.df_cache.values()) + len(bot.ctx.regime_cache)
        models_loaded, level, unmanaged = 1, "UNMANAGED", None
    return {
        "cycle": cycle,
        "seconds": round(seconds, 3),
        "rss_bytes": reading.rss_bytes,
        "working_set_bytes": reading.working_set_bytes,
        "cache_bytes": cache_bytes,
        "cache_entries": entries,
        "models_loaded": models_loaded,
        "pressure_level": level,
        "gc_collections": sum(s["collections"] for s in gc.get_stats()),
        "unmanaged_bytes": unmanaged,
        "leak_suspected": 0,
        "limit_bytes": _limit_bytes(reading),
    }


def _plain_cache_bytes(cache: dict) -> int:
    from crypto_bot.memory import sizeof

    """What the unmanaged dict caches hold, by the same sizer the managed caches use."""
    total = 0
    for value in cache.values():
        total += sum(sizeof(v) for v in value.values()) if isinstance(value, dict) else sizeof(value)
    return total


def summarise(
    rss: array, cache: array, warmup: int, seconds: float, bot: Any, detector: LeakDetector
) -> dict[str, Any]:
    """Slope after warm-up by least squares, peak and final RSS, evictions by cause, leak verdict."""
    import numpy as np  # here, not at the top: `crypto-bot --help` and `config check` import this module

    start = warmup if len(rss) - warmup >= 3 else 0
    cycles = np.arange(start + 1, len(rss) + 1, dtype=float)
    slope = float(np.polyfit(cycles, np.asarray(rss[start:], dtype=float), 1)[0]) if len(cycles) >= 3 else float("nan")
    evictions: dict[str, int] = {}
    manager = bot.memory
    if manager is not None:
        for cache_stats in (c.stats() for c in manager.caches.values()):
            for cause, count in cache_stats["evictions"].items():
                evictions[cause] = evictions.get(cause, 0) + count
    report = detector.report()
    return {
        "mode": "managed" if manager is not None else "unmanaged",
        "cycles": len(rss),
        "warmup_cycles": start,
        "seconds": round(seconds, 1),
        "rss_slope_kib_per_cycle": slope / _KIB,
        "rss_peak_mib": max(rss) / _MIB,
        "rss_final_mib": rss[-1] / _MIB,
        "cache_peak_mib": max(cache) / _MIB,
        "evictions": evictions,
        "trades": bot.broker.trades_count,
        "leak_suspected": report.suspected,
        "leak_slope_kib_per_cycle": None if report.slope_bytes_per_unit is None else report.slope_bytes_per_unit / _KIB,
    }


def print_summary(summary: dict[str, Any]) -> None:
    evictions = ", ".join(f"{cause} {count}" for cause, count in summary["evictions"].items() if count) or "none"
    leak_slope = summary["leak_slope_kib_per_cycle"]
    print(
        f"\nSoak ({summary['mode']}): {summary['cycles']} cycles in {summary['seconds']:.0f} s, {summary['trades']} trades\n"
        f"  RSS slope after {summary['warmup_cycles']} warm-up cycles: {summary['rss_slope_kib_per_cycle']:.2f} KiB/cycle\n"
        f"  RSS peak {summary['rss_peak_mib']:.1f} MiB, final {summary['rss_final_mib']:.1f} MiB; "
        f"cache peak {summary['cache_peak_mib']:.1f} MiB\n"
        f"  evictions by cause: {evictions}\n"
        f"  leak detector: {'LEAK SUSPECTED' if summary['leak_suspected'] else 'no leak'}"
        + ("" if leak_slope is None else f" (unmanaged memory {leak_slope:.2f} KiB/cycle over the last window)"),
        flush=True,
    )


def _soak_extra(module: str) -> Any:
    """A module of the `soak` extra (plotting, the progress bar), or exit 2 saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise CommandError(
            EXIT_USAGE,
            f"crypto-bot soak needs {module.split('.')[0]} ({error}): install the soak extra, pip install 'crypto-bot[soak]'",
        ) from error


def plot(out: Path, *, compare: Path | None = None) -> None:
    """memory.png: see `crypto_bot.soak_plot.draw` (numpy and matplotlib load only here)."""
    plt = _soak_extra("matplotlib.pyplot")
    from crypto_bot.soak_plot import draw

    figure = draw(out, compare=compare)
    figure.savefig(out / "memory.png")
    plt.close(figure)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
