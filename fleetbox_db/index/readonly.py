"""A look at the index file exactly as it is, for check() and reconcile(dry_run=True).

Those two promise to change nothing, so they cannot go through IndexFile.connection(),
which creates a missing index, upgrades an older one (an older fleetbox_db still running
then sees a "newer" index and refuses writes) and moves a corrupt one aside. Here its
revision is reported, not changed, and no file is made beside it:

- with no -wal and no -shm, nobody has the index open: it is read ``immutable=1``, which
  makes neither (a normal open makes both, and cannot remove them when the disk is full);
  if a writer turns up meanwhile (-wal appears, the file changes) the Peek is stale and the
  caller reads again, the normal way;
- otherwise another connection has made them already: ``mode=rw`` (never creates the
  file; ``mode=ro`` would leave -wal and -shm behind) with ``query_only`` on.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from fleetbox_db.disk.safeopen import check_regular
from fleetbox_db.errors import IndexSchemaError, IndexUnavailableError
from fleetbox_db.index import head, schema

__all__ = ["Peek", "empty_head", "peek"]


class Peek(NamedTuple):
    """The index as found: a read-only connection, or None with the reason it is unusable."""

    conn: sqlite3.Connection | None
    problem: IndexUnavailableError | IndexSchemaError | None
    #: True when what was read may be torn: a writer came in during an immutable read.
    stale: Callable[[], bool]


@contextmanager
def peek(path: Path, busy_timeout: float, *, shared: bool = False) -> Iterator[Peek | None]:
    """The index at *path* read-only at head, a Peek with the problem, or None if absent.

    shared=True never reads immutable (after a stale Peek). NotRegularFileError (an
    OSError) when it or its -wal/-shm is a symlink or special file.
    """
    if not check_regular(path):
        yield None
        return
    quiet = not any([check_regular(f"{path}{suffix}") for suffix in ("-wal", "-shm")])
    quiet = quiet and not shared
    before = _signature(path)
    mode = "mode=ro&immutable=1" if quiet else "mode=rw"
    uri = "file:" + quote(bytes(path)) + "?" + mode

    def stale() -> bool:
        return quiet and (os.path.lexists(f"{path}-wal") or _signature(path) != before)

    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        yield Peek(None, _unavailable(path, str(exc)), stale)
        return
    try:
        conn.execute("PRAGMA query_only = ON")
        found = _status(conn, path)
        yield Peek(conn, None, stale) if found is None else Peek(None, found, stale)
    finally:
        conn.close()


def _signature(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


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
    # The rows a new file's migrations insert (member_seq's counter, history's settings).
    for insert, values in head.ROWS:
        conn.execute(insert, values)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn
