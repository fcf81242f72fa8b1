"""The index's SQLite connection: opened with settings fit for several processes, its
read transactions, and its failures named.

We talk to SQLite through the stdlib module with ``isolation_level=None`` and write every
transaction's BEGIN ourselves: pysqlite's implicit transactions start too late (after the
first read), which turns lock waits into instant "database is locked" errors in WAL mode.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Literal

from fleetbox_db.disk.locks import jittered

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "WAL_LIMIT",
    "Failure",
    "begin_immediate",
    "classify_error",
    "connect",
    "data_version",
    "enable_wal",
    "one_read",
    "schema_version",
]

DEFAULT_BUSY_TIMEOUT: Final = 30.0
"""Seconds a connection waits for another process's write lock before IndexBusyError."""
_POLL_S: Final = 0.001

#: Primary SQLite result codes we tell apart (sqlite3.h).
# SQLITE_BUSY only: SQLITE_LOCKED ("database table is locked") is a conflict inside one
# connection, which no wait for another process ends.
_BUSY_CODE: Final = 5
_UNAVAILABLE_CODES: Final = frozenset({3, 8, 14, 23})  # PERM, READONLY, CANTOPEN, AUTH
_CORRUPT_CODES: Final = frozenset({11, 26})  # CORRUPT, NOTADB
_FULL_CODE: Final = 13  # SQLITE_FULL: the disk (or RLIMIT_FSIZE), never the file

#: What the -wal file is truncated to once checkpointed (SQLite's auto-checkpoint runs at
#: 1,000 pages, 4 MiB).
WAL_LIMIT: Final = 4 << 20

#: busy: another process holds the lock; unavailable: permissions; full: no space; corrupt:
#: SQLite says the file is damaged; io: an I/O error, which may or may not be the file's.
Failure = Literal["busy", "unavailable", "full", "corrupt", "io", "other"]


def connect(
    path: Path, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, *, wal: bool = True
) -> sqlite3.Connection:
    """Open *path* in autocommit mode with a busy timeout and foreign keys on.

    wal=False leaves the journal mode alone: the index opens a file that way until it has
    seen the file is ours, because switching to WAL rewrites the header of whatever file it
    is (and creates -wal and -shm next to it), which must not happen to someone else's
    database before it is moved aside untouched.
    """
    conn = sqlite3.connect(
        str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        # The index is rebuilt from disk after a crash, so the fsync NORMAL skips is cheap.
        conn.execute("PRAGMA synchronous = NORMAL")
        # Sorts and temporary b-trees stay in memory: the index is small, the disk may be slow.
        conn.execute("PRAGMA temp_store = MEMORY")
        # A large write (the VM records of 100,000 members: 20 MB) grows the -wal file, and
        # SQLite reuses it at that size until the last connection closes; past a checkpoint
        # the next write truncates it to this.
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
        if wal:
            enable_wal(conn, busy_timeout)
    except BaseException:
        conn.close()
        raise
    return conn


def enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch to WAL unless the file already is (the mode is stored in the file).

    The switch needs the other connections' locks gone, and SQLite answers "database is
    locked" at once instead of waiting (six processes opening a new index together: one
    failed in 27 of 60 rounds). So it is tried every millisecond or so until *busy_timeout*
    has passed, as begin_immediate does; another process may have switched it meanwhile.
    """

    def switch() -> None:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")

    _while_locked(switch, busy_timeout)


def _while_locked(attempt: Callable[[], object], timeout: float) -> None:
    """Run *attempt*, again every millisecond or so while it fails with "database is
    locked", until *timeout* has passed (0: once); then that error is raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            attempt()
            return
        except sqlite3.OperationalError as exc:
            if classify_error(exc) != "busy" or time.monotonic() >= deadline:
                raise
        time.sleep(jittered(_POLL_S))


def classify_error(exc: sqlite3.Error) -> Failure:
    """Map a sqlite3 exception to what the caller should do about it."""
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc).lower()
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == _BUSY_CODE or (primary is None and ("is locked" in text or "busy" in text)):
        return "busy"
    if primary in _UNAVAILABLE_CODES or "readonly" in text or "unable to open" in text:
        return "unavailable"
    if primary == _FULL_CODE or "disk is full" in text:
        return "full"
    if primary in _CORRUPT_CODES or "malformed" in text or "not a database" in text:
        return "corrupt"
    # Our own statements name only tables and columns the head revision has: missing ones
    # mean the file lost its schema after it was classified (dropped by hand, replaced).
    if text.startswith(("no such table", "no such column")):
        return "corrupt"
    if primary == 10 or "disk i/o" in text:  # SQLITE_IOERR
        return "io"
    return "other"


def data_version(conn: sqlite3.Connection) -> int:
    """Changes when another connection commits to the file (this one's own writes aside)."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def schema_version(conn: sqlite3.Connection) -> int:
    """Moves with every change to the schema (a migration may reset member_seq)."""
    return int(conn.execute("PRAGMA schema_version").fetchone()[0])


@contextmanager
def one_read(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN ... COMMIT around several SELECTs so they see one state of the file; inside a
    transaction already (the write lock's), a no-op."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def begin_immediate(conn: sqlite3.Connection, busy_timeout: float, *, wait: bool) -> None:
    """BEGIN IMMEDIATE: the write lock. With *wait*, tried every millisecond or so until
    *busy_timeout* has passed; without, tried once. sqlite3.OperationalError ("database is
    locked") when it stays taken.

    Not SQLite's own busy handler: it backs off to 100 ms between tries, so a process that
    writes in a loop takes the lock again and again while the others sleep (a create
    waited 5 s beside an allocate_ip loop, the full busy timeout).
    """
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        _while_locked(lambda: conn.execute("BEGIN IMMEDIATE"), busy_timeout if wait else 0.0)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
