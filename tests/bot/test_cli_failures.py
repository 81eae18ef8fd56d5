"""Every failure of `crypto-bot` is one line on stderr naming what failed, with its documented exit code.

2: usage or configuration; 3: the runtime environment (journal, port, file); 1: unexpected (a bug).
`--debug` adds the traceback. Cases run through the real command: `cli.main` in this process (its
stderr is exactly what the command prints; log records go to pytest's handler) or a real process.
"""

from __future__ import annotations

import errno
import signal
import socket
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crypto_bot.cli import EXIT_ENVIRONMENT, EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, main
from crypto_bot.execution import TradeJournal
from crypto_bot.market import csv_file_name
from tests.bot.conftest import SUBPROCESS_TIMEOUT_SECONDS, crypto_bot, running_bot

START_MS = 1_704_067_200_000
MINUTE_MS = 60_000


def one_line(text: str) -> str:
    """The only line of `text`; fails when there are more or none."""
    lines = text.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `crypto-bot ARGS` as a real process to its end."""
    process = crypto_bot(*args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def parent_pid(pid: int) -> int | None:
    """The parent of a running process (None when it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def write_candles(directory: Path, rows: int, *, bad_row: int | None = None, header: bytes = b"") -> Path:
    """A 1m BTC/USDT file of `rows` valid candles; `bad_row` (0-based) gets a negative volume."""
    directory.mkdir(exist_ok=True)
    lines = []
    for index in range(rows):
        close = 100 + index % 50
        volume = -1 if index == bad_row else 10
        lines.append(f"{START_MS + index * MINUTE_MS},{close},{close + 1},{close - 1},{close},{volume}\n")
    path = directory / csv_file_name("BTC/USDT", "1m")
    path.write_bytes(header + "".join(lines).encode())
    return path


@pytest.fixture
def csv_config(config_file: Callable[..., Path], tmp_path: Path) -> Callable[[], Path]:
    """`csv_config()`: the small config replaying tmp_path/candles (write the files first)."""

    def write() -> Path:
        market = {"source": "csv", "csv_directory": str(tmp_path / "candles")}
        return config_file(market=market, timeframes=["1m"], symbols=["BTC/USDT"])

    return write


# ------------------------------------------------------------------- configuration: exit 2


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("paper:\n  note: caf\xe9\n".encode("latin-1"), "is not UTF-8 text (line 2 has byte 0xe9)"),
        (b"\x00\x01\x02binary", "is binary, not YAML text"),
        (b"symbols: [BTC/USDT]\nmemory: {1: 2}\n", "line 2: key 1 must be a string"),
        (b"paper:\n  fee_rate: 0.001\npaper:\n  starting_balance: 1\n", "duplicate key 'paper' on lines 1 and 3"),
        (b"strategy: [oops\n", "not valid YAML at line 2"),
    ],
    ids=["not-utf8", "binary", "non-string-key", "duplicate-key", "bad-yaml"],
)
@pytest.mark.parametrize("verb", [["config", "check"], ["run", "--config"]], ids=["check", "run"])
def test_an_unreadable_config_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, named: str, verb: list[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    assert main([*verb, str(path)]) == EXIT_USAGE
    captured = capsys.readouterr()
    line = one_line(captured.err)
    assert line.startswith(f"crypto-bot: config file {path}") and named in line
    assert captured.out == ""


def test_a_missing_config_is_one_line_saying_what_to_give(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent.yaml"
    assert main(["run", "--config", str(path)]) == EXIT_USAGE
    line = one_line(capsys.readouterr().err)
    assert f"cannot read config file {path}: No such file or directory" in line and "YAML config" in line


def test_a_config_problem_is_one_line_naming_the_file_and_the_key(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("paper:\n  fee_rate: 0.5\n", encoding="utf-8")
    assert main(["run", "--config", str(path)]) == EXIT_USAGE  # said by the supervised child, on the same stderr
    assert one_line(capfd.readouterr().err) == (
        f"crypto-bot: config error in {path}: invalid paper.fee_rate=0.5: allowed a number in [0, 0.1)"
    )


def test_a_bad_config_in_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"memory: {1: 2}\n")
    result = command("config", "check", str(path), cwd=tmp_path)
    assert result.returncode == EXIT_USAGE
    assert "key 1 must be a string" in one_line(result.stderr) and "Traceback" not in result.stderr


@pytest.mark.parametrize("verb", [["config", "check"], ["run", "--config"]], ids=["check", "run"])
def test_a_cache_budget_below_the_working_set_is_one_line_naming_both_figures(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], verb: list[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("cache_size_limit_mb: 0.000001\n", encoding="utf-8")
    assert main([*verb, str(path)]) == EXIT_USAGE
    line = one_line(capfd.readouterr().err)
    assert line.startswith(f"crypto-bot: config error in {path}: cache_size_limit_mb=1e-06 (1 B) cannot hold the working set: ")
    assert "6 symbols per cycle x 3 timeframes x 300 candles x " in line and "MiB; allowed >= " in line


@pytest.mark.parametrize("position", ["before", "after"], ids=["before-the-command", "after-the-command"])
def test_debug_adds_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str], position: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xff\xfe")
    args = ["--debug", "config", "check", str(path)] if position == "before" else ["config", "check", str(path), "--debug"]
    assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "UnicodeDecodeError" in err
    assert err.splitlines()[-1].startswith(f"crypto-bot: config file {path} is not UTF-8 text")


# -------------------------------------------------------------------- the journal: exit 3


def test_a_second_bot_on_a_running_bots_journal_exits_naming_the_journal_and_its_pid(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    config = config_file()
    journal = tmp_path / "journal.sqlite"
    # The first bot holds the journal once it reports a cycle.
    with open(tmp_path / "first.err", "w", encoding="utf-8") as first_err, running_bot(
        config, "--interval", "0.2", cwd=tmp_path, stderr=first_err
    ) as first:
        second = command("run", "--config", str(config), "--cycles", "1", "--interval", "0", cwd=tmp_path)
        holder = int(second.stderr.partition("(pid ")[2].partition(")")[0] or 0)
        holder_parent = parent_pid(holder)  # read while the first bot runs
        status = command("status", "--journal", "--config", str(config), cwd=tmp_path)
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert second.returncode == EXIT_ENVIRONMENT
    assert one_line(second.stderr) == (
        f"crypto-bot: trade journal at {journal} is in use by another bot (pid {holder}); stop that bot or set "
        "storage.journal_path to another file"
    )
    assert holder_parent == first.pid  # the bot is the supervisor's child; stopping either stops both
    assert "PAPER TRADING" not in second.stdout  # refused before the banner: it never started
    assert status.returncode == EXIT_OK and f"trade journal   {journal} (read-only)" in status.stdout
    assert first.returncode == EXIT_OK, (tmp_path / "first.err").read_text()


def test_a_foreign_sqlite_file_named_as_the_journal_is_refused_and_left_unchanged(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    journal = tmp_path / "journal.sqlite"
    with sqlite3.connect(journal) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
        connection.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    connection.close()
    before = journal.read_bytes()
    result = command("run", "--config", str(config_file()), "--cycles", "1", "--interval", "0", cwd=tmp_path)
    assert result.returncode == EXIT_ENVIRONMENT
    line = one_line(result.stderr)
    assert f"{journal} is not a crypto_bot trade journal" in line and "set storage.journal_path" in line
    assert journal.read_bytes() == before
    assert not (tmp_path / "journal.sqlite.lock").exists()


def test_a_journal_that_cannot_be_opened_is_one_line_naming_it(
    tmp_path: Path, config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "journal.sqlite.lock").mkdir()  # the writer lock cannot be taken on a directory
    assert main(["run", "--no-supervisor", "--config", str(config_file()), "--cycles", "1", "--interval", "0"]) == EXIT_ENVIRONMENT
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"crypto-bot: cannot open trade journal at {tmp_path / 'journal.sqlite'}: ")
    assert "Is a directory" in line and "storage.journal_path" in line


def test_status_without_a_journal_says_to_run_the_bot(
    tmp_path: Path, config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--journal", "--config", str(config_file())]) == EXIT_ENVIRONMENT
    line = one_line(capsys.readouterr().err)
    assert f"trade journal at {tmp_path / 'journal.sqlite'} does not exist" in line and "crypto-bot run" in line
    assert not (tmp_path / "journal.sqlite").exists()


def test_status_reads_the_journal_a_run_left(
    config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(config_file())
    assert main(["run", "--no-supervisor", "--config", config, "--cycles", "2", "--interval", "0"]) == EXIT_OK
    summary = capsys.readouterr().out
    open_positions = next(line for line in summary.splitlines() if "open positions" in line).split()[-1]
    assert main(["status", "--journal", "--config", config]) == EXIT_OK
    status = capsys.readouterr().out
    assert f"open positions  {open_positions}" in status and "closed trades" in status and "cash" in status


# -------------------------------------------------------------- files and ports: exit 3


def test_a_csv_that_is_not_utf8_is_one_line_naming_file_and_line(
    tmp_path: Path, csv_config: Callable[[], Path]
) -> None:
    path = write_candles(tmp_path / "candles", 300, header=b"timestamp,open,high,low,close,volume \xff\n")
    result = command("run", "--config", str(csv_config()), "--cycles", "1", "--interval", "0", cwd=tmp_path)
    assert result.returncode == EXIT_ENVIRONMENT
    assert one_line(result.stderr) == f"crypto-bot: {path}:1: not UTF-8 text (byte 0xff); save the file as UTF-8"


def test_a_bad_row_in_the_replayed_window_is_that_symbols_error_naming_file_and_line(
    tmp_path: Path, csv_config: Callable[[], Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = write_candles(tmp_path / "candles", 300, bad_row=150)
    assert main(["run", "--no-supervisor", "--config", str(csv_config()), "--cycles", "3", "--interval", "0"]) == 0
    assert f"{path}:151: negative volume" in caplog.text  # the run went on; the symbol left the replay


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something else listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_status_server_port_in_use_is_one_line_naming_port_and_address(
    tmp_path: Path, config_file: Callable[..., Path], busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("prometheus_client")
    config = config_file(server={"enabled": True, "port": busy_port, "address": "127.0.0.1"})
    assert main(["run", "--no-supervisor", "--config", str(config), "--cycles", "1", "--interval", "0"]) == EXIT_ENVIRONMENT
    line = one_line(capsys.readouterr().err)
    assert f"cannot listen on 127.0.0.1 port {busy_port} (Address already in use)" in line and "server.port" in line
    TradeJournal(tmp_path / "journal.sqlite").close()  # the failed run closed the journal: its lock is free


def test_a_model_file_that_cannot_be_written_is_one_line_naming_it(
    tmp_path: Path,
    config_file: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_path = tmp_path / "models" / "signal_model.npz"

    def read_only_disk(model: Any, path: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("crypto_bot.strategy.save_model", read_only_disk, raising=False)  # as the built-in calls it
    config = config_file(strategy={"model_path": str(model_path)})  # no model there yet: the bot trains one
    assert main(["run", "--no-supervisor", "--config", str(config), "--cycles", "1", "--interval", "0"]) == EXIT_ENVIRONMENT
    assert one_line(capsys.readouterr().err) == (
        f"crypto-bot: cannot write the signal model to {model_path}: Read-only file system; make its directory "
        "writable or set strategy.model_path"
    )


# ------------------------------------------------------------------- anything else: exit 1


def test_an_unexpected_error_is_one_line_that_says_it_is_a_bug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> list[Any]:
        raise RuntimeError("schema table is empty")

    monkeypatch.setattr("crypto_bot.settings.describe_keys", broken)
    assert main(["config", "keys"]) == EXIT_UNEXPECTED
    line = one_line(capsys.readouterr().err)
    assert "unexpected error RuntimeError: schema table is empty" in line and "--debug" in line and "bug" in line


def test_ctrl_c_stops_a_run_with_exit_0(tmp_path: Path, config_file: Callable[..., Path]) -> None:
    config = config_file()
    with open(tmp_path / "stderr.log", "w", encoding="utf-8") as stderr, running_bot(
        config, "--interval", "0", cwd=tmp_path, stderr=stderr
    ) as process:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert process.returncode == EXIT_OK, (tmp_path / "stderr.log").read_text()
    assert "Summary" in rest and "Traceback" not in (tmp_path / "stderr.log").read_text()
