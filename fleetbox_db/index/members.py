"""The member rows: what the reconciler reads to diff a scan, and the changes it writes.

Each function is one question or one change over an open sqlite3 connection; transactions
are the caller's (index.file.IndexFile). Rows are keyed by (cluster, name): stray
directories can repeat a member name.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Final

from fleetbox_db.disk.observe import Observation
from fleetbox_db.disk.scan import Signature
from fleetbox_db.index import bulk
from fleetbox_db.index.names import BYTE_ORDER, key_of, stored_key
from fleetbox_db.index.rows import (
    CONFIG_FIELDS,
    FIXTURE_COLUMNS,
    MEMBER_FIELDS,
    SIGNATURE_FIELDS,
    config_values,
    fixture_rows,
    placeholders,
)
from fleetbox_db.records import Fixture, Key

__all__ = [
    "StoredRow",
    "clear_config",
    "delete_members",
    "go_order",
    "holds_address",
    "insert_members",
    "put_member",
    "racy_keys",
    "set_verified",
    "signatures",
    "stored_row",
    "stored_rows",
]

_NO_SIGNATURE: Final = (None, None, None, None)


@dataclass(frozen=True, slots=True)
class StoredRow:
    """What the index remembers of one member directory, for the reconcile diff."""

    id: int
    state: str
    digest: str | None
    verified_ns: int | None
    # The file's last change as the filesystem stamped it: mtime can be set back (touch -r,
    # cp -p, rsync -t), ctime cannot, so the later of the two is what racy checks use.
    changed_ns: int | None
    signature: Signature | None  # as recorded when the row was last written

    def holds(self, obs: Observation) -> bool:
        """The row records what *obs* read: the same state and the same bytes."""
        return self.digest == obs.digest and self.state == obs.state


# -- names in Go order -----------------------------------------------------------------


def has_raw_names(conn: sqlite3.Connection) -> bool:
    """True when some row holds a name that is not UTF-8 (a BLOB); one covering-index scan."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM members"
        " WHERE typeof(cluster) = 'blob' OR typeof(name) = 'blob')"
    ).fetchone()
    return bool(row[0])


def go_order(conn: sqlite3.Connection) -> str:
    """ORDER BY terms for Go's List() order over the whole table: the unique index's order
    (TEXT in BINARY collation is UTF-8 byte order) unless raw names need comparing as bytes.
    """
    return BYTE_ORDER if has_raw_names(conn) else "cluster, name"


# -- the reconcile diff -----------------------------------------------------------------


def signatures(conn: sqlite3.Connection, order: str | None = None) -> list[tuple[Any, ...]]:
    """(cluster, name, ino, size, mtime_ns, ctime_ns) of every row, in Go List() order
    (*order*: go_order(conn), when the caller has it already).

    BINARY collation compares UTF-8 bytes, which is exactly Go's order.
    """
    order = go_order(conn) if order is None else order
    rows = conn.execute(
        f"SELECT cluster, name, ino, size, mtime_ns, ctime_ns FROM members ORDER BY {order}"
    ).fetchall()
    if order is BYTE_ORDER:
        rows = [(*key_of(c, n), *rest) for c, n, *rest in rows]
    return rows


def racy_keys(conn: sqlite3.Connection, granularity_ns: int) -> set[Key]:
    """Rows read so soon after their last change that a same-tick rewrite could hide."""
    rows = conn.execute(
        "SELECT cluster, name FROM members WHERE mtime_ns IS NOT NULL"
        " AND max(mtime_ns, ctime_ns) + ? > verified_ns",
        (granularity_ns,),
    )
    return {key_of(r[0], r[1]) for r in rows}


_STORED: Final = (
    "id, state, digest, verified_ns, max(mtime_ns, ctime_ns), ino, size, mtime_ns, ctime_ns"
)


def _stored(r: Sequence[Any]) -> StoredRow:
    row_id, state, digest, verified_ns, changed_ns, *sig = r
    signature = None if sig[0] is None else Signature(*sig)
    return StoredRow(row_id, state, digest, verified_ns, changed_ns, signature)


def stored_rows(conn: sqlite3.Connection) -> dict[Key, StoredRow]:
    """Every row as the diff needs it."""
    rows = conn.execute(f"SELECT cluster, name, {_STORED} FROM members")
    return {key_of(r[0], r[1]): _stored(r[2:]) for r in rows}


def stored_row(conn: sqlite3.Connection, key: Key) -> StoredRow | None:
    """One row as the diff needs it, or None."""
    r = conn.execute(
        f"SELECT {_STORED} FROM members WHERE cluster = ? AND name = ?", stored_key(key)
    ).fetchone()
    return None if r is None else _stored(r)


