"""The reservations table: addresses allocate_ip() handed out that no config holds yet.

Each function is one question or one change over an open sqlite3 connection; transactions
are the caller's. Names go through index.names, as member rows' do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from fleetbox_db.disk.owners import Owner
from fleetbox_db.index.names import name_of, stored
from fleetbox_db.records import Key


@dataclass(frozen=True, slots=True)
class Reservation:
    """An address allocate_ip() handed to *name* in *subnet*, and the process that asked."""

    id: int
    name: str
    subnet: str
    ip_int: int
    owner: Owner


def every(conn: sqlite3.Connection) -> list[Reservation]:
    rows = conn.execute(
        "SELECT id, name, subnet, ip_int, owner_pid, owner_boot, owner_start FROM reservations"
        " ORDER BY id"
    )
    return [Reservation(r[0], name_of(r[1]), r[2], r[3], Owner(*r[4:])) for r in rows]


def for_name(conn: sqlite3.Connection, name: str, subnet: str) -> int | None:
    row = conn.execute(
        "SELECT ip_int FROM reservations WHERE name = ? AND subnet = ?", (stored(name), subnet)
    ).fetchone()
    return None if row is None else int(row[0])


def holder(conn: sqlite3.Connection, ip_int: int) -> str | None:
    row = conn.execute("SELECT name FROM reservations WHERE ip_int = ?", (ip_int,)).fetchone()
    return None if row is None else name_of(row[0])


def add(
    conn: sqlite3.Connection,
    name: str,
    subnet: str,
    ip_int: int,
    owner: Owner,
    now_ns: int,
) -> None:
    conn.execute(
        "INSERT INTO reservations (name, subnet, ip_int, owner_pid, owner_boot, owner_start,"
        " created_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (stored(name), subnet, ip_int, *owner, now_ns),
    )


def delete(conn: sqlite3.Connection, ids: Iterable[int]) -> None:
    conn.executemany("DELETE FROM reservations WHERE id = ?", ((i,) for i in ids))


def release_held(conn: sqlite3.Connection, key: Key) -> None:
    """Drop the reservation of the address the member row of *key* now holds: its config
    claims it itself."""
    conn.execute(
        "DELETE FROM reservations WHERE name = :name AND ip_int ="
        " (SELECT ip_int FROM members WHERE cluster = :cluster AND name = :name)",
        {"cluster": stored(key.cluster), "name": stored(key.name)},
    )


def release(
    conn: sqlite3.Connection, name: str, *, subnet: str | None = None, ip_int: int | None = None
) -> None:
    """Drop the reservations of *name* (all, or in *subnet*, or of *ip_int*): its config now
    holds (or no longer needs) them."""
    conn.execute(
        "DELETE FROM reservations WHERE name = :name"
        " AND (:subnet IS NULL OR subnet = :subnet) AND (:ip IS NULL OR ip_int = :ip)",
        {"name": stored(name), "subnet": subnet, "ip": ip_int},
    )
