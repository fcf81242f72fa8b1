"""The questions the Store asks the index, as SQL over the member and reservation rows.

Each function is one question over an open sqlite3 connection, in Go's List() order where
order matters; IndexAnswers binds them to one reconciled connection and has the same
methods as disk.fallback.DiskAnswers, so the Store asks either the same way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

from fleetbox_db.index import reservations
from fleetbox_db.index.connection import one_read
from fleetbox_db.index.members import go_order
from fleetbox_db.index.names import BYTE_ORDER, key_of, name_of, stored, stored_key
from fleetbox_db.index.rows import CONFIG_COLUMNS, vm_from_row
from fleetbox_db.index.vmcache import RowId, VMCache
from fleetbox_db.records import VM, Conflict, Entry, Fixture, Key, MemberState, built_fixture
from fleetbox_db.rules.gojson import decode_json_value
from fleetbox_db.rules.ipam import Subnet, format_ipv4, marked
from fleetbox_db.rules.layout import member_label

__all__ = [
    "IndexAnswers",
    "address_unknown",
    "all_members",
    "conflicts",
    "entries",
    "free_ranges",
    "holders_of_ip",
    "holders_of_mac",
    "ip_in_range",
    "member_names",
    "members_where",
    "names_in_state",
    "stray_labels",
    "unreadable_reasons",
]


class IndexAnswers:
    """The Store's questions answered from an index the caller has just reconciled."""

    def __init__(self, conn: sqlite3.Connection, cache: VMCache, version: object) -> None:
        self.conn = conn
        self._cache = cache
        self._version = version

    def vms(self) -> list[VM]:
        return self._cache.vms(self.conn, self._version)

    def member_names(self, cluster: str) -> list[str]:
        return member_names(self.conn, cluster)

    def entries(self, cluster: str | None = None) -> list[Entry]:
        with one_read(self.conn):
            if cluster is not None:  # its rows alone, each VM from its columns
                return marked(members_where(self.conn, "cluster", cluster), conflicts(self.conn))
            return entries(self.conn, self._cache.by_row(self.conn, self._version))

    def named(self, name: str) -> list[Entry]:
        with one_read(self.conn):
            return marked(members_where(self.conn, "name", name), conflicts(self.conn))

    def free_ranges(self, net: Subnet, limit: int | None) -> list[tuple[int, int]]:
        return free_ranges(self.conn, net, limit)

    def who_has(self, ip: int | None, mac: str | None) -> str | None:
        if ip is not None:
            holders = holders_of_ip(self.conn, ip)
            return holders[0].name if holders else reservations.holder(self.conn, ip)
        assert mac is not None
        holders = holders_of_mac(self.conn, mac)
        return holders[0].name if holders else None

    def holders(self, ip: int | None, mac: str | None) -> list[str]:
        if ip is None:
            assert mac is not None
            return [member_label(k) for k in holders_of_mac(self.conn, mac)]
        found = [member_label(k) for k in holders_of_ip(self.conn, ip)]
        reserved = reservations.holder(self.conn, ip)
        if reserved is not None and reserved not in found:
            found.append(reserved)
        return found


def entries(conn: sqlite3.Connection, made: Mapping[RowId, VM] | None = None) -> list[Entry]:
    """Every member directory with its state and last good config; *made*: VMs already
    made for rows, by (row id, digest) (the VM cache's)."""
    with one_read(conn):
        return marked(all_members(conn, made), conflicts(conn))


def all_members(conn: sqlite3.Connection, made: Mapping[RowId, VM] | None = None) -> list[Entry]:
    """Every row as recorded (state, last good config or None), in Go List() order; a row's
    VM from *made* when it holds one for that very (row id, digest), else from its columns.
    """
    order = go_order(conn)  # the unique index's order, not a sort, unless a name is raw bytes
    vm_of: dict[int, VM] = {}
    rows: list[tuple[Any, ...]] = []
    if made is None:
        fixtures = _fixtures_by_member(conn, "1")
        for mid, cluster, name, state, reason, *columns in conn.execute(
            f"SELECT id, cluster, name, state, reason, {CONFIG_COLUMNS} FROM members"
            f" ORDER BY {order}"
        ):
            rows.append((mid, cluster, name, state, reason))
            if columns[0] is not None:  # config_name: the row holds a config
                vm_of[mid] = vm_from_row(columns, fixtures.get(mid, []))
    else:
        # Without their config columns: the VMs come from the cache, the few others (a row
        # newer than the cache, an unreadable member's last good config) from their columns.
        rows = conn.execute(
            f"SELECT id, cluster, name, state, reason, digest, config_name IS NOT NULL"
            f" FROM members ORDER BY {order}"
        ).fetchall()
        others = []
        for mid, _, _, _, _, digest, has_config in rows:
            if has_config:
                vm = made.get((mid, digest))
                if vm is None:
                    others.append(mid)
                else:
                    vm_of[mid] = vm
        vm_of.update(_vms_of(conn, others))
    return _entries(rows, vm_of)


def members_where(
    conn: sqlite3.Connection, column: Literal["cluster", "name"], value: str
) -> list[Entry]:
    """The rows whose *column* (cluster or name) is *value*, in Go List() order: what `ls
    --cluster` and `show` need, without making every member's VM."""
    rows = conn.execute(
        "SELECT id, cluster, name, state, reason, config_name IS NOT NULL FROM members"
        f" WHERE {column} = ? ORDER BY {BYTE_ORDER}",
        (stored(value),),
    ).fetchall()
    return _entries(rows, _vms_of(conn, [r[0] for r in rows if r[5]]))