def holds_address(conn: sqlite3.Connection, key: Key, first: int, last: int) -> bool:
    """The row of *key* holds (its config claims) an address from *first* to *last*."""
    row = conn.execute(
        "SELECT 1 FROM members WHERE cluster = ? AND name = ? AND ip_int BETWEEN ? AND ?",
        (*stored_key(key), first, last),
    ).fetchone()
    return row is not None


# -- member rows ------------------------------------------------------------------------


def _head(obs: Observation) -> tuple[Any, ...]:
    """The key and SIGNATURE_FIELDS values of the row that records *obs*."""
    sig = _NO_SIGNATURE if obs.signature is None else obs.signature
    # str(): sqlite3 binds a str subclass (a MemberState) through its adapter lookup, at
    # twice the cost of a str, once per row of a rebuild.
    return (*stored_key(obs.key), str(obs.state), *sig, obs.verified_ns, obs.digest, obs.reason)


def put_member(conn: sqlite3.Connection, obs: Observation, *, keep_config: bool = False) -> None:
    """Record *obs* in its member row; its config too, unless *keep_config* or it has none
    (an unreadable file keeps the last good config). Callers whose config file is gone
    follow with clear_config().
    """
    vm = None if keep_config else obs.vm
    fields = SIGNATURE_FIELDS if vm is None else (*SIGNATURE_FIELDS, *CONFIG_FIELDS)
    values = _head(obs) if vm is None else (*_head(obs), *config_values(vm))
    row = conn.execute(
        f"INSERT INTO members (cluster, name, {', '.join(fields)})"
        f" VALUES ({placeholders(len(values))})"
        " ON CONFLICT (cluster, name) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in fields)
        + " RETURNING id",
        values,
    ).fetchone()
    if vm is not None:
        put_fixtures(conn, int(row[0]), vm.fixtures)


def clear_config(conn: sqlite3.Connection, key: Key) -> None:
    """Forget a member's config: its file is gone, so it holds no IP or MAC any more."""
    conn.execute(
        "UPDATE members SET "
        + ", ".join(f"{c} = NULL" for c in CONFIG_FIELDS)
        + " WHERE cluster = ? AND name = ?",
        stored_key(key),
    )
    conn.execute(
        "DELETE FROM fixtures WHERE member_id IN"
        " (SELECT id FROM members WHERE cluster = ? AND name = ?)",
        stored_key(key),
    )


def put_fixtures(conn: sqlite3.Connection, mid: int, fixtures: Iterable[Fixture]) -> None:
    conn.execute("DELETE FROM fixtures WHERE member_id = ?", (mid,))
    conn.executemany(
        f"INSERT INTO fixtures ({FIXTURE_COLUMNS}) VALUES ({placeholders(6)})",
        fixture_rows(mid, fixtures),
    )


def insert_members(conn: sqlite3.Connection, parsed: Sequence[Observation]) -> None:
    """Insert rows known to be new, each with a config, and their fixtures: two executemany
    calls in all.

    The caller holds the write transaction and has checked the keys are absent, so ids
    can be handed out from max(id) without ON CONFLICT or RETURNING per row (the cold
    rebuild writes every member through here).
    """
    start = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM members").fetchone()[0])
    members: list[tuple[Any, ...]] = []
    fixtures: list[tuple[Any, ...]] = []
    for mid, obs in enumerate(parsed, start):
        assert obs.vm is not None
        members.append((mid, *_head(obs), *config_values(obs.vm)))
        fixtures.extend(fixture_rows(mid, obs.vm.fixtures))
    columns, marks = ", ".join(MEMBER_FIELDS), placeholders(len(MEMBER_FIELDS))
    triggers_dropped = (
        bulk.insert_triggers_dropped(conn, [row[1:3] for row in members])
        if len(members) >= bulk.BULK_ROWS
        else nullcontext(None)
    )
    with triggers_dropped as first:
        if first is None:  # the triggers stamp seq, row by row
            conn.executemany(f"INSERT INTO members ({columns}) VALUES ({marks})", members)
        else:
            conn.executemany(
                f"INSERT INTO members ({columns}, seq) VALUES ({marks}, ?)",
                ((*row, seq) for seq, row in enumerate(members, first)),
            )
    conn.executemany(
        f"INSERT INTO fixtures ({FIXTURE_COLUMNS}) VALUES ({placeholders(6)})", fixtures
    )


def set_verified(conn: sqlite3.Connection, key: Key, verified_ns: int) -> None:
    conn.execute(
        "UPDATE members SET verified_ns = ? WHERE cluster = ? AND name = ?",
        (verified_ns, *stored_key(key)),
    )


def delete_members(conn: sqlite3.Connection, keys: Iterable[Key]) -> None:
    conn.executemany(
        "DELETE FROM members WHERE cluster = ? AND name = ?", (stored_key(k) for k in keys)
    )
