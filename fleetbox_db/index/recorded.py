"""The index as a scan of disk would show it (RecordedScan), kept while the file is unchanged.

Reconciler compares every scan with this list; when they are equal (the common case) a
list() needs no lock, no write and no parse. ``PRAGMA data_version`` says when another
connection wrote, so the list is rebuilt only then.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Final

from fleetbox_db.disk.scan import MemberDir, Signature, collector_paused
from fleetbox_db.index import reservations
from fleetbox_db.index.answers import names_in_state
from fleetbox_db.index.connection import data_version, one_read
from fleetbox_db.index.members import racy_keys, signatures
from fleetbox_db.index.reservations import Reservation
from fleetbox_db.records import Key, MemberState
from fleetbox_db.rules.layout import is_stray

__all__ = ["RecordedScan"]


@dataclass
class RecordedScan:
    """Every row as a scan's MemberDir, the racy keys and the reservations, at one version."""

    conn: sqlite3.Connection
    data_version: int
    entries: list[MemberDir]
    racy: set[Key]
    reservations: list[Reservation]
    _by_key: dict[tuple[str, str], MemberDir] | None = None

    @classmethod
    def load(cls, conn: sqlite3.Connection, granularity_ns: int) -> RecordedScan:
        """Read the snapshot; the collector waits (a row per member, no cycles)."""
        with collector_paused():
            return cls._load(conn, granularity_ns)

    @classmethod
    def _load(cls, conn: sqlite3.Connection, granularity_ns: int) -> RecordedScan:
        version = data_version(conn)
        with one_read(conn):
            rows = signatures(conn)
            racy = racy_keys(conn, granularity_ns)
            held = reservations.every(conn)
            # Rows without a signature need their state (configless or not); usually few.
            unsigned = any(r[2] is None for r in rows)
            configless = set(names_in_state(conn, MemberState.CONFIGLESS)) if unsigned else set()
        # tuple.__new__ skips the NamedTuple constructors: this runs for every row whenever
        # another process wrote, and the constructors were half its cost.
        new, member, signature = tuple.__new__, MemberDir, Signature
        entries = [
            new(member, (c, n, new(signature, (i, s, m, t)), None))
            if i is not None
            else member(c, n, None, _no_file(c, n, configless))
            for c, n, i, s, m, t in rows
        ]
        return cls(conn, version, entries, racy, held)

    def is_current(self, conn: sqlite3.Connection) -> bool:
        """Nobody wrote the index since this was loaded (this connection's own writes aside:
        data_version does not count them, so the Reconciler forgets its snapshot after one)."""
        return self.conn is conn and self.data_version == data_version(conn)

    @property
    def by_key(self) -> dict[tuple[str, str], MemberDir]:
        """The entries by (cluster, name), built on the first diff that needs it."""
        if self._by_key is None:
            self._by_key = {(e[0], e[1]): e for e in self.entries}  # plain tuples: Key's equal
        return self._by_key


class _AnyError(str):
    """Equal to any stat error text (and, with none_too, to None): the index keeps no error
    text, only the fact that a row with no signature was unreadable or stray.

    A str subclass, so == against the scan's str tries this __eq__ first; the no-change
    comparison stays one list == list.
    """

    __slots__ = ()
    none_too = False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) or (self.none_too and other is None)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]


class _AnyErrorOrNone(_AnyError):
    __slots__ = ()
    none_too = True


#: What the scan shows for a row without a signature: "unreadable" means config.json exists
#: but stat or open failed; a stray row looks the same whether its config is missing or not
#: (the reconciler keeps no config for either, so both give the same row).
_NO_FILE: Final[dict[str, str | None]] = {
    MemberState.CONFIGLESS: None,
    MemberState.UNREADABLE: _AnyError(MemberState.UNREADABLE),
    MemberState.STRAY: _AnyErrorOrNone(MemberState.STRAY),
}


def _no_file(cluster: str, name: str, configless: set[str]) -> str | None:
    """What the scan shows as error for a row recorded without a signature."""
    if is_stray(cluster, name):
        return _NO_FILE[MemberState.STRAY]
    return None if name in configless else _NO_FILE[MemberState.UNREADABLE]