def _entries(rows: Iterable[Sequence[Any]], vm_of: Mapping[int, VM]) -> list[Entry]:
    """Entries of rows that begin (id, cluster, name, state, reason), with their VMs."""
    return [
        Entry(
            name_of(r[2]),
            name_of(r[1]),
            r[3],
            vm_of.get(r[0]),
            r[4] if r[3] == MemberState.UNREADABLE else None,
        )
        for r in rows
    ]


def _vms_of(conn: sqlite3.Connection, ids: list[int]) -> dict[int, VM]:
    """The VMs of the rows with *ids* (each holds a config), from their columns."""
    found: dict[int, VM] = {}
    for start in range(0, len(ids), 500):  # bounded IN lists
        where = f"id IN ({', '.join(str(int(i)) for i in ids[start : start + 500])})"
        fixtures = _fixtures_by_member(conn, where)
        for mid, *columns in conn.execute(
            f"SELECT id, {CONFIG_COLUMNS} FROM members WHERE {where}"
        ):
            found[mid] = vm_from_row(columns, fixtures.get(mid, []))
    return found


def unreadable_reasons(conn: sqlite3.Connection) -> dict[str, str]:
    """Why each unreadable member cannot be read, by name, in Go List() order."""
    rows = conn.execute(
        f"SELECT name, reason FROM members WHERE state = ? ORDER BY {BYTE_ORDER}",
        (str(MemberState.UNREADABLE),),
    )
    return {name_of(name): reason for name, reason in rows if reason is not None}


def stray_labels(conn: sqlite3.Connection) -> list[str]:
    """Every stray directory as cluster/name, in Go List() order."""
    rows = conn.execute(
        f"SELECT cluster, name FROM members WHERE state = ? ORDER BY {BYTE_ORDER}",
        (str(MemberState.STRAY),),
    )
    return [member_label(key_of(c, n)) for c, n in rows]


def _fixtures_by_member(conn: sqlite3.Connection, where: str) -> dict[int, list[Fixture]]:
    """Fixtures of the members matching the SQL condition *where*, by member id, in order."""
    fixtures: dict[int, list[Fixture]] = {}
    for mid, host, guest, label, extra in conn.execute(
        "SELECT member_id, host_path, guest_path, label, extra FROM fixtures"
        f" WHERE member_id IN (SELECT id FROM members WHERE {where})"
        " ORDER BY member_id, position"
    ):
        fixture = built_fixture(host, guest, label, decode_json_value(extra) if extra else {})
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
    """Every IP and MAC claimed by more than one member directory's config: the SQL form of
    rules.ipam.conflicts_among (ip_int and mac_key are its ip_key and mac_key)."""
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


def free_ranges(conn: sqlite3.Connection, net: Subnet, limit: int | None) -> list[tuple[int, int]]:
    """Gaps (start, stop inclusive) between taken addresses among *net*'s hosts, ascending:
    rules.ipam.free_ranges over every config's and reservation's address.

    With a limit, SQLite finds the first gaps' starts with the ip_int indexes and each one's
    end with one more lookup; without one, every gap with a window function. Either way a
    /16 with tens of thousands of members is never enumerated address by address.
    """
    first, last = net.first_host, net.last_host
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
    if limit <= 0:
        return []
    bounds = {"first": first, "last": last, "limit": limit}
    with one_read(conn):
        # A gap starts right after a taken address (or the first host) that is not followed
        # by another: SQLite tests each taken address against the two ip_int indexes, where
        # a walk of them in Python took 3.9 ms for 10,000 taken (2.4 ms this way).
        starts = conn.execute(
            "WITH taken(v) AS ("
            " SELECT :first - 1"
            " UNION ALL SELECT ip_int FROM members WHERE ip_int BETWEEN :first AND :last"
            " UNION ALL SELECT ip_int FROM reservations WHERE ip_int BETWEEN :first AND :last)"
            " SELECT DISTINCT v + 1 FROM taken WHERE v < :last"
            " AND NOT EXISTS (SELECT 1 FROM members WHERE ip_int = v + 1)"
            " AND NOT EXISTS (SELECT 1 FROM reservations WHERE ip_int = v + 1)"
            " ORDER BY 1 LIMIT :limit",
            bounds,
        ).fetchall()
        return [(start, _next_taken(conn, start, last) - 1) for (start,) in starts]


def _next_taken(conn: sqlite3.Connection, after: int, last: int) -> int:
    """The lowest taken address above *after* up to *last*, else last + 1."""
    row = conn.execute(
        "SELECT (SELECT min(ip_int) FROM members WHERE ip_int > :after AND ip_int <= :last),"
        " (SELECT min(ip_int) FROM reservations WHERE ip_int > :after AND ip_int <= :last)",
        {"after": after, "last": last},
    ).fetchone()
    return min([int(v) for v in row if v is not None], default=last + 1)


def ip_in_range(conn: sqlite3.Connection, key: Key, net: Subnet) -> int | None:
    """The address the member's config holds if it is one of *net*'s hosts, else None."""
    row = conn.execute(
        "SELECT ip_int FROM members WHERE cluster = ? AND name = ? AND ip_int BETWEEN ? AND ?",
        (*stored_key(key), net.first_host, net.last_host),
    ).fetchone()
    return None if row is None else int(row[0])


def address_unknown(conn: sqlite3.Connection) -> Key | None:
    """A member whose config could not be read (no signature, no digest: an OS error) and
    that holds no last good config: the address it holds is unknown."""
    row = conn.execute(
        "SELECT cluster, name FROM members WHERE state = ? AND ino IS NULL"
        f" AND digest IS NULL AND config_name IS NULL ORDER BY {BYTE_ORDER} LIMIT 1",
        (str(MemberState.UNREADABLE),),
    ).fetchone()
    return None if row is None else key_of(row[0], row[1])
