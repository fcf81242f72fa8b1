"""A look at the index file exactly as it is, for check() and reconcile(dry_run=True).

Those two promise to change nothing, so they cannot go through IndexFile.connection(),
which creates a missing index, upgrades an older one (an older fleetbox_db still running
then sees a "newer" index and refuses writes) and moves a corrupt one aside. Here the file
is opened ``mode=rw`` (never created; SQLite removes the -wal and -shm it makes when the
connection closes, which ``mode=ro`` would leave behind) with ``query_only`` on, and its
revision is reported, not changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from fleetbox_db.disk.safeopen import check_regular
from fleetbox_db.errors import IndexSchemaError, IndexUnavailableError
from fleetbox_db.index import schema

__all__ = ["Peek", "empty_head", "peek"]


class Peek(NamedTuple):
    """The index as found: a read-only connection, or None with the reason it is unusable."""

    conn: sqlite3.Connection | None
    problem: IndexUnavailableError | IndexSchemaError | None


@contextmanager
def peek(path: Path, busy_timeout: float) -> Iterator[Peek | None]:
    """The index at *path* read-only at head, a Peek with the problem, or None if absent.

    NotRegularFileError (an OSError) when it or its -wal/-shm is a symlink or special file.
    """
    if not check_regular(path):
        yield None
        return
    for suffix in ("-wal", "-shm"):
        check_regular(f"{path}{suffix}")
    uri = "file:" + quote(bytes(path)) + "?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        yield Peek(None, _unavailable(path, str(exc)))
        return
    try:
        conn.execute("PRAGMA query_only = ON")
        yield Peek(conn, None) if (found := _status(conn, path)) is None else Peek(None, found)
    finally:
        conn.close()


def _status(
    conn: sqlite3.Connection, path: Path
) -> IndexUnavailableError | IndexSchemaError | None:
    try:
        status = schema.classify(conn)
    except sqlite3.Error as exc:
        return _unavailable(path, str(exc))
    if status == "current":
        return None
    if status in ("older", "newer"):
        revision = schema.current_revision(conn)
        todo = "run `fleetbox-db migrate`" if status == "older" else "upgrade fleetbox_db"
        return IndexSchemaError(
            f"index {path} needs migration: it is at {revision}, this fleetbox_db uses "
            f"{schema.HEAD}; it was read as it is, not upgraded ({todo})",
            path=path,
        )
    what = "empty" if status == "empty" else "not a fleetbox index"
    return _unavailable(path, what)


def _unavailable(path: Path, reason: str) -> IndexUnavailableError:
    kind = "is corrupt or unreadable"
    return IndexUnavailableError(
        f"index {path} {kind} ({reason}); nothing was changed: the next write moves it "
        "aside and rebuilds it from disk",
        path=path,
    )


def empty_head() -> sqlite3.Connection:
    """An in-memory database with the head schema and no rows: what a rebuild starts
    from, for a dry run over a missing, older or broken index. Imports SQLAlchemy."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    from fleetbox_db.index.models import Base

    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    engine = create_engine("sqlite://", creator=lambda: conn, poolclass=StaticPool)
    Base.metadata.create_all(engine)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn
