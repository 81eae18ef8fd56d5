"""The `crypto-bot` command: run the bot, check a config, read a running bot's status, soak-test.

Paper trading is the only mode: fills are simulated by the paper broker and announced as such
at start-up. SIGINT/SIGTERM let the current phase finish, then the exchange is closed, the
journal flushed and the maintenance thread stopped, and the command exits 0.

`run` keeps the bot in a child process under a small supervisor (`crypto_bot.supervisor`, which
imports neither pandas nor scikit-learn) unless `recycle.supervise` is false or `--no-supervisor` is
given: when memory cannot be won back or a confirmed leak reaches the limit within the horizon
(`recycle:`), the child ends its cycle, closes everything and exits with `RECYCLE_EXIT_CODE` (75),
and the supervisor starts a fresh one that resumes the open positions from the journal. Without a
supervisor the bot exits with 75 itself, for systemd or Kubernetes to restart it; in a systemd unit of
Type=notify it also sends READY=1 once set up and WATCHDOG=1 after each healthy cycle
(`crypto_bot.service_notify`, `deploy/systemd/crypto-bot.service`).

A fleet (README "Fleet") shares one feeder's candles through Redis: `feed` runs the feeder, `run
--shard i/N` a worker (with `market.source: redis`; its journal gets the shard in its name) and
`status --fleet` shows every heartbeat with Redis's memory.

Every failure is one line on stderr naming the file, key, path or port and what to do (a config
with several problems gives one line per problem), never a traceback; `--debug` adds it. Exit codes:

    0  done, or stopped by SIGINT/SIGTERM (Ctrl-C)
    1  an unexpected error: a bug (the line says so; --debug shows the traceback)
    2  usage or configuration: a bad option, a config file that cannot be read or fails the check
    3  the runtime environment: the trade journal is locked by another bot, not ours or cannot be
       opened; a port is in use; a file cannot be read or written (a CSV, the signal model)
    4  the supervisor gave up: the bot ended too often within recycle.window_minutes
   75  unsupervised, a recycle is due: restart the bot (its open positions resume from the journal)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import textwrap
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from crypto_bot import redaction
from crypto_bot.memory import validation
from crypto_bot.memory.config import MAX_SECONDS

if TYPE_CHECKING:  # the settings pull in the trading stack; `status` and `memory stats` do not need it
    import asyncio  # imported by the commands that run the bot: `config check` stays light (README "Footprint")

    from crypto_bot.memory.allocator import AllocatorConfig
    from crypto_bot.memory.recycle import RecycleConfig
    from crypto_bot.service_notify import ServiceNotifier
    from crypto_bot.settings import Settings
    from crypto_bot.status import ServerConfig, StatusBoard
    from crypto_bot.status.server import StatusServer

logger = logging.getLogger("crypto_bot")

DEFAULT_CONFIG = "production_config_enhanced.yaml"
PROG = "crypto-bot"

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2  # argparse's own code for a bad option; config errors share it
EXIT_ENVIRONMENT = 3
ALLOCATOR_VARIABLE = "CRYPTO_BOT_ALLOCATOR"  # the supervisor's allocator line, for its child to log


class CommandError(Exception):
    """A failure the command reports in its own words: one line per problem, and its exit code."""

    exit_code: int
    lines: tuple[str, ...]

    def __init__(self, exit_code: int, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.exit_code = exit_code
        self.lines = lines


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv  # a supervised run starts its child with the same arguments
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    redaction.install()  # every handler now redacts secrets from each record, whichever logger wrote it
    try:
        return args.handler(args)
    except KeyboardInterrupt:  # Ctrl-C outside the run loop's own handler (loading, training): a stop, as there
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_OK
    except Exception as error:  # the boundary: every failure becomes a line naming what failed
        exit_code, lines = _failure(error)
        if getattr(args, "debug", False):
            print(redaction.redact("".join(traceback.format_exception(error))), end="", file=sys.stderr)
        for line in lines:
            print(redaction.redact(f"{PROG}: {line}"), file=sys.stderr)
        return exit_code


def _failure(error: Exception) -> tuple[int, tuple[str, ...]]:
    """The exit code and the lines that report `error` (imports only on this path, after a failure)."""
    if isinstance(error, CommandError):
        return error.exit_code, error.lines
    from crypto_bot.execution import JournalError
    from crypto_bot.market import CsvFileError
    from crypto_bot.memory import ConfigError

    if isinstance(error, ConfigError):
        return EXIT_USAGE, tuple(f"config error: {problem}" for problem in error.problems)
    if isinstance(error, JournalError | CsvFileError | OSError):
        return EXIT_ENVIRONMENT, (_one_line(str(error) or type(error).__name__),)
    return EXIT_UNEXPECTED, (
        f"unexpected error {type(error).__name__}: {_one_line(str(error))}; this is a bug: rerun with --debug and "
        "report the traceback",
    )


def _one_line(text: str) -> str:
    """`text` with its line breaks turned into spaces (an exception's message may span lines)."""
    return " ".join(text.splitlines())


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (exit 2), like every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    # --debug is global: accepted before the command or after it (SUPPRESS keeps a later default from hiding it).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of a failure"
    )
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0], parents=[common])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the bot (paper trading)", parents=[common])
    run.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file (default: %(default)s)")
    run.add_argument("--cycles", type=positive_int, default=None, help="stop after N cycles (default: run until stopped)")
    run.add_argument(
        "--interval", type=interval_seconds, default=1.0, help="seconds between cycles, finite, >= 0 (default: %(default)s)"
    )
    run.add_argument("--verbose", action="store_true")
    run.add_argument(
        "--shard",
        type=shard_argument,
        default=None,
        help="with market.source: redis, analyse shard i of N of the symbols (e.g. 1/3); the journal gets the shard in "
        "its name",
    )
    run.add_argument(
        "--no-supervisor",
        action="store_true",
        help="run the bot in this process (as recycle.supervise: false): a due recycle exits with code 75",
    )
    run.set_defaults(handler=_run)

    feed = commands.add_parser(
        "feed", help="run a fleet's feeder: fetch candles once for every worker and write them to Redis", parents=[common]
    )
    feed.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file with market.source: redis (default: %(default)s)")
    feed.add_argument("--cycles", type=positive_int, default=None, help="stop after N cycles (default: run until stopped)")
    feed.add_argument(
        "--interval", type=interval_seconds, default=1.0,
        help="seconds between cycles (a simulated upstream moves one candle a cycle) (default: %(default)s)",
    )
    feed.add_argument("--verbose", action="store_true")
    feed.set_defaults(handler=_feed)

    config = commands.add_parser("config", help="configuration tools", parents=[common])
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="strictly validate a config file", parents=[common])
    check.add_argument("file")
    check.set_defaults(handler=_config_check)
    keys = config_commands.add_parser("keys", help="list every key: default, allowed values, meaning", parents=[common])
    keys.set_defaults(handler=_config_keys)

    # Both read the running bot through its server (server: in the config), never the trading stack.
    reader = argparse.ArgumentParser(add_help=False)
    reader.add_argument(
        "--config", default=DEFAULT_CONFIG, help="the running bot's YAML config (its server:) (default: %(default)s)"
    )
    reader.add_argument("--url", default=None, help="the bot's address instead, e.g. http://127.0.0.1:9108/")

    memory = commands.add_parser("memory", help="memory tools", parents=[common])
    memory_commands = memory.add_subparsers(dest="memory_command", required=True)
    stats = memory_commands.add_parser(
        "stats", help="the running bot's memory statistics as JSON", parents=[common, reader]
    )
    stats.set_defaults(handler=_memory_stats)

    status = commands.add_parser(
        "status", help="the running bot: health, memory, caches, positions, fills", parents=[common, reader]
    )
    status.add_argument("--json", action="store_true", help="print the whole /api/status answer as JSON")
    status.add_argument(
        "--journal", action="store_true",
        help="cash, open positions and closed trades from the trade journal instead (read-only; no bot needed)",
    )
    status.add_argument(
        "--fleet", action="store_true",
        help="every fleet process's heartbeat and Redis's memory, from market.redis (with --json: as JSON)",
    )
    status.set_defaults(handler=_status)

    from crypto_bot.soak import add_soak_command

    add_soak_command(commands, parents=[common])
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
    return _argument(validation.integer, "the value", value, minimum=minimum)


