"""Durable trade journal: open positions, closed trades and cash in one SQLite file.

Covers: the schema, one transaction per state change, and reading the state back so a
restarted broker resumes exactly where the killed one stopped.
Does not cover: trading arithmetic (see `broker`), or analytics over trades.

Durability: WAL journal mode with synchronous=FULL. In WAL mode a COMMIT has handed its pages
to the operating system before it returns, so a process killed with SIGKILL loses no committed
transaction even with synchronous=NORMAL; FULL additionally fsyncs the WAL at every commit, so
committed trades also survive power loss or a kernel crash. A paper bot commits a few times per
candle at most, so the fsync per commit costs nothing that matters.

Thread-safety: one connection (check_same_thread=False) guarded by one lock; every public
method is safe to call from any thread.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crypto_bot.execution.position import Position, Trade

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_POSITION_COLUMNS = (
    "id",
    "symbol",
    "side",
    "quantity",
    "entry_price",
    "opened_at_ms",
    "stop_price",
    "take_profit_price",
    "trailing_stop_ratio",
    "highest_price",
    "lowest_price",
    "fees_paid",
)
_TRADE_COLUMNS = (
    "position_id",
    "symbol",
    "side",
    "quantity",
    "entry_price",
    "exit_price",
    "opened_at_ms",
    "closed_at_ms",
    "pnl",
    "fees",
    "exit_reason",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cash REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    id TEXT PRIMARY KEY,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('long', 'short')),
    quantity REAL NOT NULL,
    entry_price REAL NOT NULL,
    opened_at_ms INTEGER NOT NULL,
    stop_price REAL NOT NULL,
    take_profit_price REAL,
    trailing_stop_ratio REAL,
    highest_price REAL NOT NULL,
    lowest_price REAL NOT NULL,
    fees_paid REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trades (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    position_id TEXT NOT NULL UNIQUE,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity REAL NOT NULL,
    entry_price REAL NOT NULL,
    exit_price REAL NOT NULL,
    opened_at_ms INTEGER NOT NULL,
    closed_at_ms INTEGER NOT NULL,
    pnl REAL NOT NULL,
    fees REAL NOT NULL,
    exit_reason TEXT NOT NULL
);
"""


_PAGE_CACHE_KIB = 256


class JournalError(RuntimeError):
    """The journal file cannot be opened, has an unknown schema, or a write contradicts its state."""


def _placeholders(columns: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in columns)


