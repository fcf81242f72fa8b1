"""VMs read from the index's 'ok' rows, kept by row id and the digest of their config.json.

A config depends only on its file's bytes, so what was read for a (row, digest) stays right
until the row's digest changes. It is kept as an immutable Record and turned into fresh VM
objects on every call: callers may mutate what they get. Each VM is made from its record
when first read (lazyvm.py), and a new process's records come from the chunks saved in the
index (vmblob.py), each decoded when one of its VMs is first read.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import accumulate
from typing import Any, Final, NamedTuple

from fleetbox_db.disk.scan import collector_paused
from fleetbox_db.errors import IndexUnavailableError
from fleetbox_db.index import settled, vmblob
from fleetbox_db.index.connection import one_read
from fleetbox_db.index.lazyvm import lazy_vms
from fleetbox_db.index.members import go_order
from fleetbox_db.index.names import BYTE_ORDER
from fleetbox_db.index.rows import respell
from fleetbox_db.records import VM, VM_FIELDS, Fixture, MemberState, built_fixture, built_vm
from fleetbox_db.rules.gojson import decode_json_value
from fleetbox_db.rules.gotime import parse_go_time

__all__ = ["Record", "VMCache"]

#: Ids per IN (...) list when reading missing records; above half the rows (and this
#: many), one read of every 'ok' row is cheaper.
_BY_ID_LIMIT: Final = 500

RowId = vmblob.RowId
FixtureRecord = tuple[str, str, str, str | None]  # host, guest, label, extra JSON


class Record(NamedTuple):
    """A config as the cache keeps it: VM_FIELDS in order, then what rebuilds the rest."""

    name: str
    mac: str
    cpus: int
    memory_mb: int
    disk_mb: int
    image: str
    created_at: datetime
    fixtures: tuple[FixtureRecord, ...]
    ip: str
    extra: str | None  # JSON text of VM.extra
    created_text: str  # created_at as the file spells it (VM._created_at_raw)
    spelling: str | None  # the spelling column (rows.py): how its strings spelled U+FFFD


assert Record._fields[: len(VM_FIELDS)] == VM_FIELDS


class VMCache:
    """Per-Store cache; not shared between threads (the VMs it returns may be)."""

    def __init__(self) -> None:
        self._records: dict[RowId, Record] = {}
        self._rows: list[RowId] = []
        # The (cluster, name) of each of _rows, when known and every name is UTF-8 (str
        # order is then the rows' order): a change merges the rows changed since _seq in.
        self._keys: list[tuple[str, str]] | None = None
        # The records saved in the index, while this cache holds only those: _records and
        # _rows are made from them when a change needs them (_known).
        self._saved: _Saved | None = None
        self._version: object = None
        # The records of _rows, in order, while _rows is unchanged: a call at the same version
        # neither looks each row up nor checks for missing ones again.
        self._ordered: Sequence[Record] | None = None
        # member_seq's value and settled_seq when _rows was read, and the value whose records
        # the index holds saved (vmblob.py) or this cache last offered to save.
        self._seq: int | None = None
        self._settled_at: int | None = None
        self._saved_at: int | None = None

    def vms(self, conn: sqlite3.Connection, version: object = None) -> list[VM]:
        """Every 'ok' member's VM, in Go List() order, from one read of the index.

        *version* names the index state the caller knows is current (the reconciler's);
        while it is unchanged the row list is not read again.
        """
        # Building makes no reference cycles, but tens of thousands of new objects would start
        # collections that traverse the whole cache (measured: a third of the time at 10,000
        # members), so the collector waits until the records are built.
        with collector_paused():
            ordered = self._current(conn, version)
            if isinstance(ordered, _Saved):
                return lazy_vms(ordered.vm_at, range(len(ordered)))
            return lazy_vms(_vm, ordered)

    def by_row(self, conn: sqlite3.Connection, version: object = None) -> dict[RowId, VM]:
        """Every 'ok' member's VM, made now, by (row id, digest): for entries(), whose
        callers read every one (a VM made when first read costs more then)."""
        with collector_paused():
            ordered = self._current(conn, version)
            try:
                rows = ordered.rows() if isinstance(ordered, _Saved) else self._rows
                return {row: _vm(record) for row, record in zip(rows, ordered, strict=True)}
            except (vmblob.Unusable, ValueError, TypeError):
                return {}  # a forged chunk: entries() reads every VM from its columns

    def _current(self, conn: sqlite3.Connection, version: object) -> Sequence[Record]:
        """The records of the rows at *version*, read again only when it moved."""
        if version is None or version is not self._version or self._ordered is None:
            self._ordered = self._records_in_order(conn, version)
        return self._ordered

    def _records_in_order(self, conn: sqlite3.Connection, version: object) -> Sequence[Record]:
        with one_read(conn):
            if not self._records and self._saved is None:
                # The first build: the saved records if they are of these very rows, else one
                # read of every row; either gives both the order and the records.
                self._seq, self._settled_at, self._saved_at = _seqs(conn)
                self._version = version
                chunks = vmblob.saved(conn, self._seq)
                if chunks is not None:
                    self._saved = _Saved(chunks, _path(conn))
                    return self._saved
                if self._saved_at == self._seq:
                    self._saved_at = None  # saved there but unusable: save them again
                self._records = _read_records(conn)
                self._rows, self._keys = list(self._records), None
            elif version is None or version is not self._version:
                self._known(conn)
                seqs = _seqs(conn)
                merged = self._merged(conn, seqs[0])
                self._rows, self._keys = merged if merged is not None else _row_ids(conn)
                self._seq, self._settled_at, self._saved_at = seqs
                self._version = version
            rows = self._rows
            cache = self._records
            missing = [row[0] for row in rows if row not in cache]
            if len(missing) > max(_BY_ID_LIMIT, len(rows) // 2):
                cache.update(_read_records(conn))  # most rows: one read of the table
            else:
                # Fewer: by id, in bounded IN lists, so that 1% of 100,000 rows changed does
                # not build all 100,000 records again beside the cached ones (peak RSS).
                for start in range(0, len(missing), _BY_ID_LIMIT):
                    cache.update(_read_records(conn, missing[start : start + _BY_ID_LIMIT]))
        if len(cache) > len(rows):  # forget rows that changed or went away
            live = set(rows)
            self._records = cache = {k: r for k, r in cache.items() if k in live}
        return [cache[key] for key in rows]

    def _merged(
        self, conn: sqlite3.Connection, seq: int
    ) -> tuple[list[RowId], list[tuple[str, str]]] | None:
        """_rows and _keys with the rows changed since _seq merged in, as _row_ids() would
        read them at *seq*; None when they cannot be told so (no keys, too many changes,
        removals no longer kept, a name that is not UTF-8). Beside writers committing
        between every two answers, reading every row id was most of what vms() added."""
        keys, since = self._keys, self._seq
        if keys is None or since is None:
            return None
        if seq == since:
            return self._rows, keys  # the members did not change (a reservation did)
        if not settled.mergeable(since, seq, settled.recorded(conn)[1], len(keys)):
            return None
        changed = conn.execute(_CHANGED, (since,)).fetchall()
        gone = conn.execute(settled.REMOVED_SINCE, (since,)).fetchall()
        if not all(type(c) is str and type(n) is str for c, n, *_ in changed + gone):
            return None  # a BLOB name: its SQL order is not str order
        rows, keys = list(self._rows), list(keys)
        for c, n, *_ in gone + changed:
            at = bisect_left(keys, (c, n))
            if at < len(keys) and keys[at] == (c, n):
                del keys[at], rows[at]
        for c, n, row_id, digest, state in changed:
            if state == _OK_STATE:
                at = bisect_left(keys, (c, n))
                keys.insert(at, (c, n))
                rows.insert(at, (row_id, digest))
        return rows, keys

    def _known(self, conn: sqlite3.Connection) -> None:
        """Make _records of the saved records, once a change needs them by row; from the
        rows when a chunk's records are not as this code writes them."""
        saved, self._saved = self._saved, None
        if saved is not None:
            try:
                self._records = saved.by_row()
            except (vmblob.Unusable, ValueError, TypeError):
                self._records = _read_records(conn)

    def unsaved(self) -> tuple[int, Iterator[bytes]] | None:
        """(member_seq value, chunks made as they are read) of the records last answered,
        when the index was settled at that value and holds no records saved at it
        (vmblob.py); offered once per value, so a busy write lock leaves them to the next
        reader."""
        seq, ordered = self._seq, self._ordered
        if seq is None or ordered is None or self._settled_at != seq or self._saved_at == seq:
            return None
        if isinstance(ordered, _Saved):
            return None  # saved at another value yet used: cannot happen (vmblob.saved)
        self._saved_at = seq
        return seq, vmblob.encode(self._rows, map(_values, ordered), len(ordered))


class _Saved(Sequence[Record]):
    """The records saved in the index, in order, each chunk's decoded when first needed."""

    def __init__(self, chunks: list[vmblob.Chunk], path: str) -> None:
        self._chunks = chunks
        self._path = path
        self._starts = list(accumulate((chunk.size for chunk in chunks), initial=0))
        self._decoded: list[list[Record] | None] = [None] * len(chunks)
        self._rows: list[RowId] | None = None

    def __len__(self) -> int:
        return self._starts[-1]

    def __iter__(self) -> Iterator[Record]:
        for number in range(len(self._chunks)):
            yield from self._chunk(number)

    def __getitem__(self, at: Any) -> Any:
        if not isinstance(at, int) or not 0 <= at < len(self):
            raise IndexError(at)
        number = bisect_right(self._starts, at) - 1
        return self._chunk(number)[at - self._starts[number]]

    def vm_at(self, at: int) -> VM:
        try:
            return _vm(self[at])
        except (vmblob.Unusable, ValueError, TypeError) as exc:
            # A chunk with a right checksum and this code's format, yet other records: a
            # forgery, which the rows cannot be read in place of here.
            raise _forged(self._path, exc) from None

    def by_row(self) -> dict[RowId, Record]:
        """Every record by (row id, digest); raises Unusable as a chunk does."""
        return dict(zip(self.rows(), self, strict=True))

    def rows(self) -> list[RowId]:
        """Every record's (row id, digest), in order; raises Unusable as a chunk does."""
        if self._rows is None:
            self._rows = [row for chunk in self._chunks for row in chunk.rows()]
        return self._rows

    def _chunk(self, number: int) -> list[Record]:
        records = self._decoded[number]
        if records is None:
            # Decoded by whichever thread first reads one of its VMs; two threads at once
            # decode it twice, to equal records.
            with collector_paused():
                records = list(map(_record, self._chunks[number].values()))
            self._decoded[number] = records
        return records


def _forged(path: str, exc: Exception) -> IndexUnavailableError:
    return IndexUnavailableError(
        f"{path}: the VM records saved in its vm_records table are not as fleetbox_db"
        f" writes them ({exc}); delete the file (the index is rebuilt from disk)",
        path=path,
    )


_OK: Final = f"state = '{MemberState.OK.value}'"
_OK_STATE: Final = MemberState.OK.value


def _path(conn: sqlite3.Connection) -> str:
    """The index file *conn* reads (for an error message)."""
    return str(conn.execute("PRAGMA database_list").fetchone()[2])


def _seqs(conn: sqlite3.Connection) -> tuple[int, int | None, int | None]:
    """(member_seq's value, its settled_seq, the value of the saved records if any)."""
    row = conn.execute(
        "SELECT value, settled_seq, (SELECT seq FROM vm_records WHERE id = 0)"
        " FROM member_seq WHERE id = 1"
    ).fetchone()
    return int(row[0]), row[1], row[2]


def _record(values: vmblob.Values) -> Record:
    """The record of values laid out as vmblob.Values (_values)."""
    name, mac, cpus, mem, disk, image, created, held, ip, extra, spelling = values
    when = parse_go_time(created)
    # tuple.__new__ skips the NamedTuple constructor: this runs once per row
    return _new(
        Record,
        (name, mac, cpus, mem, disk, image, when, held, ip, extra, created, spelling),
    )


_new: Final = tuple.__new__


def _values(record: Record) -> vmblob.Values:
    """*record* laid out as _made() reads it back (vmblob.Values)."""
    name, mac, cpus, mem, disk, image, _, held, ip, extra, created, spelling = record
    return (name, mac, cpus, mem, disk, image, created, held, ip, extra, spelling)


#: A row's id, digest and record as vmblob.Values lays it out, less its fixtures.
_ROW: Final = (
    "id, digest, config_name, mac, cpus, memory_mb, disk_mb, image, created_at, ip, extra, spelling"
)


def _row_ids(conn: sqlite3.Connection) -> tuple[list[RowId], list[tuple[str, str]] | None]:
    """(row id, digest) of every 'ok' row, in Go List() order, and their (cluster, name)
    unless a name is not UTF-8 (VMCache._merged then cannot place a change by str order)."""
    order = go_order(conn)
    found = conn.execute(
        f"SELECT id, digest, cluster, name FROM members WHERE {_OK} ORDER BY {order}"
    ).fetchall()
    rows = [(row_id, digest) for row_id, digest, _, _ in found]
    return rows, None if order is BYTE_ORDER else [(c, n) for _, _, c, n in found]


#: Rows changed since a change number (members.seq).
_CHANGED: Final = "SELECT cluster, name, id, digest, state FROM members WHERE seq > ?"


def _read_records(
    conn: sqlite3.Connection, ids: Sequence[int] | None = None
) -> dict[RowId, Record]:
    """Records of 'ok' rows: those with *ids*, or all of them in Go List() order."""
    where = _OK
    if ids is not None:
        where += f" AND id IN ({', '.join(str(int(i)) for i in ids)})"
    order = "" if ids is not None else f" ORDER BY {go_order(conn)}"
    # All rows: every fixture, without the subquery (a third cheaper); those of rows in
    # other states are never looked up.
    of_members = (
        "" if ids is None else f" WHERE member_id IN (SELECT id FROM members WHERE {where})"
    )
    fixtures: dict[int, tuple[FixtureRecord, ...] | list[FixtureRecord]] = {}
    # Rows hold each value as its own object: the values members mostly share (image,
    # sizes, guest paths, labels) are made one object here, so the cached records, the VMs
    # made from them and the chunks saved from them (marshal writes a repeat as a
    # reference) hold them once.
    shared: dict[Any, Any] = {}  # str and int values: never equal across the two types
    one = shared.setdefault
    for mid, host, guest, label, extra in conn.execute(
        "SELECT member_id, host_path, guest_path, label, extra FROM fixtures"
        f"{of_members} ORDER BY member_id, position"
    ):
        fixture = (host, one(guest, guest), one(label, label), extra)
        # A member's one fixture in a tuple, kept as the record's: a list per member as well
        # was 7 MB more at the peak of a first vms() of 100,000 members.
        held = fixtures.get(mid)
        if held is None:
            fixtures[mid] = (fixture,)
        elif isinstance(held, list):
            held.append(fixture)
        else:
            fixtures[mid] = [*held, fixture]
    found: dict[RowId, Record] = {}
    rows = conn.execute(f"SELECT {_ROW} FROM members WHERE {where}{order}")
    for mid, digest, name, mac, cpus, mem, disk, image, created, ip, extra, spelling in rows:
        found[(mid, digest)] = _record(
            (name, mac, one(cpus, cpus), one(mem, mem), one(disk, disk), one(image, image),
             created, held if type(held := fixtures.get(mid, ())) is tuple else tuple(held),
             ip, extra, spelling)
        )  # fmt: skip
    return found


def _vm(record: Record) -> VM:
    """A new VM from a record (records.built_vm: no dataclass __init__ per member)."""
    name, mac, cpus, memory_mb, disk_mb, image, created, fixtures, ip, extra, text, spelling = (
        record
    )
    vm = built_vm(
        name,
        mac,
        cpus,
        memory_mb,
        disk_mb,
        image,
        created,
        [_fixture(*f) for f in fixtures] if fixtures else [],
        ip,
        decode_json_value(extra) if extra else {},
    )
    vm._created_at_raw = (text, created)
    if spelling is not None:
        respell(vm, spelling)
    return vm


def _fixture(host_path: str, guest_path: str, label: str, extra: str | None) -> Fixture:
    return built_fixture(host_path, guest_path, label, decode_json_value(extra) if extra else {})