def shard_argument(text: str) -> Any:
    """"i/N" as a fleet Shard (argparse type)."""
    from crypto_bot.fleet.shards import Shard

    try:
        return Shard.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def interval_seconds(text: str) -> float:
    """Seconds between cycles: a finite number in [0, a year] (inf would never return, nan never compares)."""
    return non_negative_number(text, maximum=MAX_SECONDS)


def non_negative_number(text: str, maximum: float | None = None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    return _argument(validation.number, "the value", value, minimum=0, maximum=maximum)


def _argument(check: Any, name: str, value: Any, **bounds: Any) -> Any:
    """`check` (a validation function) as an argparse type: its message becomes the usage error."""
    try:
        return check(name, value, **bounds)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def load_config(path: str) -> Settings:
    """Strictly load a config (what `config check` runs); CommandError (exit 2) with one line per problem."""
    from crypto_bot.config_file import ConfigFileError
    from crypto_bot.memory import ConfigError
    from crypto_bot.settings import load_settings

    try:
        return load_settings(path)
    except ConfigFileError as error:  # its problems name the file already
        raise CommandError(EXIT_USAGE, *error.problems) from error
    except ConfigError as error:
        raise CommandError(EXIT_USAGE, *(f"config error in {path}: {problem}" for problem in error.problems)) from error


# -------------------------------------------------------------------- commands


def _config_check(args: argparse.Namespace) -> int:
    settings = load_config(args.file)
    print(
        f"{args.file}: OK ({settings.market.source} market, {len(settings.symbols)} symbols, "
        f"timeframes {', '.join(settings.timeframes)}, cache budget {settings.memory.cache_size_limit_mb} MB, "
        f"strategy {settings.strategy.plugin})"
    )
    return EXIT_OK


def _config_keys(args: argparse.Namespace) -> int:
    from crypto_bot.settings import describe_keys

    for key, default, allowed, meaning in describe_keys():
        print(f"{key:<36} {json.dumps(default):<12} {allowed}\n{'':<36} {meaning}")
    return EXIT_OK


def _memory_stats(args: argparse.Namespace) -> int:
    """The running bot's memory statistics, as its memory manager keeps them."""
    print(json.dumps(_running_bot_status(args)["memory"], indent=2, default=str, sort_keys=True))
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    """The running bot's status (its /api/status), with --journal the trade journal's, with --fleet the fleet's."""
    if args.journal:
        return _journal_status(args.config)
    if args.fleet:
        return _fleet_status(load_config(args.config), args.config, as_json=args.json)
    status = _running_bot_status(args)
    if args.json:
        print(json.dumps(status, indent=2, default=str, sort_keys=True))
    else:
        from crypto_bot.status.report import status_lines

        print("\n".join(status_lines(status)), flush=True)
    return EXIT_OK


def _running_bot_status(args: argparse.Namespace) -> dict[str, Any]:
    """/api/status of the bot at --url, or at the config's server: address; CommandError (exit 3) when none answers."""
    from crypto_bot.status import BotUnreachable, ServerConfig, base_url, config_token, fetch_status

    given_url_alone = args.url is not None and not Path(args.config).exists()  # the token variable's default then
    server = ServerConfig() if given_url_alone else _server_section(args.config)
    if args.url is None and not server.enabled:
        raise CommandError(
            EXIT_USAGE,
            f"server.enabled is false in {args.config}: that bot serves no status; set it to true (and restart the "
            "bot), or give a bot's address with --url",
        )
    if args.url is None and server.port == 0:
        raise CommandError(
            EXIT_USAGE,
            f"server.port is 0 in {args.config} (a free port picked at start): give the address the bot printed "
            "with --url",
        )
    url = args.url or base_url(server.address, server.port)
    try:
        return fetch_status(url, token=config_token(server))
    except BotUnreachable as error:
        raise CommandError(
            EXIT_ENVIRONMENT, f"{error}; `crypto-bot status --journal` reads the trade journal without one"
        ) from error


def _server_section(path: str) -> ServerConfig:
    """The config's `server:` section alone: reading a running bot never imports the trading stack."""
    from crypto_bot.config_file import ConfigFileError, read_config_file
    from crypto_bot.memory import ConfigError
    from crypto_bot.status import ServerConfig

    try:
        return ServerConfig.from_mapping(_section(read_config_file(path), "server"))
    except ConfigFileError as error:
        raise CommandError(EXIT_USAGE, *error.problems) from error
    except ConfigError as error:
        raise CommandError(EXIT_USAGE, *(f"config error in {path}: {problem}" for problem in error.problems)) from error
    except TypeError as error:
        raise CommandError(EXIT_USAGE, f"config error in {path}: {error}") from error


def _journal_status(config: str) -> int:
    """The journal's state, opened read-only: works while a bot holds it, and without one."""
    from crypto_bot.execution import TradeJournal

    settings = load_config(config)
    journal = TradeJournal(settings.storage.journal_path, read_only=True)
    try:
        cash = journal.cash()
        positions = journal.open_positions()
        trades, realized_pnl = journal.trade_totals()
    finally:
        journal.close()
    lines = [
        f"trade journal   {journal.path} (read-only)",
        f"  cash            {'n/a' if cash is None else f'{cash:.2f}'}",
        f"  open positions  {len(positions)}",
        *(
            f"    {p.symbol:<10} {p.side:<5} {p.quantity:.6g} @ {p.entry_price:.6g}, stop {p.stop_price:.6g}"
            for p in positions
        ),
        f"  closed trades   {trades}",
        f"  realized PnL    {realized_pnl:.2f}",
    ]
    print("\n".join(lines), flush=True)
    return EXIT_OK


def _fleet_status(settings: Settings, path: str, *, as_json: bool) -> int:
    """`status --fleet`: the heartbeats and Redis's memory figures (`crypto_bot.fleet.status`)."""
    from crypto_bot.fleet.link import import_redis
    from crypto_bot.fleet.status import fleet_lines, read_fleet

    if settings.market.source != "redis":
        raise CommandError(EXIT_USAGE, f"status --fleet needs market.source: redis in {path} (README: Fleet)")
    try:
        view = read_fleet(settings.market.redis)
    except import_redis().RedisError as error:
        raise CommandError(
            EXIT_ENVIRONMENT, f"cannot read the fleet from {settings.market.redis.address}: {error}; is Redis running?"
        ) from None
    print(json.dumps(view.to_dict(), indent=2) if as_json else "\n".join(fleet_lines(view)), flush=True)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from crypto_bot.supervisor import supervised

    if not args.no_supervisor and not supervised() and (sections := _supervision(args.config)) is not None:
        return _supervise(args.argv, *sections)
    settings = load_config(args.config)
    if args.shard is not None:
        settings = _worker_settings(settings, args.shard, args.config)
    import asyncio

    return asyncio.run(_run_bot(settings, args.cycles, args.interval, shard=args.shard))


def _worker_settings(settings: Settings, shard: Any, path: str) -> Settings:
    """The settings of fleet worker `shard`: its own journal (the shard in the file name)."""
    from crypto_bot.fleet.shards import worker_settings

    if settings.market.source != "redis":
        raise CommandError(EXIT_USAGE, f"--shard needs market.source: redis in {path} (README: Fleet)")
    return worker_settings(settings, shard)


def _feed(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    if settings.market.source != "redis":
        raise CommandError(
            EXIT_USAGE, f"crypto-bot feed needs market.source: redis in {args.config} (it reads market.redis.upstream)"
        )
    import asyncio

    return asyncio.run(_run_feeder(settings, args.cycles, args.interval))


async def _run_feeder(settings: Settings, cycles: int | None, interval_seconds: float) -> int:
    """The feeder until stopped (SIGINT/SIGTERM) or `cycles` ran; one status line a cycle."""
    import asyncio

    from crypto_bot.fleet.feeder import feed
    from crypto_bot.memory import MemoryManager

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    redis = settings.market.redis
    logger.info(
        "feeder: %s upstream, %d symbols x %s, writing to %s (prefix %s)", redis.upstream, len(settings.symbols),
        "/".join(settings.timeframes), redis.address, redis.key_prefix,
    )

    def status_line(feeder: Any) -> None:
        print(
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC | "
            f"cycle {feeder.cycle:>5} | requests {feeder.requests_last_cycle} | windows {feeder.windows} | "
            f"stale {feeder.stale_series} | buffered closes {feeder.buffered_closes} (dropped {feeder.dropped_closes}) | "
            f"redis {'up' if feeder.link.connected else 'DOWN'}",
            flush=True,
        )

    try:
        await feed(settings, cycles=cycles, interval_seconds=interval_seconds, stop=stop,
                   memory=MemoryManager(settings.memory), on_cycle=status_line)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return EXIT_OK


def _supervision(path: str) -> tuple[RecycleConfig, AllocatorConfig] | None:
    """The `recycle:` and `allocator:` sections when the bot is to run under a supervisor; None to run it here.

    Reads those sections alone, so the supervisor never imports the trading stack. A file or section
    that does not parse also gives None: the full check in this process then reports every problem.
    """
    from crypto_bot.config_file import ConfigFileError, read_config_file
    from crypto_bot.memory import ConfigError
    from crypto_bot.memory.allocator import AllocatorConfig
    from crypto_bot.memory.recycle import RecycleConfig

    try:
        raw = read_config_file(path)
        recycle = RecycleConfig.from_mapping(_section(raw, "recycle"))
        allocator = AllocatorConfig.from_mapping(_section(raw, "allocator"))
    except (ConfigFileError, ConfigError, OSError, TypeError):
        return None
    return (recycle, allocator) if recycle.enabled and recycle.supervise else None


def _section(raw: object, name: str) -> dict:
    """The mapping under `name` in a parsed config file (empty when absent); TypeError when it is not one."""
    section = (raw.get(name) or {}) if isinstance(raw, dict) else None
    if not isinstance(section, dict):
        raise TypeError(f"{name} is not a mapping")
    return section


def _supervise(argv: Sequence[str], recycle: RecycleConfig, allocator: AllocatorConfig) -> int:
    """Run the bot with `argv` in a supervised child on the configured allocator until it ends for good."""
    from crypto_bot.memory.allocator import child_environment
    from crypto_bot.supervisor import RestartPolicy, Supervisor, child_command

    environment, allocator_line = child_environment(allocator, os.environ)
    environment[ALLOCATOR_VARIABLE] = allocator_line  # the child logs it after its banner (a failure stays one line)
    policy = RestartPolicy(max_restarts=recycle.max_recycles, window_seconds=recycle.window_minutes * 60)
    supervisor = Supervisor(child_command([*argv, "--no-supervisor"]), policy=policy, environment=environment)
    supervisor.install_signal_handlers()
    logger.debug("supervisor %d runs the bot in a child process (recycle.supervise)", os.getpid())
    return supervisor.run()


async def pause_between_cycles(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or until a stop is requested."""
    import asyncio

    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def _run_bot(settings: Settings, cycles: int | None, interval_seconds: float, *, shard: Any = None) -> int:
    """Run cycles until stopped, `cycles` reached (counting a recycled bot's predecessors) or a recycle is due.

    A fleet worker (`market.source: redis`) waits for the feeder's next close between cycles, at most
    `interval_seconds`, instead of pausing."""
    import asyncio

    from crypto_bot.bot import TradingBot, build_market
    from crypto_bot.memory import MemoryManager
    from crypto_bot.memory.recycle import RecyclePolicy
    from crypto_bot.service_notify import ServiceNotifier
    from crypto_bot.status import StatusBoard
    from crypto_bot.supervisor import cycles_done, recycles_done, request_recycle, supervised

    stop = asyncio.Event()
    service = ServiceNotifier.from_environment()  # systemd's Type=notify: READY=1, WATCHDOG=1 per healthy cycle
    memory = MemoryManager(settings.memory)
    # The bot opens the market and the journal first: a locked or foreign journal is refused before the banner.
    bot = TradingBot(
        settings,
        memory=memory,
        market=None if shard is None else build_market(settings, shard=shard),
        on_status=lambda status: print(status.line(), flush=True),
        first_cycle=cycles_done(),
    )
    board = StatusBoard(
        settings.server,
        memory=memory,
        notifier=bot.notifier,
        interval_seconds=interval_seconds,
        recycles=recycles_done(),
    )
    recycle = RecyclePolicy.from_config(settings.recycle) if settings.recycle.enabled else None
    recycle_reason = None
    stop_reason = "the last cycle ran" if cycles is not None else "stopped"
    loop = asyncio.get_running_loop()
    server = None
    report_signal = None

    def request_stop() -> None:
        nonlocal stop_reason
        logger.info("stop requested: finishing the current phase")
        stop_reason = "a stop was requested (SIGINT/SIGTERM)"
        bot.request_stop()
        stop.set()

    try:
        _announce(settings, successor=bot.first_cycle > 0)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, request_stop)
        # kill -USR1 <pid> writes a memory report beside the journal; leak diagnoses go there too
        report_signal = memory.install_report_signal(Path(settings.storage.journal_path).parent, loop=loop)
        server = _start_server(settings.server, board)
        if settings.memory.enable_background_cleanup:
            memory.start()
        await bot.prepare_model()
        service.ready(f"paper trading from cycle {bot.cycle + 1}")
        _check_watchdog_period(service, interval_seconds)
        bot.notifier.notify(
            f"started (paper trading, {settings.market.source} market, {len(settings.symbols)} symbols, cycle "
            f"{bot.cycle}{'' if server is None else f', status page {server.url}'})",
            event="start",
        )
        while not bot.stopping:
            started = time.perf_counter()
            await bot.run_cycle()
            memory.note_cycle()  # leak diagnoses report growth per cycle
            if bot.last_cycle_healthy and bot.last_status is not None:
                service.watchdog(bot.last_status.line())
            board.record_cycle(bot, time.perf_counter() - started)
            if bot.stopping or (cycles is not None and bot.cycle >= cycles):
                break  # no pause after the last cycle
            if recycle is not None and (decision := recycle.observe_manager(memory)).reason:
                if decision.recycle:
                    recycle_reason = stop_reason = decision.reason
                    logger.warning("recycling the bot process after cycle %d: %s", bot.cycle, recycle_reason)
                    bot.notifier.notify(
                        f"recycling the bot process after cycle {bot.cycle}: {recycle_reason}",
                        event="recycle",
                        details={"cycle": bot.cycle, "recycles_before": board.recycles},
                    )
                    break
                logger.warning("%s", decision.reason)
            if settings.market.source == "redis":
                from crypto_bot.fleet.worker import between_cycles

                await between_cycles(bot, bot.market, stop, interval_seconds)  # type: ignore[arg-type]
            elif interval_seconds:
                await pause_between_cycles(stop, interval_seconds)
    except BaseException as error:
        stop_reason = f"{type(error).__name__}: {error}"
        raise
    finally:
        service.stopping(f"stopping after cycle {bot.cycle}")
        service.close()
        bot.notifier.notify(f"stopped after cycle {bot.cycle}: {stop_reason}", event="stop")
        await bot.close()
        memory.stop()
        if server is not None:
            server.shutdown()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if report_signal is not None:
            report_signal.uninstall()
    _print_summary(bot.summary())
    if recycle_reason is None:
        return EXIT_OK
    if not supervised():
        logger.warning("exiting with code 75 for the service manager to restart the bot (recycle.supervise is false)")
    return request_recycle(recycle_reason, bot.cycle - bot.first_cycle)


def _check_watchdog_period(service: ServiceNotifier, interval_seconds: float) -> None:
    """Warn when systemd's WatchdogSec= would end a bot that is only pausing between cycles."""
    if service.watchdog_seconds is not None and service.watchdog_seconds < 2 * interval_seconds:
        logger.warning(
            "systemd's watchdog period (WatchdogSec=%.0f s) is shorter than two cycle intervals (--interval %g s): "
            "systemd will restart a healthy bot; raise WatchdogSec= or lower --interval",
            service.watchdog_seconds,
            interval_seconds,
        )


BANNER_COLUMNS = 80


def _announce(settings: Settings, successor: bool) -> None:
    """The paper-trading banner, once per `crypto-bot run`: a recycled child (`successor`) only logs that it goes on."""
    from crypto_bot.memory import cache_backend

    if successor:
        logger.info("a fresh bot process goes on paper trading (journal %s)", settings.storage.journal_path)
    else:
        print(banner(settings, cache_backend()), flush=True)
        logger.info("paper trading, strategy %s, journal %s", settings.strategy.plugin, settings.storage.journal_path)
    if allocator_line := os.environ.get(ALLOCATOR_VARIABLE):
        logger.info("%s", allocator_line)


def banner(settings: Settings, cache_store: str) -> str:
    """The start-up banner: what runs, where it writes, in lines of at most BANNER_COLUMNS characters."""
    facts = [
        "PAPER TRADING - simulated fills, no real orders",
        f"market {settings.market.source}, {len(settings.symbols)} symbols, timeframes {', '.join(settings.timeframes)}",
        f"starting balance {settings.paper.starting_balance:.2f}, journal {settings.storage.journal_path}",
        f"strategy {settings.strategy.plugin}, cache store {cache_store}",
    ]
    rule = "=" * BANNER_COLUMNS
    lines = [line for fact in facts for line in textwrap.wrap(fact, BANNER_COLUMNS, break_on_hyphens=False)]
    return "\n".join([rule, *lines, rule])


def _start_server(config: ServerConfig, board: StatusBoard) -> StatusServer | None:
    """The status server, its address printed (with where its token comes from); None when disabled."""
    if not config.enabled:
        return None
    from crypto_bot import redaction
    from crypto_bot.status.prometheus import build_registry
    from crypto_bot.status.server import StatusServer

    token = os.environ.get(config.token_variable) or None
    if token is not None:
        redaction.register_secret(token)
    try:
        server = StatusServer(board, build_registry(board), address=config.address, port=config.port, token=token)
    except OSError as error:
        raise CommandError(
            EXIT_ENVIRONMENT,
            f"the status server cannot listen on {config.address} port {config.port} ({error.strerror or error}): "
            "stop what listens there or set server.port (or server.address) to a free one",
        ) from error
    guarded = f" (API, /health and /metrics need the bearer token in ${config.token_variable})" if token else ""
    print(f"status page: {server.url}{guarded}", flush=True)
    logger.info("status page on %s; /api/status, /health and /metrics beside it", server.url)
    return server


def _print_summary(summary: dict[str, Any]) -> None:
    memory = summary["memory"]
    run = summary["run"]
    lines = [
        "",
        "Summary",
        f"  this run        {run['cycles']} cycles, {run['trades']} trades closed, realized PnL {run['realized_pnl']:.2f}",
        f"  all time        {summary['trades']} trades closed, realized PnL {summary['realized_pnl']:.2f} (the journal)",
        f"  equity          {summary['equity']:.2f} (starting balance {summary['starting_balance']:.2f})",
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
