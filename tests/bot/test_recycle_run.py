"""A real `crypto-bot run` with a strategy that leaks: recycled at a cycle's end, resumed from the journal.

The plugin (tests/plugins/leaking_trader.py) trades as the built-in strategy does and keeps 12 MiB a
cycle for good. Under a 512 MiB process limit the bot starts well below PRESSURE and reaches it
within a few dozen cycles; its tiers cannot win that memory back, so the recycle policy hands
over. The cgroup proof at 256 MiB is tests/proof/test_recycle.py.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

from crypto_bot.supervisor import RECYCLE_EXIT_CODE
from tests.bot.conftest import SUBPROCESS_TIMEOUT_SECONDS, crypto_bot, running_bot

CYCLES = 40
LEAKING = {
    "process_memory_limit_mb": 512,
    "strategy": {"plugin": "tests.plugins.leaking_trader:LeakingTrader", "params": {"leak_mib_per_cycle": 12}},
}
SUPERVISOR_RECYCLE = "crypto_bot.supervisor: recycling the bot process"
OPENED = re.compile(r"opened (long|short) (\S+) \S+ @ (\S+) \(fee")
CLOSED = re.compile(r"closed (long|short) (\S+) @ (\S+) \(")
RESUMED = re.compile(r"resumed paper account from .*: cash \S+, (\d+) open positions")


def run(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`crypto-bot run` to its end, stdout and stderr in one stream (their order kept)."""
    process = crypto_bot(
        "run", "--config", str(config), "--cycles", str(CYCLES), "--interval", "0", *options,
        cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    output, _ = process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    return subprocess.CompletedProcess(process.args, process.returncode, output)


def journal_fills(journal: Path) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(side, symbol, entry price) of every position ever opened and (side, symbol, exit price) of every close,
    prices as the broker logs them."""
    connection = sqlite3.connect(journal)
    try:
        still_open = connection.execute("SELECT side, symbol, entry_price FROM positions").fetchall()
        trades = connection.execute("SELECT side, symbol, entry_price, exit_price FROM trades").fetchall()
    finally:
        connection.close()
    opened = {(side, symbol, f"{entry:.8g}") for side, symbol, entry, *_ in [*still_open, *trades]}
    closed = {(side, symbol, f"{exit_price:.8g}") for side, symbol, _, exit_price in trades}
    return opened, closed


def cycles_reported(lines: list[str]) -> list[int]:
    """The cycle numbers of the status lines among `lines` (`... UTC | cycle    12 | equity ...`), in order."""
    return [int(line.split("| cycle ")[1].split("|")[0]) for line in lines if "| cycle " in line]


def last_open_count(lines: list[str]) -> int:
    """Open positions in the last status line of `lines`."""
    status = [line for line in lines if "| cycle " in line][-1]
    return int(status.split("| open ")[1].split()[0])


def test_a_leaking_bot_is_recycled_and_the_next_process_resumes_its_positions_and_counts_on(
    config_file: Callable[..., Path],
) -> None:
    config = config_file(**LEAKING)
    completed = run(config)
    lines = completed.stdout.splitlines()

    assert completed.returncode == 0, completed.stdout[-3000:]
    recycles = [index for index, line in enumerate(lines) if SUPERVISOR_RECYCLE in line]
    assert recycles, completed.stdout[-3000:]
    assert "(1 so far): still at PRESSURE after the tiers ran" in lines[recycles[0]]
    # One count across the processes: every cycle once, in order, and --cycles honoured in total.
    assert cycles_reported(lines) == list(range(1, CYCLES + 1))
    for recycle in recycles:
        [resumed] = [int(m.group(1)) for line in lines[recycle:] if (m := RESUMED.search(line))][:1]
        assert resumed == last_open_count(lines[:recycle])
    opened, closed = journal_fills(config.parent / "journal.sqlite")
    printed_opens = {m.groups() for line in lines if (m := OPENED.search(line))}
    printed_closes = {m.groups() for line in lines if (m := CLOSED.search(line))}
    assert printed_opens and printed_opens <= opened
    assert printed_closes <= closed


def test_without_a_supervisor_a_due_recycle_ends_the_bot_with_code_75_for_the_service_manager(
    config_file: Callable[..., Path],
) -> None:
    config = config_file(**LEAKING)
    completed = run(config, "--no-supervisor")
    lines = completed.stdout.splitlines()

    assert completed.returncode == RECYCLE_EXIT_CODE, completed.stdout[-3000:]
    assert any("recycling the bot process after cycle" in line for line in lines)
    assert any("exiting with code 75 for the service manager" in line for line in lines)
    assert not any(SUPERVISOR_RECYCLE in line for line in lines)
    assert "Summary" in lines


def children(pid: int) -> list[int]:
    """The running children of process `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def mapped_packages(pid: int, names: tuple[str, ...]) -> set[str]:
    """Which of the packages `names` have a file mapped in process `pid` (their compiled modules)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in names if f"/site-packages/{name}/" in maps}


def test_the_supervisor_maps_neither_numpy_nor_pandas_and_starts_the_child_on_the_allocator(
    config_file: Callable[..., Path],
) -> None:
    config = config_file()
    with running_bot(config, "--interval", "0.2", cwd=config.parent, stderr=subprocess.DEVNULL) as process:
        [child] = children(process.pid)
        heavy = ("pandas", "numpy")  # the bot no longer depends on scikit-learn at all
        supervisor_maps, child_maps = mapped_packages(process.pid, heavy), mapped_packages(child, heavy)
        child_environment = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert process.returncode == 0
    assert child_maps == set(heavy)  # the check sees them where they are
    assert supervisor_maps == set()
    assert b"MALLOC_ARENA_MAX=2" in child_environment  # allocator.name auto: glibc with two arenas
