"""Opening the index's SQLite file with settings fit for several processes, and naming failures.

We talk to SQLite through the stdlib module with ``isolation_level=None`` and write every
transaction's BEGIN ourselves: pysqlite's implicit transactions start too late (after the
first read), which turns lock waits into instant "database is locked" errors in WAL mode.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final, Literal

#: Primary SQLite result codes we tell apart (sqlite3.h).
_BUSY_CODES: Final = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED
_UNAVAILABLE_CODES: Final = frozenset({3, 8, 14, 23})  # PERM, READONLY, CANTOPEN, AUTH
_CORRUPT_CODES: Final = frozenset({11, 26})  # CORRUPT, NOTADB

Failure = Literal["busy", "unavailable", "corrupt", "io", "other"]


def connect(path: Path, busy_timeout: float = 30.0) -> sqlite3.Connection:
    """Open *path* in autocommit mode with WAL, a busy timeout and foreign keys on."""
    conn = sqlite3.connect(
        str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        # The index is rebuilt from disk after a crash, so the fsync NORMAL skips is cheap.
        conn.execute("PRAGMA synchronous = NORMAL")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
    except BaseException:
        conn.close()
        raise
    return conn


def classify_error(exc: sqlite3.Error) -> Failure:
    """Map a sqlite3 exception to what the caller should do about it."""
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc).lower()
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _BUSY_CODES or "locked" in text or "busy" in text:
        return "busy"
    if primary in _UNAVAILABLE_CODES or "readonly" in text or "unable to open" in text:
        return "unavailable"
    if primary in _CORRUPT_CODES or "malformed" in text or "not a database" in text:
        return "corrupt"
    if primary == 10 or "disk i/o" in text:  # SQLITE_IOERR
        return "io"
    return "other"
