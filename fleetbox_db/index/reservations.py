"""The reservations table: addresses allocate_ip() handed out that no config holds yet.

Each function is one question or one change over an open sqlite3 connection; transactions
are the caller's. Names go through index.names, as member rows' do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple

from fleetbox_db.disk import leases
from fleetbox_db.disk.leases import Lease
from fleetbox_db.disk.owners import Owner
from fleetbox_db.index.names import name_of, stored
from fleetbox_db.logs import log
from fleetbox_db.records import Key
from fleetbox_db.rules.ipam import EVERY_ADDRESS, Addresses


class Reservation(NamedTuple):
    """An address allocate_ip() handed to *name* in *subnet*, and the process that asked.

    A tuple, not a frozen dataclass: beside an allocator a reader reads hundreds of them on
    most answers (1.4 ms for 700 as dataclasses), and a tuple of plain values leaves the
    collector's view once it has been looked at."""

    id: int
    name: str
    subnet: str
    ip_int: int
    owner: Owner


_ROWS: Final = (
    "SELECT id, name, subnet, ip_int, owner_pid, owner_boot, owner_start FROM reservations"
)


def every(
    conn: sqlite3.Connection, after: int = 0, within: Addresses = EVERY_ADDRESS
) -> list[Reservation]:
    """Every row by id; with *after*, those past that id only; with *within*, those of
    these addresses only (looked up by the ip_int index)."""
    if within == EVERY_ADDRESS:
        rows = conn.execute(f"{_ROWS} WHERE id > ? ORDER BY id", (after,))
    else:
        rows = conn.execute(
            f"{_ROWS} WHERE ip_int BETWEEN ? AND ? AND id > ? ORDER BY id",
            (within.first, within.last, after),
        )
    new = tuple.__new__  # without the generated constructors: this runs per row
    return [new(Reservation, (r[0], name_of(r[1]), r[2], r[3], new(Owner, r[4:]))) for r in rows]


def caught_up(
    conn: sqlite3.Connection, known: list[Reservation], changes: int
) -> list[Reservation] | None:
    """*known* (every row, by id, some *changes* ago) brought up to date from the ids and the
    rows past its last id alone, when those changes were inserts past that id and deletes;
    None when they may not have been (the caller then reads every row).

    Each insert, update and delete moves member_seq.reservations by one (fleetbox_0009). A
    row past the last id and an id gone each show in the ids; an update, or an id handed out
    again after its row was deleted, does not, so then the ids account for fewer changes
    than were counted. Beside an allocator and a create loop (whose releases are deletes),
    this reads hundreds of ids instead of hundreds of rows."""
    ids = {i for (i,) in conn.execute("SELECT id FROM reservations")}
    kept = [r for r in known if r.id in ids]
    added = every(conn, known[-1].id if known else 0)
    if len(added) + len(known) - len(kept) != changes:
        return None
    return kept + added


def for_name(conn: sqlite3.Connection, name: str, subnet: str) -> int | None:
    row = conn.execute(
        "SELECT ip_int FROM reservations WHERE name = ? AND subnet = ? ORDER BY ip_int LIMIT 1",
        (stored(name), subnet),
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
    """Drop rows only: their leases are gone or dead (the reconciler removes those)."""
    conn.executemany("DELETE FROM reservations WHERE id = ?", ((i,) for i in ids))


@dataclass
class LeaseChanges:
    """The leases a write transaction took, and those whose rows it dropped. Files are not
    transactional: a dropped one is ended under the lock before the commit (disk already
    shows what made it moot: the config that holds its address, or its member removed), and
    one taken is released if the transaction rolls back."""

    taken: list[int] = field(default_factory=list)
    dropped: list[Lease] = field(default_factory=list)

    def end_dropped(self, leases_dir: Path) -> None:
        """Under the write lock, so that no one can take an address anew meanwhile. Best
        effort: it runs after the config is on disk, which an OS error here must not undo
        (a lease file left is dead once we exit, and the next writer removes it)."""
        for lease in self.dropped:
            try:
                leases.end(leases_dir, lease)
            except OSError as exc:
                log.warning("could not end the lease of %s: %s", lease.name, exc)
        self.dropped.clear()

    def roll_back(self, leases_dir: Path) -> None:
        """Best effort, on the way out of a failed write whose error the caller must see."""
        for ip in self.taken:
            try:
                leases.release(leases_dir, ip)
            except OSError as exc:
                log.warning("could not release the lease of %s: %s", ip, exc)


def release_held(conn: sqlite3.Connection, key: Key) -> list[Lease]:
    """Drop the reservation of the address the member row of *key* now holds (its config
    claims it itself); the leases to end."""
    rows = conn.execute(
        "DELETE FROM reservations WHERE name = :name AND ip_int ="
        " (SELECT ip_int FROM members WHERE cluster = :cluster AND name = :name)"
        " RETURNING ip_int, subnet",
        {"cluster": stored(key.cluster), "name": stored(key.name)},
    ).fetchall()
    return [Lease(int(ip), key.name, subnet) for ip, subnet in rows]


def release(conn: sqlite3.Connection, name: str, *, subnet: str | None = None) -> list[Lease]:
    """Drop the reservations of *name*, all or those in *subnet* (its config now holds, or
    no longer needs, them); the leases to end."""
    rows = conn.execute(
        "DELETE FROM reservations WHERE name = :name"
        " AND (:subnet IS NULL OR subnet = :subnet) RETURNING ip_int, subnet",
        {"name": stored(name), "subnet": subnet},
    ).fetchall()
    return [Lease(int(ip), name, subnet_) for ip, subnet_ in rows]


def mirror(conn: sqlite3.Connection, live: Iterable[Lease]) -> None:
    """Rows for live leases the index lacks (it was rebuilt, or quarantined, while their
    owners lived); their owner process is not recorded in the file."""
    conn.executemany(
        "INSERT INTO reservations (name, subnet, ip_int, owner_pid, owner_boot, owner_start,"
        " created_ns) VALUES (?, ?, ?, 0, '', 0, 0)",
        ((stored(lease.name), lease.subnet, lease.ip) for lease in live),
    )
