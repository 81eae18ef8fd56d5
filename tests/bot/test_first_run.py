"""What `crypto-bot run` tells a person: the banner once in 80 columns, status lines with the time, a summary
that tells this run from the journal's all-time figures."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from crypto_bot.cli import BANNER_COLUMNS, banner, main
from crypto_bot.settings import parse_settings
from crypto_bot.supervisor import CYCLES_DONE_VARIABLE

RUN = ["run", "--no-supervisor", "--cycles", "2", "--interval", "0"]


def test_the_banner_fits_80_columns_even_with_long_names(config_dict: Callable[..., dict]) -> None:
    settings = parse_settings(
        config_dict(storage={"journal_path": "/var/lib/" + "very-long-folder-name/" * 6 + "journal.sqlite"})
    )
    text = banner(settings, "c")
    assert "PAPER TRADING" in text
    assert max(len(line) for line in text.splitlines()) <= BANNER_COLUMNS


def test_a_run_prints_the_banner_once(config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*RUN, "--config", str(config_file())]) == 0
    assert capsys.readouterr().out.count("PAPER TRADING") == 1


def test_a_recycled_child_prints_no_banner(
    config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CYCLES_DONE_VARIABLE, "3")  # as the supervisor starts a successor
    assert main(["run", "--no-supervisor", "--cycles", "4", "--interval", "0", "--config", str(config_file())]) == 0
    output = capsys.readouterr().out
    assert "PAPER TRADING" not in output
    assert re.search(r"\| cycle +4 \|", output)


def test_status_lines_start_with_the_time(config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*RUN, "--config", str(config_file())]) == 0
    status_lines = [line for line in capsys.readouterr().out.splitlines() if "| cycle " in line]
    assert len(status_lines) == 2
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \| cycle ", line) for line in status_lines)


def test_the_summary_tells_this_run_from_all_time(
    config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file()
    for _ in range(3):
        assert main(["run", "--no-supervisor", "--cycles", "15", "--interval", "0", "--config", str(config)]) == 0
    output = capsys.readouterr().out
    runs = [int(count) for count in re.findall(r"this run +15 cycles, (\d+) trades closed", output)]
    all_time = [int(count) for count in re.findall(r"all time +(\d+) trades closed", output)]
    assert len(runs) == len(all_time) == 3
    assert all_time == [sum(runs[: index + 1]) for index in range(3)]
    assert all_time[-1] > 0, "no trade closed: the test would prove nothing"
