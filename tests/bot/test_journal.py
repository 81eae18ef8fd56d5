"""TradeJournal on a real SQLite file: schema, transactions, resume, errors, threads and SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from crypto_bot.execution import (
    SCHEMA_VERSION,
    ForeignJournalError,
    JournalError,
    JournalLockedError,
    Position,
    Trade,
    TradeJournal,
)
from crypto_bot.execution.journal import APPLICATION_ID

REPO_ROOT = Path(__file__).resolve().parents[2]


def position(position_id: str = "p1", symbol: str = "BTC/USDT") -> Position:
    return Position(
        id=position_id,
        symbol=symbol,
        side="long",
        quantity=0.5,
        entry_price=100.05,
        opened_at_ms=1_700_000_000_000,
        stop_price=96.0,
        take_profit_price=None,
        trailing_stop_ratio=0.02,
        highest_price=100.05,
        lowest_price=100.05,
        fees_paid=0.050025,
    )


def trade_for(held: Position, exit_price: float = 104.0) -> Trade:
    return Trade(
        position_id=held.id,
        symbol=held.symbol,
        side=held.side,
        quantity=held.quantity,
        entry_price=held.entry_price,
        exit_price=exit_price,
        opened_at_ms=held.opened_at_ms,
        closed_at_ms=held.opened_at_ms + 3_600_000,
        pnl=held.unrealized_pnl(exit_price) - 0.1,
        fees=0.1,
        exit_reason="take_profit",
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


@pytest.fixture
def journal(path: Path) -> Iterator[TradeJournal]:
    journal = TradeJournal(path)
    journal.ensure_account(1_000.0)
    yield journal
    journal.close()


def reopen(path: Path) -> TradeJournal:
    """A second, independent reader of the same file, as status and reports open it while the bot runs."""
    return TradeJournal(path, read_only=True)


def test_schema_is_created_on_first_open(path: Path, journal: TradeJournal) -> None:
    with sqlite3.connect(path) as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert {"meta", "account", "positions", "trades"} <= tables
    assert version == str(SCHEMA_VERSION)


def test_file_is_in_wal_mode(path: Path, journal: TradeJournal) -> None:
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cash_is_unknown_before_the_account_exists(tmp_path: Path) -> None:
    fresh = TradeJournal(tmp_path / "fresh.sqlite")
    try:
        assert fresh.cash() is None
    finally:
        fresh.close()


def test_ensure_account_keeps_existing_cash(journal: TradeJournal) -> None:
    journal.record_open(position(), cash_after=900.0)
    assert journal.ensure_account(5_000.0) == 900.0


def test_open_position_round_trips_every_field(path: Path, journal: TradeJournal) -> None:
    journal.record_open(position(), cash_after=949.95)
    reopened = reopen(path)
    try:
        assert reopened.open_positions() == [position()]
        assert reopened.cash() == 949.95
    finally:
        reopened.close()


def test_close_moves_the_position_to_trades_and_sets_cash(path: Path, journal: TradeJournal) -> None:
    held = position()
    journal.record_open(held, cash_after=949.95)
    journal.record_close(held, trade_for(held), cash_after=1_001.85)
    reopened = reopen(path)
    try:
        assert reopened.open_positions() == []
        assert reopened.trades() == [trade_for(held)]
        assert reopened.cash() == 1_001.85
        assert reopened.trade_totals() == (1, trade_for(held).pnl)
    finally:
        reopened.close()


def test_closing_a_position_that_is_not_open_changes_nothing(journal: TradeJournal) -> None:
    held = position()
    with pytest.raises(JournalError, match="not open"):
        journal.record_close(held, trade_for(held), cash_after=5.0)
    assert journal.trades() == []
    assert journal.cash() == 1_000.0


def test_opening_the_same_position_twice_changes_nothing(journal: TradeJournal) -> None:
    journal.record_open(position(), cash_after=900.0)
    with pytest.raises(sqlite3.IntegrityError):
        journal.record_open(position(), cash_after=800.0)
    assert journal.cash() == 900.0
    assert len(journal.open_positions()) == 1


def test_update_persists_the_trailing_anchor(path: Path, journal: TradeJournal) -> None:
    held = position()
    journal.record_open(held, cash_after=900.0)
    held.highest_price = 111.0
    journal.record_update(held)
    reopened = reopen(path)
    try:
        assert reopened.open_positions()[0].highest_price == 111.0
    finally:
        reopened.close()


def test_trades_limit_returns_the_most_recent_in_closing_order(journal: TradeJournal) -> None:
    for number in range(5):
        held = position(f"p{number}")
        journal.record_open(held, cash_after=900.0)
        journal.record_close(held, trade_for(held), cash_after=1_000.0)
    assert [trade.position_id for trade in journal.trades(limit=2)] == ["p3", "p4"]
    assert len(journal.trades()) == 5


def test_parent_directory_is_created(tmp_path: Path) -> None:
    nested = TradeJournal(tmp_path / "a" / "b" / "journal.sqlite")
    try:
        assert (tmp_path / "a" / "b" / "journal.sqlite").exists()
    finally:
        nested.close()


def test_unopenable_path_error_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file where a directory should be")
    target = blocker / "journal.sqlite"
    with pytest.raises(JournalError, match=str(target)):
        TradeJournal(target)


def test_corrupt_file_error_names_the_path(path: Path) -> None:
    path.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(JournalError, match=str(path)):
        TradeJournal(path)


def test_unknown_schema_version_is_refused(path: Path, journal: TradeJournal) -> None:
    journal.close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(JournalError, match="schema version 999"):
        TradeJournal(path)


def test_close_is_idempotent_and_later_use_is_an_error(journal: TradeJournal) -> None:
    journal.close()
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.cash()


def test_concurrent_writers_from_threads_all_commit(journal: TradeJournal) -> None:
    def open_many(thread_number: int) -> None:
        for number in range(25):
            journal.record_open(position(f"t{thread_number}-{number}"), cash_after=500.0)

    threads = [threading.Thread(target=open_many, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(journal.open_positions()) == 100


TRADER_SCRIPT = textwrap.dedent(
    """
    import sys

    from crypto_bot.execution import PaperBroker, TradeJournal
    from crypto_bot.execution.broker import PaperConfig
    from crypto_bot.strategy import Signal

    config = PaperConfig(starting_balance=1e9, fee_rate=0.001, slippage_bps=5.0)
    broker = PaperBroker(TradeJournal(sys.argv[1]), config)
    number = 0
    while True:
        price = 100.0 + number % 13
        signal = Signal(f"SYM{number % 7}", "long", 0.8, price, 1.0)
        opened = broker.open_position(signal, 1.0 + number % 3, stop_price=50.0)
        print("opened", opened.id, flush=True)
        if number % 4 != 3:
            broker.close_position(opened.id, price * 1.01, "test")
            print("closed", opened.id, flush=True)
        number += 1
    """
)


def test_sigkill_mid_loop_loses_no_committed_trade(tmp_path: Path, path: Path) -> None:
    script = tmp_path / "trader.py"
    script.write_text(TRADER_SCRIPT)
    stderr_path = tmp_path / "trader.stderr"
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with stderr_path.open("w") as stderr:
        trader = subprocess.Popen(
            [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, stderr=stderr, text=True, env=environment
        )
        reported: list[tuple[str, str]] = []
        try:
            while sum(1 for event, _ in reported if event == "closed") < 60:
                line = trader.stdout.readline()
                if not line:
                    break
                event, position_id = line.split()
                reported.append((event, position_id))
            os.kill(trader.pid, signal.SIGKILL)
            trader.wait()
            # lines printed before the kill but not read yet were committed too
            reported.extend(tuple(line.split()) for line in trader.stdout.read().splitlines() if line.count(" ") == 1)
        finally:
            if trader.poll() is None:
                trader.kill()
                trader.wait()
            trader.stdout.close()
    assert trader.returncode == -signal.SIGKILL, stderr_path.read_text()

    journal = TradeJournal(path)
    try:
        traded = {trade.position_id: trade for trade in journal.trades()}
        still_open = {held.id: held for held in journal.open_positions()}
        cash = journal.cash()
    finally:
        journal.close()
    assert {position_id for event, position_id in reported if event == "closed"} <= set(traded)
    assert {position_id for event, position_id in reported if event == "opened"} <= set(traded) | set(still_open)
    # cash and rows were written in one transaction each, so they agree exactly
    committed_cost = sum(held.quantity * held.entry_price + held.fees_paid for held in still_open.values())
    assert cash == pytest.approx(1e9 + sum(trade.pnl for trade in traded.values()) - committed_cost, abs=1e-3)


# ------------------------------------------------------------------ one writer, our own file


HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from crypto_bot.execution import TradeJournal
    journal = TradeJournal(sys.argv[1])
    print("holding", flush=True)
    time.sleep(600)
    """
)


