"""A restarted bot goes on where the journal left it: the simulated market's clock and price path continue, so
positions' and trades' times only grow, however often the bot restarts; the summary tells this run from all time."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from crypto_bot.execution import TradeJournal
from crypto_bot.market.simulated import DEFAULT_START_MS
from crypto_bot.settings import Settings, parse_settings
from tests.bot.conftest import small_config
from tests.bot.support import Session

RESTARTS = 5
CYCLES_PER_RUN = 12


def run_once(settings: Settings, cycles: int) -> tuple[int, int, dict]:
    """One bot's life on the journal: (its market clock at start, at the end, its summary)."""
    session = Session(settings)
    try:
        started_at_ms = session.bot.market.now_ms
        for _ in range(cycles):
            session.cycle()
        return started_at_ms, session.bot.market.now_ms, session.bot.summary()
    finally:
        session.close()


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory, trained_model_path: Path) -> tuple[Settings, list[tuple]]:
    """The small config's bot run RESTARTS times on one journal (once for the module: the runs are the slow part)."""
    settings = parse_settings(small_config(tmp_path_factory.mktemp("resume") / "journal.sqlite", trained_model_path))
    return settings, [run_once(settings, CYCLES_PER_RUN) for _ in range(RESTARTS)]


@pytest.fixture
def restarted_runs(restarted: tuple[Settings, list[tuple]]) -> list[tuple[int, int, dict]]:
    return restarted[1]


@pytest.fixture
def resumed_settings(restarted: tuple[Settings, list[tuple]]) -> Settings:
    return restarted[0]


def journal_times(settings: Settings) -> tuple[list[tuple[int, int]], list[int]]:
    """(opened_at, closed_at) of every trade in closing order, and the opened_at of every open position."""
    journal = TradeJournal(Path(settings.storage.journal_path), read_only=True)
    try:
        trades = [(trade.opened_at_ms, trade.closed_at_ms) for trade in journal.trades()]
        positions = [position.opened_at_ms for position in journal.open_positions()]
    finally:
        journal.close()
    return trades, positions


def test_each_restart_starts_the_market_where_the_last_run_left_it(restarted_runs: list[tuple[int, int, dict]]) -> None:
    assert restarted_runs[0][0] == DEFAULT_START_MS
    for (_, ended_at_ms, _), (started_at_ms, _, _) in zip(restarted_runs, restarted_runs[1:]):
        assert started_at_ms == ended_at_ms


def test_trades_close_no_earlier_than_they_opened_across_restarts(
    restarted_runs: list[tuple[int, int, dict]], resumed_settings: Settings
) -> None:
    trades, positions = journal_times(resumed_settings)
    assert trades, "the runs closed no trade: the test would prove nothing"
    assert all(opened_at <= closed_at for opened_at, closed_at in trades)
    closing_times = [closed_at for _, closed_at in trades]
    assert closing_times == sorted(closing_times)
    last_clock_ms = restarted_runs[-1][1]
    assert all(opened_at < last_clock_ms for opened_at in positions)


def test_positions_open_within_the_run_that_opened_them(
    restarted_runs: list[tuple[int, int, dict]], resumed_settings: Settings
) -> None:
    trades, positions = journal_times(resumed_settings)
    opening_times = [opened_at for opened_at, _ in trades] + positions
    windows = [(started_at, ended_at) for started_at, ended_at, _ in restarted_runs]
    assert all(any(started <= opened_at < ended for started, ended in windows) for opened_at in opening_times)


def test_the_summary_tells_this_run_from_all_time(restarted_runs: list[tuple[int, int, dict]]) -> None:
    runs = [summary["run"] for _, _, summary in restarted_runs]
    assert all(run["cycles"] == CYCLES_PER_RUN for run in runs)
    final = restarted_runs[-1][2]
    assert sum(run["trades"] for run in runs) == final["trades"]
    assert sum(run["realized_pnl"] for run in runs) == pytest.approx(final["realized_pnl"], abs=0.05)
    assert final["run"]["trades"] < final["trades"]


def test_a_journal_without_a_recorded_clock_resumes_after_its_latest_position(
    start: Callable[..., Session], bot_settings: Settings
) -> None:
    first = start(bot_settings)
    first.until_a_position_opens()
    opened_at_ms = max(position.opened_at_ms for position in first.bot.broker.positions.values())
    first.close()
    with closing(sqlite3.connect(bot_settings.storage.journal_path)) as connection, connection:
        connection.execute("DELETE FROM meta WHERE key = 'market_clock_ms'")  # as a journal written before it was
    assert start(bot_settings).bot.market.now_ms >= opened_at_ms
