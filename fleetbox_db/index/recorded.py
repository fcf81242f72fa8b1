"""The index as a scan of disk would show it (RecordedScan), kept while the file is unchanged.

Reconciler compares every scan with this list; when they are equal (the common case) a
list() needs no lock, no write and no parse. ``PRAGMA data_version`` says when another
connection wrote, so the list is brought up to date only then.

Under contention another process commits several times a second, and reading all 10,000
rows again each time was a fifth of a reader's call (issue 12). Triggers (migration
fleetbox_0007) stamp every inserted or changed row with the next number of member_seq and
record every deleted key with its number, so refreshed() reads only the rows and removals
past the number this scan reflects and merges them into its sorted entries. Whenever that
merge could differ from a full load - raw names (SQL and Python order them differently),
removals trimmed past this scan's number, a schema change, many changes - it loads all.
The reservations are read again only when member_seq.reservations moved (fleetbox_0009).
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

from fleetbox_db.disk.scan import MemberDir, Signature, collector_paused
from fleetbox_db.index import reservations, settled
from fleetbox_db.index.answers import names_in_state
from fleetbox_db.index.connection import data_version, one_read, schema_version
from fleetbox_db.index.members import go_order, has_raw_names, racy_keys, signatures
from fleetbox_db.index.names import BYTE_ORDER
from fleetbox_db.index.reservations import Reservation
from fleetbox_db.records import Key, MemberState
from fleetbox_db.rules.ipam import EVERY_ADDRESS, Addresses
from fleetbox_db.rules.layout import is_stray

__all__ = ["RecordedScan"]

CONFIGLESS: Final = str(MemberState.CONFIGLESS)


@dataclass
class RecordedScan:
    """Every row as a scan's MemberDir, the racy keys and the reservations, at one version."""

    conn: sqlite3.Connection
    data_version: int
    entries: list[MemberDir]
    racy: set[Key]
    reservations: list[Reservation]
    seq: int  # member_seq's value this scan reflects
    reserved: int  # member_seq.reservations when they were read: re-read when it moves
    schema: int  # PRAGMA schema_version then: a migration may have reset member_seq
    raw: bool  # some name is not UTF-8: entries are in byte order, not Python's str order
    # Loaded inside a transaction, which may hold this connection's uncommitted writes: never
    # a base for refreshed() (the transaction may have rolled back, and its numbers been
    # handed out again).
    in_transaction: bool
    # member_seq.reservations at this version: past `reserved` when a refresh for an answer
    # that involves no address left the reservations as they were (see refreshed()).
    reserved_now: int
    # member_seq.settled_seq: the change number a scan's digest was recorded at
    # (index/settled.py); the Reconciler records one when it differs from seq.
    settled_at: int | None = None
    _by_key: dict[tuple[str, str], MemberDir] | None = None
    # The rows of some addresses only, read at reserved_now, while `reservations` is older:
    # for an answer about those addresses (who_has: one; free_ips: a subnet's).
    ranged: tuple[Addresses, list[Reservation]] | None = None

    @property
    def reservations_current(self) -> bool:
        return self.reserved_now == self.reserved

    def reservations_of(self, within: Addresses) -> list[Reservation] | None:
        """The reservations as of this version, of the addresses *within* at least (a
        caller filters); None when they were not read for them."""
        if self.reservations_current:
            return self.reservations
        return self.ranged[1] if self.ranged is not None and _for(self.ranged, within) else None

    @classmethod
    def load(cls, conn: sqlite3.Connection, granularity_ns: int) -> RecordedScan:
        """Read the snapshot; the collector waits (a row per member, no cycles)."""
        with collector_paused():
            return cls._load(conn, granularity_ns)

    @classmethod
    def _load(cls, conn: sqlite3.Connection, granularity_ns: int) -> RecordedScan:
        version = data_version(conn)
        in_transaction = conn.in_transaction
        with one_read(conn):
            seq, _, reserved, settled_at, _ = settled.recorded(conn)
            schema = schema_version(conn)
            order = go_order(conn)
            rows = signatures(conn, order)
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
        raw = order is BYTE_ORDER
        return cls(
            conn, version, entries, racy, held, seq, reserved, schema, raw, in_transaction,
            reserved, settled_at,
        )  # fmt: skip

    @classmethod
    def settled(
        cls, conn: sqlite3.Connection, members: list[MemberDir], granularity_ns: int
    ) -> RecordedScan | None:
        """The index as *members* (a scan of disk) shows it, without reading its rows, when
        a reader recorded this scan's digest at the index's current change number (no row
        racy then: index/settled.py); else None."""
        version = data_version(conn)
        in_transaction = conn.in_transaction
        with one_read(conn):
            seq, _, reserved, settled_at, known = settled.recorded(conn)
            if settled_at != seq or known is None:
                return None
            schema = schema_version(conn)
            if settled.digest(members, granularity_ns, schema) != known:
                return None
            raw = has_raw_names(conn)
            held = reservations.every(conn)
        return cls(
            conn, version, list(members), set(), held, seq, reserved, schema, raw,
            in_transaction, reserved, seq,
        )  # fmt: skip

    def refreshed(
        self,
        conn: sqlite3.Connection,
        granularity_ns: int,
        leases: Addresses | None = EVERY_ADDRESS,
    ) -> RecordedScan:
        """The index as it is now: this scan with only the rows changed since merged in when
        that gives what load() would, else load(). The reservations are brought up to date
        for the addresses *leases*: all, or only those (`ranged`), or, None, none: left as
        they were (not reservations_current), for an answer that involves no address. Beside
        an allocator and a create loop they changed before nearly every answer, and the
        create loop's releases hand ids out again, so all were read again each time."""
        with collector_paused():
            fresh = self._refreshed(conn, granularity_ns, leases)
            return fresh if fresh is not None else self._load(conn, granularity_ns)

    def carried_to(
        self, copy: sqlite3.Connection, schema: int | None, granularity_ns: int
    ) -> RecordedScan:
        """The index as *copy* holds it: an in-memory copy of this scan's file taken since,
        when the file's schema version was *schema* (None: unknown). The copy has the file's
        change numbers, so the rows changed since are merged in as refreshed() does, else
        every row is loaded; this scan is left as it was, for the file."""
        with collector_paused():
            fresh = None
            if schema is not None:
                fresh = self._refreshed(copy, granularity_ns, EVERY_ADDRESS, schema)
            return fresh if fresh is not None else self._load(copy, granularity_ns)

    def _refreshed(
        self,
        conn: sqlite3.Connection,
        granularity_ns: int,
        leases: Addresses | None,
        copy_schema: int | None = None,
    ) -> RecordedScan | None:
        """*copy_schema*: *conn* is a copy of this scan's file (carried_to()), whose own
        schema version says nothing (a backup sets it anew), taken at that one."""
        if self.raw or self.in_transaction:
            return None
        if copy_schema is None and self.conn is not conn:
            return None
        version = data_version(conn)
        in_transaction = conn.in_transaction
        with one_read(conn):
            seq, kept, reserved, settled_at, _ = settled.recorded(conn)
            schema = schema_version(conn) if copy_schema is None else copy_schema
            if schema != self.schema or not settled.mergeable(
                self.seq, seq, kept, len(self.entries)
            ):
                return None
            entries, racy, by_key = self.entries, self.racy, self._by_key
            if seq != self.seq:
                changed = conn.execute(_CHANGED, (granularity_ns, self.seq)).fetchall()
                removed = conn.execute(settled.REMOVED_SINCE, (self.seq,)).fetchall()
                merged = _merged(self.entries, changed, removed)
                if merged is None:
                    return None
                entries = merged
                # Racy-ness is a function of a row's own columns, so only changed rows can
                # have gained or lost it: no read of the whole table.
                racy = set(racy)
                racy.difference_update(Key(*k) for k in removed)
                for c, n, *_, is_racy in changed:
                    (racy.add if is_racy else racy.discard)(Key(c, n))
                if by_key is not None:  # carried over: a copy is cheaper than a rebuild
                    by_key = _merged_by_key(by_key, entries, changed, removed)
            # Read again only when a trigger moved the count: beside an allocator holding
            # 700, reading them took 1.3 ms, about twice per contended answer. Inserts and
            # deletes alone: their ids and the new rows are read.
            held, held_at = self.reservations, self.reserved
            ranged = self.ranged if reserved == self.reserved_now else None
            if leases == EVERY_ADDRESS and reserved != held_at:
                got = reservations.caught_up(conn, held, reserved - held_at)
                held = got if got is not None else reservations.every(conn)
                held_at = reserved
            elif leases is not None and reserved != held_at and not _for(ranged, leases):
                # Those addresses' rows alone, by the ip_int index, in this read.
                ranged = (leases, reservations.every(conn, within=leases))
        return RecordedScan(
            conn, version, entries, racy, held, seq, held_at, self.schema, False, in_transaction,
            reserved, settled_at, by_key, ranged,
        )  # fmt: skip

    def is_current(self, conn: sqlite3.Connection) -> bool:
        """Nobody wrote the index since this was loaded (this connection's own writes aside:
        data_version does not count them, so the Reconciler refreshes its scan after one)."""
        return self.conn is conn and self.data_version == data_version(conn)

    @property
    def by_key(self) -> dict[tuple[str, str], MemberDir]:
        """The entries by (cluster, name), built on the first diff that needs it."""
        if self._by_key is None:
            self._by_key = {(e[0], e[1]): e for e in self.entries}  # plain tuples: Key's equal
        return self._by_key


def _for(ranged: tuple[Addresses, list[Reservation]] | None, within: Addresses) -> bool:
    return ranged is not None and ranged[0] == within


_CHANGED: Final = (
    "SELECT cluster, name, ino, size, mtime_ns, ctime_ns, state,"
    " mtime_ns IS NOT NULL AND max(mtime_ns, ctime_ns) + ? > verified_ns"  # members.racy_keys
    " FROM members WHERE seq > ?"
)
_key: Final = itemgetter(0, 1)


def _merged(
    entries: list[MemberDir], changed: list[tuple[Any, ...]], removed: list[tuple[Any, ...]]
) -> list[MemberDir] | None:
    """*entries* with *removed* keys dropped and *changed* rows put at their sorted place;
    None when a name is not UTF-8 (a BLOB), whose SQL order Python's str order is not.

    Entries are in SQL's BINARY order of TEXT, UTF-8 byte order, which is Python's order of
    the decoded str (code points), so bisect finds the place load() would give. A key both
    removed and changed was deleted and made again: its row is what the file holds now.
    """
    if any(not (isinstance(k, str) and isinstance(n, str)) for k, n, *_ in changed + removed):
        return None
    result = list(entries)
    for key in removed:
        i = bisect_left(result, key, key=_key)
        if i < len(result) and _key(result[i]) == key:
            del result[i]
    for c, n, i_, s, m, t, state, _ in changed:
        if i_ is not None:
            entry = MemberDir(c, n, Signature(i_, s, m, t), None)
        else:
            entry = MemberDir(c, n, None, _no_file(c, n, {n} if state == CONFIGLESS else set()))
        i = bisect_left(result, (c, n), key=_key)
        if i < len(result) and _key(result[i]) == (c, n):
            result[i] = entry
        else:
            result.insert(i, entry)
    return result


def _merged_by_key(
    by_key: dict[tuple[str, str], MemberDir],
    entries: list[MemberDir],
    changed: list[tuple[Any, ...]],
    removed: list[tuple[Any, ...]],
) -> dict[tuple[str, str], MemberDir]:
    """*by_key* with the merge applied: removed keys dropped, changed ones taken from the
    merged *entries* (which hold the key if the row exists)."""
    result = dict(by_key)
    for key in removed:
        result.pop((key[0], key[1]), None)
    for c, n, *_ in changed:
        i = bisect_left(entries, (c, n), key=_key)
        result[(c, n)] = entries[i]
    return result


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
