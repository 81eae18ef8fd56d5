"""The `crypto-bot` command: run the bot, check a config, print memory statistics, soak-test.

Paper trading is the only mode: fills are simulated by the paper broker and announced as such
at start-up. SIGINT/SIGTERM let the current phase finish, then the exchange is closed, the
journal flushed and the maintenance thread stopped, and the command exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the settings pull in the trading stack; `memory stats` alone does not need it
    from crypto_bot.settings import Settings

logger = logging.getLogger("crypto_bot")

DEFAULT_CONFIG = "production_config_enhanced.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return args.handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crypto-bot", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the bot (paper trading)")
    run.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file (default: %(default)s)")
    run.add_argument("--cycles", type=positive_int, default=None, help="stop after N cycles (default: run until stopped)")
    run.add_argument("--interval", type=_non_negative_float, default=1.0, help="seconds between cycles (default: %(default)s)")
    run.add_argument("--verbose", action="store_true")
    run.set_defaults(handler=_run)

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="strictly validate a config file")
    check.add_argument("file")
    check.set_defaults(handler=_config_check)
    keys = config_commands.add_parser("keys", help="list every key: default, allowed values, meaning")
    keys.set_defaults(handler=_config_keys)

    memory = commands.add_parser("memory", help="memory tools")
    memory_commands = memory.add_subparsers(dest="memory_command", required=True)
    stats = memory_commands.add_parser("stats", help="print the memory statistics as JSON")
    stats.add_argument("--config", default=None)
    stats.set_defaults(handler=_memory_stats)

    from crypto_bot.soak import add_soak_command

    add_soak_command(commands)
    return parser


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def load_or_report(path: str) -> Settings | None:
    """Strictly load a config (what `config check` runs); print every problem, one a line, and return None."""
    from crypto_bot.memory import ConfigError
    from crypto_bot.settings import load_settings

    try:
        return load_settings(path)
    except ConfigError as error:
        count = len(error.problems)
        print(f"config error{'s' if count > 1 else ''} in {path}:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


# -------------------------------------------------------------------- commands


def _config_check(args: argparse.Namespace) -> int:
    settings = load_or_report(args.file)
    if settings is None:
        return 1
    print(
        f"{args.file}: OK ({settings.market.source} market, {len(settings.symbols)} symbols, "
        f"timeframes {', '.join(settings.timeframes)}, cache budget {settings.memory.cache_size_limit_mb} MB)"
    )
    return 0


def _config_keys(args: argparse.Namespace) -> int:
    from crypto_bot.settings import describe_keys

    for key, default, allowed, meaning in describe_keys():
        print(f"{key:<36} {json.dumps(default):<12} {allowed}\n{'':<36} {meaning}")
    return 0


def _memory_stats(args: argparse.Namespace) -> int:
    from crypto_bot.memory import MemoryConfig, MemoryManager

    config = MemoryConfig()
    if args.config is not None:
        settings = load_or_report(args.config)
        if settings is None:
            return 1
        config = settings.memory
    stats = MemoryManager(config).get_memory_stats()
    stats["reading"] = dataclasses.asdict(stats["reading"])
    print(json.dumps(stats, indent=2, default=str, sort_keys=True))
    return 0


def _run(args: argparse.Namespace) -> int:
    settings = load_or_report(args.config)
    if settings is None:
        return 1
    return asyncio.run(_run_bot(settings, args.cycles, args.interval))


async def _run_bot(settings: Settings, cycles: int | None, interval_seconds: float) -> int:
    from crypto_bot.bot import TradingBot
    from crypto_bot.memory import MemoryManager

    _announce(settings)
    stop = asyncio.Event()
    memory = MemoryManager(settings.memory)
    bot = TradingBot(settings, memory=memory, on_status=lambda status: print(status.line(), flush=True))
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        logger.info("stop requested: finishing the current phase")
        bot.request_stop()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, request_stop)
    metrics_server = _start_metrics(settings, memory)
    if settings.memory.enable_background_cleanup:
        memory.start()
    try:
        await bot.prepare_model()
        while not bot.stopping and (cycles is None or bot.cycle < cycles):
            await bot.run_cycle()
            if interval_seconds and not bot.stopping:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
                except TimeoutError:
                    pass
    finally:
        await bot.close()
        memory.stop()
        if metrics_server is not None:
            metrics_server.shutdown()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    _print_summary(bot.summary())
    return 0


def _announce(settings: Settings) -> None:
    from crypto_bot.memory import cache_backend

    journal = Path(settings.storage.journal_path)
    banner = (
        f"PAPER TRADING - simulated fills, no real orders. Market: {settings.market.source}, "
        f"{len(settings.symbols)} symbols, timeframes {', '.join(settings.timeframes)}, "
        f"starting balance {settings.paper.starting_balance:.2f}, journal {journal}, cache store {cache_backend()}"
    )
    print("=" * len(banner), banner, "=" * len(banner), sep="\n", flush=True)
    logger.info(banner)


def _start_metrics(settings: Settings, memory: Any) -> Any:
    metrics = settings.metrics
    if not metrics.enabled:
        return None
    from crypto_bot.memory.metrics import start_metrics_server

    server = start_metrics_server(memory, metrics.port, addr=metrics.address)
    logger.info("metrics on http://%s:%d/metrics", metrics.address, metrics.port)
    return server


def _print_summary(summary: dict[str, Any]) -> None:
    memory = summary["memory"]
    lines = [
        "",
        "Summary",
        f"  cycles          {summary['cycles']}",
        f"  closed trades   {summary['trades']}",
        f"  realized PnL    {summary['realized_pnl']:.2f}",
        f"  equity          {summary['equity']:.2f}",
        f"  open positions  {summary['open_positions']}",
    ]
    if memory.get("caches"):
        lines.append(
            f"  memory          rss {(memory['reading']['rss_bytes'] or 0) / 2**20:.0f} MiB, caches "
            f"{memory['cache_bytes'] / 2**20:.2f} MiB in {memory['cache_entries']} entries, "
            f"pressure {memory['pressure_level']}, leak suspected: {memory['leak_suspected']}"
        )
        for name, stats in memory["caches"].items():
            evicted = ", ".join(f"{cause} {count}" for cause, count in stats["evictions"].items() if count) or "none"
            lines.append(
                f"    {name:<14} {stats['entries']} entries, {stats['total_bytes'] / 2**20:.2f} MiB, "
                f"hit rate {stats['hit_rate']:.0%}, evictions: {evicted}"
            )
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
