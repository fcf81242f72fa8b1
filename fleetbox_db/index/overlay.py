"""A reconcile applied in memory: what a reader answers from while another process writes.

A reader must not wait for the write lock (issue 12). When a scan shows changes and the
lock is taken, the reader copies the index file page by page into a private in-memory
database (SQLite's backup API: a few milliseconds for 10,000 members, where copying rows
into TEMP tables and indexing them took several times that), applies the plan there,
answers, and drops the copy. The copy has the file's schema, constraints and indexes, so
the same reconcile and the same queries run on it unchanged. The answer is the one the
real reconcile would give; recording it is left to the next writer.

Most such answers beside an allocator differ from the file only in reservations (its lease
is on disk before its commit). Those need no copy: a TEMP table named reservations, filled
from the file's with the lease drift applied, shadows it for this connection (SQLite looks
an unqualified name up in temp first), the same queries answer, and it is dropped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from fleetbox_db.disk.leases import Lease
from fleetbox_db.index import reservations
from fleetbox_db.index.connection import data_version
from fleetbox_db.index.reservations import Reservation

__all__ = ["Copy", "in_memory_copy", "reservations_shadowed"]


class Copy(NamedTuple):
    """An in-memory copy of the index and the file's data_version it was taken at (None
    when another connection committed while it was taken: its version is then unknown)."""

    conn: sqlite3.Connection
    version: int | None


@contextmanager
def in_memory_copy(conn: sqlite3.Connection) -> Iterator[Copy]:
    """A private copy of the file *conn* has open, closed on exit. A backup step reads one
    snapshot; a data_version equal before and after it says which one."""
    copy = sqlite3.connect(":memory:", isolation_level=None)
    try:
        before = data_version(conn)
        conn.backup(copy)
        after = data_version(conn)
        copy.execute("PRAGMA foreign_keys = ON")  # as on the file: fixtures go with members
        yield Copy(copy, before if before == after else None)
    finally:
        copy.close()


@contextmanager
def reservations_shadowed(
    conn: sqlite3.Connection, dead: list[Reservation], unmirrored: list[Lease]
) -> Iterator[None]:
    """Inside the caller's read transaction: reservations, for *conn* only, as the file's
    with *dead* rows dropped and *unmirrored* leases added; the file's again on exit."""
    conn.execute("CREATE TEMP TABLE reservations AS SELECT * FROM main.reservations")
    try:
        # free_ips streams addresses in order off the ip_int indexes: the shadow has one too.
        conn.execute("CREATE INDEX temp.shadow_ip_int ON reservations (ip_int)")
        reservations.delete(conn, (r.id for r in dead))
        reservations.mirror(conn, unmirrored)
        yield
    finally:
        conn.execute("DROP TABLE temp.reservations")
