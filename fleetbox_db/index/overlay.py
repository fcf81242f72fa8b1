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
an unqualified name up in temp first), the same queries answer, and it is dropped. Nor do
answers about addresses alone (who_has, holders, free_ips) when the member rows the plan
changes hold none of their addresses: beside a create loop in another subnet, 7% of them
copied the whole index for a change they do not show.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final, NamedTuple, TypeVar

from fleetbox_db.disk.leases import Lease
from fleetbox_db.disk.observe import caught_mid_write
from fleetbox_db.disk.scan import Scan
from fleetbox_db.index import history, members, reservations
from fleetbox_db.index.connection import data_version, one_read, schema_version
from fleetbox_db.index.plan import Plan
from fleetbox_db.index.reconcile import Progress, Reconciler
from fleetbox_db.index.reservations import Reservation
from fleetbox_db.rules.ipam import ip_key

__all__ = [
    "Copy",
    "answer_from_copy",
    "answer_from_file",
    "in_memory_copy",
    "reservations_shadowed",
]

T = TypeVar("T")

#: At most this many member rows read or dropped are checked against an answer's addresses
#: (a read of each config): past them, a copy is cheaper.
_FEW_CHANGES: Final = 32


class Copy(NamedTuple):
    """An in-memory copy of the index and the file's data_version and schema version it
    was taken at (None when another connection committed, or changed the schema, while it
    was taken: the copy's is then unknown)."""

    conn: sqlite3.Connection
    version: int | None
    schema: int | None


@contextmanager
def in_memory_copy(conn: sqlite3.Connection) -> Iterator[Copy]:
    """A private copy of the file *conn* has open, closed on exit. A backup step reads one
    snapshot; a data_version equal before and after it says which one."""
    copy = sqlite3.connect(":memory:", isolation_level=None)
    try:
        before = data_version(conn), schema_version(conn)
        conn.backup(copy)
        after = data_version(conn), schema_version(conn)
        copy.execute("PRAGMA foreign_keys = ON")  # as on the file: fixtures go with members
        version, schema = (before[i] if before[i] == after[i] else None for i in (0, 1))
        yield Copy(copy, version, schema)
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


def answer_from_file(
    conn: sqlite3.Connection,
    reconciler: Reconciler,
    scan: Scan,
    plan: Plan,
    ask: Callable[[sqlite3.Connection], T],
) -> tuple[T] | None:
    """(*ask* of the index file itself, its reservations shadowed by the plan's lease drift
    in a TEMP table if there is any: no copy of the file), when the plan changes no member
    row the answer shows (_untouched); None when it does (answer_from_copy then answers)."""
    reading = not conn.in_transaction  # so the transaction below holds no write of ours
    try:
        with one_read(conn):
            conn.execute("SELECT value FROM member_seq").fetchone()  # the snapshot starts
            if data_version(conn) != plan.data_version:  # a writer committed: plan again
                plan = reconciler.plan(conn, scan, leases=plan.leases, contents=plan.contents)
                if plan.empty:
                    return (ask(conn),)
            if not _untouched(conn, reconciler, plan):
                return None
            if not (plan.dead or plan.unmirrored):
                return (ask(conn),)
            with reservations_shadowed(conn, plan.dead, plan.unmirrored):
                return (ask(conn),)
    finally:
        if reading:
            reconciler.read_ended()


def _untouched(conn: sqlite3.Connection, reconciler: Reconciler, plan: Plan) -> bool:
    """Applying *plan* would leave every member row its answer shows as the file holds it
    (*conn*, inside the read the plan was made in): it reads or drops no row, or the answer
    is about addresses alone (plan.leases, no config shown) and no row it reads or drops
    holds one of them, before or after. Its configs are read here (they are few), and one
    caught mid-write makes it False: the copy's apply waits for it."""
    if plan.leases_only:
        return True
    within = plan.leases
    changed = len(plan.reads) + len(plan.removed)
    if within is None or plan.contents or changed > _FEW_CHANGES:
        return False
    keys = [m.key for m in plan.reads] + plan.removed
    if any(members.holds_address(conn, key, within.first, within.last) for key in keys):
        return False
    for member in plan.reads:
        obs = plan.observed.get(member.key)
        if obs is None:
            obs = reconciler.observe(member, wait=False, again=True)
        if caught_mid_write(obs, reconciler.granularity_ns):
            return False
        ip = None if obs.vm is None else ip_key(obs.vm.ip)
        if ip is not None and within.holds(ip):
            return False
    return True


def answer_from_copy(
    conn: sqlite3.Connection,
    reconciler: Reconciler,
    scan: Scan,
    plan: Plan,
    ask: Callable[[sqlite3.Connection], T],
    progress: Progress | None,
) -> T:
    """*ask* of an in-memory copy of the index with *plan* applied to it. The plan must
    describe the copy: when another process wrote since it was made, it is made against
    the copy itself (copying again until a plan and a copy agreed made the slowest
    answers beside busy writers copy 3-4 times and plan 3-5 times)."""
    with in_memory_copy(conn) as copy:
        history.drop_staged_elsewhere(copy.conn)
        if copy.version != plan.data_version:
            plan = reconciler.plan_aside(
                copy.conn, copy.schema, scan, leases=plan.leases, contents=plan.contents
            )
        reconciler.apply(copy.conn, plan, progress=progress, on_disk=False)
        return ask(copy.conn)