def test_a_second_writer_is_refused_naming_the_journal_and_the_holder(path: Path, journal: TradeJournal) -> None:
    with pytest.raises(JournalLockedError, match=rf"{path}.*pid {os.getpid()}"):
        TradeJournal(path)


def test_the_lock_is_released_on_close(path: Path, journal: TradeJournal) -> None:
    journal.close()
    TradeJournal(path).close()


def test_a_killed_writer_releases_the_journal(tmp_path: Path, path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(JournalLockedError, match=f"pid {holder.pid}"):
            TradeJournal(path)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    TradeJournal(path).close()


def test_readers_open_while_the_writer_holds_the_journal(path: Path, journal: TradeJournal) -> None:
    journal.record_open(position(), cash_after=900.0)
    reader = TradeJournal(path, read_only=True)
    try:
        assert [held.id for held in reader.open_positions()] == ["p1"]
        assert reader.cash() == 900.0
        with pytest.raises(JournalError):
            reader.record_open(position("p2"), cash_after=800.0)
    finally:
        reader.close()


def test_our_journal_is_marked_with_application_id_and_schema_version(path: Path, journal: TradeJournal) -> None:
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_foreign_sqlite_file_is_refused_and_left_byte_for_byte_unchanged(path: Path) -> None:
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE notes (body TEXT)")
        raw.execute("INSERT INTO notes VALUES ('mine')")
    raw.close()
    before = path.read_bytes()
    with pytest.raises(ForeignJournalError, match=rf"{path} is not a crypto_bot trade journal.*notes"):
        TradeJournal(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_file_of_another_application_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA application_id = 42")
        raw.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    raw.close()
    with pytest.raises(ForeignJournalError, match="application_id 42"):
        TradeJournal(path)


def test_a_version_1_journal_is_backed_up_then_migrated(path: Path) -> None:
    with sqlite3.connect(path) as raw:
        raw.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE account (id INTEGER PRIMARY KEY CHECK (id = 1), cash REAL NOT NULL);
            INSERT INTO meta VALUES ('schema_version', '1');
            INSERT INTO account VALUES (1, 1234.5);
            """
        )
    before = list(raw.iterdump())
    raw.close()
    migrated = TradeJournal(path)
    try:
        assert migrated.cash() == 1234.5
    finally:
        migrated.close()
    with closing(sqlite3.connect(path.with_name(path.name + ".v1.bak"))) as backup:
        assert list(backup.iterdump()) == before
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    raw.close()