class TradeJournal:
    """The bot's trading state on disk; every record_* call is one committed transaction."""

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open trade journal at {self.path}: {exc}") from exc
        try:
            self._configure(connection)
        except (OSError, sqlite3.Error) as exc:
            connection.close()
            raise JournalError(f"cannot open trade journal at {self.path}: {exc}") from exc
        except JournalError:
            connection.close()
            raise
        self._connection = connection

    def _configure(self, connection: sqlite3.Connection) -> None:
        """Switch to WAL, create the schema on first open and check the version on later ones."""
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(f"trade journal at {self.path} cannot use WAL mode (got {mode!r})")
        connection.execute("PRAGMA synchronous=FULL")
        # SQLite's page cache defaults to 2 MiB and fills slowly as the journal grows; an
        # append-mostly journal needs little of it, and a small cap keeps the bot's memory flat.
        connection.execute(f"PRAGMA cache_size=-{_PAGE_CACHE_KIB}")
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            stored = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
            if stored != str(SCHEMA_VERSION):
                raise JournalError(
                    f"trade journal at {self.path} has schema version {stored}, this code reads {SCHEMA_VERSION}"
                )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and one write transaction; commit on success, roll back on any error."""
        with self._lock:
            if self._connection is None:
                raise JournalError(f"trade journal at {self.path} is closed")
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._connection is None:
                raise JournalError(f"trade journal at {self.path} is closed")
            yield self._connection

    def ensure_account(self, starting_cash: float) -> float:
        """Create the account with starting_cash if it does not exist; return the stored cash."""
        with self._transaction() as connection:
            connection.execute("INSERT OR IGNORE INTO account (id, cash) VALUES (1, ?)", (starting_cash,))
            return float(connection.execute("SELECT cash FROM account WHERE id = 1").fetchone()[0])

    def record_open(self, position: Position, cash_after: float) -> None:
        """Insert the open position and set cash, in one committed transaction."""
        with self._transaction() as connection:
            connection.execute(
                f"INSERT INTO positions ({', '.join(_POSITION_COLUMNS)}) VALUES ({_placeholders(_POSITION_COLUMNS)})",
                tuple(getattr(position, column) for column in _POSITION_COLUMNS),
            )
            self._set_cash(connection, cash_after)

    def record_update(self, position: Position) -> None:
        """Persist a still-open position's stops and trailing anchor."""
        with self._transaction() as connection:
            cursor = connection.execute(
                "UPDATE positions SET stop_price = ?, take_profit_price = ?, trailing_stop_ratio = ?, "
                "highest_price = ?, lowest_price = ? WHERE id = ?",
                (
                    position.stop_price,
                    position.take_profit_price,
                    position.trailing_stop_ratio,
                    position.highest_price,
                    position.lowest_price,
                    position.id,
                ),
            )
            self._require_open(cursor.rowcount, position.id)

    def record_close(self, position: Position, trade: Trade, cash_after: float) -> None:
        """Remove the open position, insert its trade and set cash, in one committed transaction."""
        with self._transaction() as connection:
            cursor = connection.execute("DELETE FROM positions WHERE id = ?", (position.id,))
            self._require_open(cursor.rowcount, position.id)
            connection.execute(
                f"INSERT INTO trades ({', '.join(_TRADE_COLUMNS)}) VALUES ({_placeholders(_TRADE_COLUMNS)})",
                tuple(getattr(trade, column) for column in _TRADE_COLUMNS),
            )
            self._set_cash(connection, cash_after)

    def _require_open(self, rowcount: int, position_id: str) -> None:
        if rowcount != 1:
            raise JournalError(f"position {position_id!r} is not open in the trade journal at {self.path}")

    def _set_cash(self, connection: sqlite3.Connection, cash: float) -> None:
        cursor = connection.execute("UPDATE account SET cash = ? WHERE id = 1", (cash,))
        if cursor.rowcount != 1:
            raise JournalError(f"trade journal at {self.path} has no account: call ensure_account first")

    def open_positions(self) -> list[Position]:
        """Open positions, oldest first."""
        with self._reader() as connection:
            rows = connection.execute(
                f"SELECT {', '.join(_POSITION_COLUMNS)} FROM positions ORDER BY opened_at_ms, rowid"
            ).fetchall()
        return [Position(*row) for row in rows]

    def trades(self, limit: int | None = None) -> list[Trade]:
        """Closed trades in closing order; with limit, only the most recent `limit` of them."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit!r}")
        with self._reader() as connection:
            rows = connection.execute(
                f"SELECT {', '.join(_TRADE_COLUMNS)} FROM "
                f"(SELECT * FROM trades ORDER BY seq DESC LIMIT ?) ORDER BY seq",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [Trade(*row) for row in rows]

    def trade_totals(self) -> tuple[int, float]:
        """(number of closed trades, sum of their net pnl), computed in SQL."""
        with self._reader() as connection:
            count, pnl = connection.execute("SELECT COUNT(*), TOTAL(pnl) FROM trades").fetchone()
        return int(count), float(pnl)

    def cash(self) -> float | None:
        """Cash after the last committed change, or None before ensure_account."""
        with self._reader() as connection:
            row = connection.execute("SELECT cash FROM account WHERE id = 1").fetchone()
        return None if row is None else float(row[0])

    def close(self) -> None:
        """Close the connection; later calls do nothing, other methods raise JournalError."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
