"""The `crypto-bot` command: config check and run (as a real subprocess, SIGTERM included); `status` and
`memory stats` against a running bot are in test_operator_cli.py."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from crypto_bot import cli
from crypto_bot.cli import EXIT_USAGE, main
from tests.bot.conftest import REPOSITORY_CONFIG, SUBPROCESS_TIMEOUT_SECONDS, crypto_bot, running_bot



def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "candidate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------- config check


def test_config_check_accepts_the_repository_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(REPOSITORY_CONFIG)]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("colour: red\n", ["colour", "allowed", "strategy"]),
        ("strategy:\n  batch: 3\n", ["strategy.batch", "did you mean strategy.batch_size?"]),
        ("strategy:\n  batch_size: 0\n", ["strategy.batch_size", "[1, 1000]"]),
        ("memory_threshold: 1.5\n", ["memory_threshold", "(0, 1]"]),
        ("strategy:\n  batch_size: many\n", ["strategy.batch_size", "an integer"]),
        ("memory_threshold: high\n", ["memory_threshold", "a number"]),
        ("server:\n  enabled: yes please\n", ["server.enabled", "true or false"]),
        ("risk:\n  max_open_positions: 0\n", ["max_open_positions", "[1, 1000]"]),
        ("market:\n  source: binance\n", ["market.source", "simulated, csv, ccxt"]),
        ("timeframes: [1m, 7m]\n", ["timeframes", "1m, 5m, 15m, 1h, 4h, 1d"]),
        ("strategy: [oops\n", ["not valid YAML"]),
    ],
    ids=[
        "unknown-key",
        "unknown-section-key",
        "out-of-range",
        "memory-out-of-range",
        "wrong-type",
        "memory-wrong-type",
        "flag-wrong-type",
        "risk-out-of-range",
        "bad-choice",
        "bad-timeframe",
        "bad-yaml",
    ],
)
def test_config_check_rejects_a_bad_file_naming_the_key_and_allowed_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragments: list[str]
) -> None:
    path = write_yaml(tmp_path, text)
    assert main(["config", "check", str(path)]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    for fragment in fragments:
        assert fragment in captured.err


def test_config_check_prints_every_problem_on_its_own_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "paper:\n  fee_rate: 0.1\n"
        "strategy:\n  min_score: 0.4\n  history_candles: 6000\n"
        f"market:\n  source: csv\n  csv_directory: {tmp_path / 'absent'}\n"
    )
    assert main(["config", "check", str(write_yaml(tmp_path, text))]) == EXIT_USAGE
    lines = capsys.readouterr().err.splitlines()
    prefix = f"crypto-bot: config error in {tmp_path / 'candidate.yaml'}: "
    assert all(line.startswith(prefix) for line in lines)
    assert [line.removeprefix(prefix).split("=")[0] for line in lines] == [
        "invalid strategy.history_candles",
        "invalid strategy.min_score",
        "invalid paper.fee_rate",
        "invalid market.csv_directory",
    ]


def test_config_keys_lists_every_key_of_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    from crypto_bot.settings import describe_keys

    assert main(["config", "keys"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert listed == [key for key, *_ in describe_keys()]
    assert {"memory_threshold", "symbols", "strategy.min_score", "paper.fee_rate", "server.port", "notify.events"} <= set(listed)


def test_config_check_of_a_missing_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(tmp_path / "absent.yaml")]) != 0
    assert "cannot read config file" in capsys.readouterr().err


def test_a_bad_file_fails_the_command_with_a_non_zero_exit(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "strategy:\n  batch_size: 0\n")
    process = crypto_bot("config", "check", str(path), cwd=tmp_path, stderr=subprocess.PIPE)
    _, err = process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert process.returncode == EXIT_USAGE and "strategy.batch_size" in err


# ------------------------------------------------------------------------- run


def test_run_trades_for_the_given_cycles_and_prints_a_summary(tmp_path: Path, config_file: Callable[..., Path]) -> None:
    config = config_file()
    process = crypto_bot(
        "run", "--config", str(config), "--cycles", "3", "--interval", "0",
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert process.returncode == 0, err
    assert "PAPER TRADING" in out.splitlines()[1]
    status_lines = [line for line in out.splitlines() if "| cycle " in line]
    assert [line.split("|")[1].split() for line in status_lines] == [["cycle", "1"], ["cycle", "2"], ["cycle", "3"]]
    assert "Summary" in out and "this run        3 cycles" in out and "df_cache" in out


def test_run_stops_cleanly_on_sigterm(tmp_path: Path, config_file: Callable[..., Path]) -> None:
    config = config_file()
    journal = tmp_path / "journal.sqlite"
    with open(tmp_path / "stderr.log", "w", encoding="utf-8") as stderr, running_bot(
        config, "--interval", "0", cwd=tmp_path, stderr=stderr
    ) as process:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert process.returncode == 0, (tmp_path / "stderr.log").read_text()
    assert "Summary" in rest
    open_positions = int(next(line for line in rest.splitlines() if "open positions" in line).split()[-1])
    connection = sqlite3.connect(journal)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT COUNT(*) FROM positions").fetchone() == (open_positions,)
    finally:
        connection.close()


def test_sigusr1_writes_a_memory_report_beside_the_journal(tmp_path: Path, config_file: Callable[..., Path]) -> None:
    config = config_file()
    with open(tmp_path / "stderr.log", "w", encoding="utf-8") as stderr, running_bot(
        config, "--interval", "0.2", cwd=tmp_path, stderr=stderr
    ) as process:
        process.send_signal(signal.SIGUSR1)  # to the supervisor, which passes it on to the bot
        for line in process.stdout:  # the report is written between cycles; two more lines are enough
            if "| cycle " in line and list(tmp_path.glob("memory-report-*.json")):
                break
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert process.returncode == 0, (tmp_path / "stderr.log").read_text()
    (report,) = tmp_path.glob("memory-report-*.json")
    assert {"reading", "caches"} <= set(json.loads(report.read_text()))
    assert f"memory report written to {report}" in (tmp_path / "stderr.log").read_text()


def test_run_with_a_bad_config_exits_non_zero(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = write_yaml(tmp_path, "colour: red\n")
    assert main(["run", "--config", str(path), "--cycles", "1"]) == EXIT_USAGE  # the supervised child says why
    assert "colour" in capfd.readouterr().err


@pytest.mark.parametrize(
    ("option", "refusal"),
    [
        (["--cycles", "0"], "an integer >= 1, got 0"),
        (["--cycles", "-3"], "an integer >= 1, got -3"),
        (["--cycles", "many"], "an integer >= 1, got 'many'"),
        (["--interval", "-1"], "a finite number in [0, 31536000], got -1.0"),
        (["--interval", "inf"], "a finite number in [0, 31536000], got inf"),
        (["--interval=-inf"], "a finite number in [0, 31536000], got -inf"),
        (["--interval", "nan"], "a finite number in [0, 31536000], got nan"),
        (["--interval", "1e300"], "a finite number in [0, 31536000], got 1e+300"),
        (["--interval", "soon"], "a number, got 'soon'"),
    ],
    ids=["cycles-zero", "cycles-negative", "cycles-text", "interval-negative", "interval-inf", "interval-minus-inf",
         "interval-nan", "interval-beyond-a-year", "interval-text"],
)
def test_run_refuses_bad_numbers_in_one_line_with_the_usage_exit_code(
    option: list[str], refusal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", *option])
    assert exit_info.value.code == EXIT_USAGE
    (line,) = capsys.readouterr().err.splitlines()
    name = option[0].split("=")[0]
    assert line.startswith(f"crypto-bot run: error: argument {name}: ") and refusal in line


@pytest.mark.parametrize(("cycles", "pauses"), [(1, []), (3, [3600.0, 3600.0])], ids=["one-cycle", "three-cycles"])
def test_run_pauses_between_cycles_and_not_after_the_last(
    cycles: int,
    pauses: list[float],
    config_file: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recorded: list[float] = []

    async def pause(stop: object, seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(cli, "pause_between_cycles", pause)
    assert main(["run", "--no-supervisor", "--config", str(config_file()), "--cycles", str(cycles), "--interval", "3600"]) == 0
    assert recorded == pauses
    assert f"this run        {cycles} cycles" in capsys.readouterr().out
