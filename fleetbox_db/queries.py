"""The SQL fleetbox_db runs against the index, over an open sqlite3 connection.

Each function is one question or one change; transactions are the caller's (index.Index).
Rows are keyed by (cluster, name): stray directories can repeat a member name.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from fleetbox_db.config import VM, Fixture, decode_json_value
from fleetbox_db.dbnames import BYTE_ORDER, Key, key_of, name_of, stored, stored_key
from fleetbox_db.gotime import parse_go_time
from fleetbox_db.ipam import format_ipv4
from fleetbox_db.rows import (
    CONFIG_COLUMNS,
    CONFIG_FIELDS,
    SIGNATURE_FIELDS,
    config_values,
    fixture_rows,
    vm_from_row,
)


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two or more member directories whose configs claim one IP or MAC."""

    kind: Literal["ip", "mac"]
    value: str
    members: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.kind} {self.value} is claimed by {', '.join(self.members)}"


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


def signatures(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """(cluster, name, ino, size, mtime_ns, ctime_ns) of every row, in Go List() order.

    BINARY collation compares UTF-8 bytes, which is exactly Go's order.
    """
    order = go_order(conn)
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


def stored_rows(conn: sqlite3.Connection) -> dict[Key, tuple[StoredRow, tuple[Any, ...]]]:
    """Every row's StoredRow and recorded signature (ino, size, mtime_ns, ctime_ns)."""
    rows = conn.execute(f"SELECT cluster, name, {_STORED} FROM members")
    return {key_of(r[0], r[1]): (StoredRow(*r[2:7]), r[7:]) for r in rows}


def stored_row(conn: sqlite3.Connection, key: Key) -> tuple[StoredRow, tuple[Any, ...]] | None:
    """One row's StoredRow and recorded signature, or None."""
    r = conn.execute(
        f"SELECT {_STORED} FROM members WHERE cluster = ? AND name = ?", stored_key(key)
    ).fetchone()
    return None if r is None else (StoredRow(*r[:5]), r[5:])


def ip_in_range(conn: sqlite3.Connection, key: Key, first: int, last: int) -> int | None:
    """The address the member's config holds if it lies in first..last, else None."""
    row = conn.execute(
        "SELECT ip_int FROM members WHERE cluster = ? AND name = ? AND ip_int BETWEEN ? AND ?",
        (*stored_key(key), first, last),
    ).fetchone()
    return None if row is None else int(row[0])


# -- member rows ------------------------------------------------------------------------


def put_member(
    conn: sqlite3.Connection,
    key: Key,
    state: str,
    signature: Sequence[int] | None,
    verified_ns: int | None,
    digest: str | None,
    vm: VM | None,
) -> None:
    """Write one member row; with vm=None the last good config columns are kept.

    Callers whose config file is gone follow with clear_config().
    """
    sig = tuple(signature) if signature is not None else (None, None, None, None)
    head = (*stored_key(key), state, *sig, verified_ns, digest)
    fields = SIGNATURE_FIELDS if vm is None else (*SIGNATURE_FIELDS, *CONFIG_FIELDS)
    values = head if vm is None else (*head, *config_values(vm))
    row = conn.execute(
        f"INSERT INTO members (cluster, name, {', '.join(fields)})"
        f" VALUES ({', '.join('?' * len(values))})"
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
        "INSERT INTO fixtures (member_id, position, host_path, guest_path, label, extra)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        fixture_rows(mid, fixtures),
    )


def insert_members(
    conn: sqlite3.Connection,
    rows: Sequence[tuple[Key, str, Sequence[int | None], int, str, VM]],
) -> None:
    """Insert rows known to be new, with their fixtures: two executemany calls in all.

    The caller holds the write transaction and has checked the keys are absent, so ids
    can be handed out from max(id) without ON CONFLICT or RETURNING per row (the cold
    rebuild writes every member through here).
    """
    start = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM members").fetchone()[0])
    members: list[tuple[Any, ...]] = []
    fixtures: list[tuple[Any, ...]] = []
    for mid, (key, state, sig, verified_ns, digest, vm) in enumerate(rows, start):
        members.append(
            (mid, *stored_key(key), state, *sig, verified_ns, digest, *config_values(vm))
        )
        fixtures.extend(fixture_rows(mid, vm.fixtures))
    conn.executemany(
        f"INSERT INTO members (id, cluster, name, {', '.join(SIGNATURE_FIELDS)},"
        f" {CONFIG_COLUMNS}) VALUES ({', '.join('?' * 21)})",
        members,
    )
    conn.executemany(
        "INSERT INTO fixtures (member_id, position, host_path, guest_path, label, extra)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        fixtures,
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


# -- answers --------------------------------------------------------------------------


#: A config as vmcache keeps it: immutable, so it is shared safely and turned into a fresh
#: VM per call. (name, mac, cpus, memory_mb, disk_mb, image, created_at, created_at text,
#: fixtures as (host, guest, label, extra JSON), ip, extra JSON)
Record = tuple[
    str, str, int, int, int, str, datetime, str,
    tuple[tuple[str, str, str, str | None], ...], str, str | None,
]  # fmt: skip


def record_keys(conn: sqlite3.Connection) -> list[tuple[int, str | None]]:
    """(row id, digest) of every 'ok' row, in Go List() order: what records() are keyed by."""
    return conn.execute(
        f"SELECT id, digest FROM members WHERE state = 'ok' ORDER BY {go_order(conn)}"
    ).fetchall()


def records(
    conn: sqlite3.Connection, ids: Sequence[int] | None = None
) -> dict[tuple[int, str | None], Record]:
    """Records of 'ok' rows, keyed by (row id, digest): those with *ids*, or all of them in
    Go List() order."""
    where = "state = 'ok'"
    if ids is not None:
        where += f" AND id IN ({', '.join(str(int(i)) for i in ids)})"
    order = "" if ids is not None else f" ORDER BY {go_order(conn)}"
    # All rows: every fixture, without the subquery (a third cheaper); those of rows in
    # other states are never looked up.
    of_members = (
        "" if ids is None else f" WHERE member_id IN (SELECT id FROM members WHERE {where})"
    )
    fixtures: dict[int, list[tuple[str, str, str, str | None]]] = {}
    for mid, *fixture in conn.execute(
        "SELECT member_id, host_path, guest_path, label, extra FROM fixtures"
        f"{of_members} ORDER BY member_id, position"
    ):
        fixtures.setdefault(mid, []).append(tuple(fixture))
    found: dict[tuple[int, str | None], Record] = {}
    for mid, digest, name, mac, _, cpus, mem, disk, image, created, ip, _, extra in conn.execute(
        f"SELECT id, digest, {CONFIG_COLUMNS} FROM members WHERE {where}{order}"
    ):
        when = parse_go_time(created)
        found[(mid, digest)] = (
            name, mac, cpus, mem, disk, image, when, created, tuple(fixtures.get(mid, ())), ip,
            extra,
        )  # fmt: skip
    return found


def all_members(conn: sqlite3.Connection) -> list[tuple[str, str, str, VM | None]]:
    """(cluster, name, state, last good config or None) of every row, in Go List() order."""
    fixtures = _fixtures_by_member(conn, "1")
    rows = conn.execute(
        f"SELECT id, cluster, name, state, {CONFIG_COLUMNS} FROM members ORDER BY {BYTE_ORDER}"
    )
    return [
        (
            *key_of(r[1], r[2]),
            r[3],
            None if r[4] is None else vm_from_row(r[4:], fixtures.get(r[0], [])),
        )
        for r in rows
    ]


def _fixtures_by_member(conn: sqlite3.Connection, where: str) -> dict[int, list[Fixture]]:
    """Fixtures of the members matching the SQL condition *where*, by member id, in order."""
    fixtures: dict[int, list[Fixture]] = {}
    for mid, host, guest, label, extra in conn.execute(
        "SELECT member_id, host_path, guest_path, label, extra FROM fixtures"
        f" WHERE member_id IN (SELECT id FROM members WHERE {where})"
        " ORDER BY member_id, position"
    ):
        fixture = Fixture(host, guest, label, decode_json_value(extra) if extra else {})
        fixtures.setdefault(mid, []).append(fixture)
    return fixtures


def member_names(conn: sqlite3.Connection, cluster: str) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM members WHERE cluster = ? ORDER BY CAST(name AS BLOB)",
        (stored(cluster),),
    )
    return [name_of(r[0]) for r in rows]


def names_in_state(conn: sqlite3.Connection, state: str) -> list[str]:
    rows = conn.execute(f"SELECT name FROM members WHERE state = ? ORDER BY {BYTE_ORDER}", (state,))
    return [name_of(r[0]) for r in rows]


def conflicts(conn: sqlite3.Connection) -> list[Conflict]:
    """Every IP and MAC claimed by more than one member directory's config."""
    found: list[Conflict] = []
    for kind, column, show in (("ip", "ip_int", format_ipv4), ("mac", "mac_key", str)):
        rows = conn.execute(
            f"SELECT {column}, name FROM members WHERE {column} IN (SELECT {column} FROM members"
            f" WHERE {column} IS NOT NULL GROUP BY {column} HAVING count(*) > 1)"
            f" ORDER BY {column}, {BYTE_ORDER}"
        ).fetchall()
        for value, group in _grouped(rows):
            found.append(Conflict(kind, show(value), tuple(group)))  # type: ignore[arg-type]
    return found


def _grouped(rows: list[Any]) -> Iterator[tuple[Any, list[str]]]:
    current: Any = object()
    names: list[str] = []
    for value, name in rows:
        if value != current:
            if names:
                yield current, names
            current, names = value, []
        names.append(name_of(name))
    if names:
        yield current, names


def holders_of_ip(conn: sqlite3.Connection, ip_int: int) -> list[Key]:
    rows = conn.execute(
        f"SELECT cluster, name FROM members WHERE ip_int = ? ORDER BY {BYTE_ORDER}", (ip_int,)
    )
    return [key_of(r[0], r[1]) for r in rows]


def holders_of_mac(conn: sqlite3.Connection, key: str) -> list[Key]:
    rows = conn.execute(
        f"SELECT cluster, name FROM members WHERE mac_key = ? ORDER BY {BYTE_ORDER}", (key,)
    )
    return [key_of(r[0], r[1]) for r in rows]


def free_ranges(
    conn: sqlite3.Connection, first: int, last: int, limit: int | None
) -> list[tuple[int, int]]:
    """Gaps (start, stop inclusive) between taken addresses in first..last, ascending.

    With a limit, taken addresses stream in order off the ip_int indexes and the walk stops
    at the limit-th gap; without one, SQLite finds every gap with a window function. Either
    way a /16 with tens of thousands of members is never enumerated address by address.
    """
    if limit is None:
        rows = conn.execute(
            "WITH taken(v) AS ("
            " SELECT :first - 1"
            " UNION SELECT ip_int FROM members WHERE ip_int BETWEEN :first AND :last"
            " UNION SELECT ip_int FROM reservations WHERE ip_int BETWEEN :first AND :last"
            " UNION SELECT :last + 1),"
            " gaps(start, stop) AS (SELECT v + 1, lead(v) OVER (ORDER BY v) - 1 FROM taken)"
            " SELECT start, stop FROM gaps WHERE stop >= start ORDER BY start",
            {"first": first, "last": last},
        )
        return [(int(a), int(b)) for a, b in rows]
    taken = conn.execute(
        "SELECT ip_int FROM members WHERE ip_int BETWEEN :first AND :last"
        " UNION ALL SELECT ip_int FROM reservations WHERE ip_int BETWEEN :first AND :last"
        " ORDER BY 1",
        {"first": first, "last": last},
    )
    gaps: list[tuple[int, int]] = []
    start = first
    for (value,) in taken:
        if len(gaps) >= limit:
            return gaps
        if value > start:
            gaps.append((start, value - 1))
        start = max(start, value + 1)
    if start <= last and len(gaps) < limit:
        gaps.append((start, last))
    return gaps


class snapshot:
    """BEGIN ... COMMIT around several SELECTs so they see one snapshot (nests as a no-op)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.began = False

    def __enter__(self) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
            self.began = True

    def __exit__(self, *exc: object) -> None:
        if self.began:
            self.conn.execute("COMMIT")
