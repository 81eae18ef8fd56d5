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

One writer: a writing journal holds an exclusive `flock` on `<journal>.lock` for its life (the
OS releases it if the process dies), so a second bot on the same file is refused with the
holder's pid; `read_only=True` opens without the lock, for status and reports.

Never someone else's file: our journals carry `PRAGMA application_id` and the schema version in
`user_version`. An existing file is inspected read-only first; one that is not ours is refused
and left byte-for-byte unchanged; an older schema of ours is copied to a backup, then migrated.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from crypto_bot.execution.position import Position, Trade

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: application_id and user_version mark the file; 1: the tables and meta only
APPLICATION_ID = 0x43424A4E  # "CBJN": crypto_bot journal
_OUR_TABLES = frozenset({"meta", "account", "positions", "trades", "sqlite_sequence"})

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
_MARKET_CLOCK_KEY = "market_clock_ms"  # in meta: the market's time at the last cycle's end
_OPEN_HINT = "check that its directory is a writable local directory, or set storage.journal_path"


class JournalError(RuntimeError):
    """The journal file cannot be opened, has an unknown schema, or a write contradicts its state."""


class JournalLockedError(JournalError):
    """Another process writes to this journal."""


class ForeignJournalError(JournalError):
    """The file named as the journal is not one of ours; it was left untouched."""


class _WriterLock:
    """An exclusive flock on `<journal>.lock`, holding the owner's pid; released by close or by the OS."""

    def __init__(self, journal_path: Path) -> None:
        self.path = journal_path.with_name(journal_path.name + ".lock")
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(descriptor)
            raise JournalLockedError(
                f"trade journal at {journal_path} is in use by another bot (pid {holder}); stop that bot or set "
                "storage.journal_path to another file"
            ) from None
        except OSError:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor drops the flock
            self._descriptor = None


def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)


def _stored_version(path: Path) -> int | None:
    """The schema version of an existing journal of ours (read-only: the file is not touched);
    None for a file to create. Raises ForeignJournalError for anything else."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        with closing(_connect_read_only(path)) as connection:
            application_id = connection.execute("PRAGMA application_id").fetchone()[0]
            user_version = connection.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            legacy = None
            if application_id == 0 and "meta" in tables:
                row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                legacy = None if row is None else row[0]
    except sqlite3.Error as error:
        raise ForeignJournalError(
            f"{path} is not a crypto_bot trade journal ({error}); it was left unchanged: set storage.journal_path to "
            "another file"
        ) from error
    if application_id == APPLICATION_ID:
        return user_version
    if application_id == 0 and not tables:
        return None  # an empty database: nothing in it to lose
    if application_id == 0 and legacy == "1" and tables <= _OUR_TABLES:
        return 1  # written before journals were marked
    raise ForeignJournalError(
        f"{path} is not a crypto_bot trade journal (application_id {application_id}, tables "
        f"{', '.join(sorted(tables)) or 'none'}); it was left unchanged: set storage.journal_path to another file"
    )


def _placeholders(columns: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in columns)


class TradeJournal:
    """The bot's trading state on disk; every record_* call is one committed transaction."""

    path: Path
    read_only: bool

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._writer_lock: _WriterLock | None = None
        try:
            if read_only:
                self._connection = self._open_read_only()
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _stored_version(self.path)  # a file not ours is refused before anything is created beside it
            self._writer_lock = _WriterLock(self.path)
            version = _stored_version(self.path)  # again: it may have changed before the lock was ours
            if version == 1:
                self._back_up(version)
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            self._release_writer_lock()
            raise JournalError(f"cannot open trade journal at {self.path}: {exc}; {_OPEN_HINT}") from exc
        except JournalError:
            self._release_writer_lock()
            raise
        try:
            self._configure(connection)
        except (OSError, sqlite3.Error) as exc:
            connection.close()
            self._release_writer_lock()
            raise JournalError(f"cannot open trade journal at {self.path}: {exc}; {_OPEN_HINT}") from exc
        except JournalError:
            connection.close()
            self._release_writer_lock()
            raise
        self._connection = connection

    def _open_read_only(self) -> sqlite3.Connection:
        if _stored_version(self.path) != SCHEMA_VERSION:
            raise JournalError(
                f"trade journal at {self.path} does not exist or needs a writing bot to migrate it; run the bot "
                "(crypto-bot run) once on it, or set storage.journal_path"
            )
        return _connect_read_only(self.path)

    def _back_up(self, version: int) -> None:
        """Copy the journal (with its WAL) before migrating it from `version`."""
        backup_path = self.path.with_name(f"{self.path.name}.v{version}.bak")
        with closing(sqlite3.connect(self.path)) as source, closing(sqlite3.connect(backup_path)) as target:
            source.backup(target)
        logger.warning("trade journal at %s: schema %d backed up to %s before migration", self.path, version, backup_path)

    def _release_writer_lock(self) -> None:
        if self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None

    def _configure(self, connection: sqlite3.Connection) -> None:
        """Switch to WAL, create or migrate the schema and mark the file as ours."""
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(f"trade journal at {self.path} cannot use WAL mode (got {mode!r}); {_OPEN_HINT}")
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
            if stored == "1":  # the only migration so far: version 2 marks the file, the tables are unchanged
                stored = str(SCHEMA_VERSION)
                connection.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (stored,))
            if stored != str(SCHEMA_VERSION):
                raise JournalError(
                    f"trade journal at {self.path} has schema version {stored}, this code reads {SCHEMA_VERSION}"
                )
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
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
            if self.read_only:
                raise JournalError(f"trade journal at {self.path} is open read-only")
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

    def record_market_clock(self, now_ms: int) -> None:
        """Remember the market's clock at a cycle's end: a restarted bot's simulated market goes on from it."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_MARKET_CLOCK_KEY, str(int(now_ms))),
            )

    def market_clock_ms(self) -> int | None:
        """The latest market time this journal knows (None for a new one): the clock recorded at the last cycle's
        end, or, in a journal written before it was recorded, the latest time a position opened or a trade closed."""
        with self._reader() as connection:
            recorded = connection.execute("SELECT value FROM meta WHERE key = ?", (_MARKET_CLOCK_KEY,)).fetchone()
            (latest,) = connection.execute(
                "SELECT MAX(at_ms) FROM (SELECT MAX(opened_at_ms) AS at_ms FROM positions "
                "UNION ALL SELECT MAX(closed_at_ms) FROM trades)"
            ).fetchone()
        known = [int(value) for value in (recorded[0] if recorded else None, latest) if value is not None]
        return max(known, default=None)

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
            self._release_writer_lock()
