"""VMs read from the index's 'ok' rows, kept by row id and the digest of their config.json.

A config depends only on its file's bytes, so what was read for a (row, digest) stays right
until the row's digest changes. It is kept as an immutable Record and turned into fresh VM
objects on every call: callers may mutate what they get, and building a VM from a record
costs a fraction of fetching and parsing its row again.

Across processes the records are kept in one compact file beside the index (``index.db-vms``,
marshal, by digest): a new process's first vms() loads it instead of fetching and decoding
every row (measured: the fetch was most of a first vms()). It is written by the first reader
that had to read rows the file lacked, so after a change, once. Keyed by the blake2b digest
of the config's bytes, from which every field follows, it can be stale but never wrong: a
digest it lacks is read from the index, and a file that does not load is ignored.
"""

from __future__ import annotations

import logging
import marshal
import os
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

from fleetbox_db.disk.files import chown_to_invoker
from fleetbox_db.disk.scan import collector_paused
from fleetbox_db.index.connection import one_read
from fleetbox_db.index.members import go_order
from fleetbox_db.index.rows import CONFIG_COLUMNS, respell
from fleetbox_db.records import VM, VM_FIELDS, Fixture, MemberState
from fleetbox_db.rules.gojson import decode_json_value
from fleetbox_db.rules.gotime import parse_go_time

__all__ = ["Record", "VMCache"]

log = logging.getLogger("fleetbox_db")

#: Bump when what a stored record holds changes: a file of another format is ignored.
_BLOB_FORMAT: Final = "fleetbox_db vms 1"

#: Ids per IN (...) list when reading missing records; above half the rows, one read of
#: every 'ok' row is cheaper.
_BY_ID_LIMIT: Final = 500

RowId = tuple[int, str | None]  # (row id, digest): what a record is valid for
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
    created_text: str  # created_at as the file spells it
    spelling: str | None  # the spelling column (rows.py): how its strings spelled U+FFFD


assert Record._fields[: len(VM_FIELDS)] == VM_FIELDS


class VMCache:
    """Per-Store cache; not shared between threads. *blob* is the file shared across
    processes (None: none)."""

    def __init__(self, blob: Path | None = None) -> None:
        self._records: dict[RowId, Record] = {}
        self._rows: list[RowId] = []
        self._version: object = None
        self._blob = blob
        self._blob_read = False
        self._blob_used = False

    def vms(self, conn: sqlite3.Connection, version: object = None) -> list[VM]:
        """Every 'ok' member's VM, in Go List() order, from one read of the index.

        *version* names the index state the caller knows is current (the reconciler's);
        while it is unchanged the row list is not read again.
        """
        # Building makes no reference cycles, but tens of thousands of new objects would start
        # collections that traverse the whole cache (measured: a third of the time at 10,000
        # members), so the collector waits until the records are built.
        with collector_paused():
            try:
                return self._build(conn, version)
            except (TypeError, ValueError):
                if not self._blob_used:
                    raise
                # A record from the shared file was not one this code wrote (the file is
                # outside our control): forget everything it gave and read the index.
                log.debug("vms cache %s ignored", self._blob, exc_info=True)
                self._records, self._version, self._blob_used = {}, None, False
                return self._build(conn, version)

    def _build(self, conn: sqlite3.Connection, version: object) -> list[VM]:
        with one_read(conn):
            if version is None or version is not self._version or not self._records:
                self._rows = _row_ids(conn)
                self._version = version
            rows = self._rows
            cache = self._records
            missing = [key for key in rows if key not in cache]
            if missing and not self._blob_read:
                self._blob_read = True
                loaded = _from_blob(self._blob, missing)
                self._blob_used = bool(loaded)
                cache.update(loaded)
                missing = [key for key in missing if key not in cache]
            if len(missing) > max(_BY_ID_LIMIT, len(rows) // 2):
                # Most rows: one read of the table. Each record read is one the cache lacks.
                cache.update(_read_records(conn))
            else:
                # Fewer: by id, in bounded IN lists, so that 1% of 100,000 rows changed does
                # not build all 100,000 records again beside the cached ones (peak RSS).
                for start in range(0, len(missing), _BY_ID_LIMIT):
                    chunk = missing[start : start + _BY_ID_LIMIT]
                    cache.update(_read_records(conn, [mid for mid, _ in chunk]))
        if len(cache) > len(rows):  # forget rows that changed or went away
            live = set(rows)
            self._records = cache = {k: r for k, r in cache.items() if k in live}
        if missing:
            _to_blob(self._blob, cache)
        return [_vm(cache[key]) for key in rows]


def _from_blob(path: Path | None, wanted: list[RowId]) -> dict[RowId, Record]:
    """The records of *wanted* that the shared file holds (by digest); {} when it is missing,
    unreadable or of another format."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            form, stored = marshal.loads(f.read())
        if form != _BLOB_FORMAT or type(stored) is not dict:
            return {}
        found: dict[RowId, Record] = {}
        new = tuple.__new__
        for key in wanted:
            item = stored.get(key[1])
            if item is not None:
                name, mac, cpus, mem, disk, image, text, held, ip, extra, spelling = item
                when = parse_go_time(text)
                fields = (name, mac, cpus, mem, disk, image, when, held, ip, extra, text, spelling)
                found[key] = new(Record, fields)
        return found
    except (OSError, EOFError, ValueError, TypeError):
        # Gone, truncated, or not ours: the rows are read from the index instead.
        log.debug("vms cache %s not used", path, exc_info=True)
        return {}


def _to_blob(path: Path | None, records: dict[RowId, Record]) -> None:
    """Replace the shared file with *records* (written aside, then renamed: a reader sees the
    old file or the new one). Failing to write only costs the next process a slower read."""
    if path is None:
        return
    stored: dict[str, Any] = {
        digest: (*r[:6], r.created_text, r.fixtures, r.ip, r.extra, r.spelling)
        for (_, digest), r in records.items()
        if digest is not None
    }
    temp = Path(f"{path}.{os.getpid()}.{threading.get_ident()}.tmp")  # one per writer
    try:
        temp.write_bytes(marshal.dumps((_BLOB_FORMAT, stored)))
        os.replace(temp, path)
        chown_to_invoker(path)
    except OSError:
        log.debug("vms cache %s not written", path, exc_info=True)
        temp.unlink(missing_ok=True)


_OK: Final = f"state = '{MemberState.OK.value}'"


def _row_ids(conn: sqlite3.Connection) -> list[RowId]:
    """(row id, digest) of every 'ok' row, in Go List() order."""
    return conn.execute(
        f"SELECT id, digest FROM members WHERE {_OK} ORDER BY {go_order(conn)}"
    ).fetchall()


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
    fixtures: dict[int, list[FixtureRecord]] = {}
    for mid, *fixture in conn.execute(
        "SELECT member_id, host_path, guest_path, label, extra FROM fixtures"
        f"{of_members} ORDER BY member_id, position"
    ):
        fixtures.setdefault(mid, []).append(tuple(fixture))
    found: dict[RowId, Record] = {}
    new = tuple.__new__  # skips the NamedTuple constructor: this runs once per row
    for (
        mid,
        digest,
        name,
        mac,
        _,
        cpus,
        mem,
        disk,
        image,
        created,
        ip,
        _,
        extra,
        spelling,
    ) in conn.execute(f"SELECT id, digest, {CONFIG_COLUMNS} FROM members WHERE {where}{order}"):
        when = parse_go_time(created)
        held = tuple(fixtures.get(mid, ()))
        found[(mid, digest)] = new(
            Record, (name, mac, cpus, mem, disk, image, when, held, ip, extra, created, spelling)
        )
    return found


def _vm(record: Record) -> VM:
    """A new VM from a record, without the dataclass __init__ (it would re-default fields).

    The keys are spelled out, not zipped from VM_FIELDS: a literal is twice as fast, and
    this runs for every VM of every vms(); the assert below the function ties the two.
    """
    name, mac, cpus, memory_mb, disk_mb, image, created, fixtures, ip, extra, text, spelling = (
        record
    )
    vm = object.__new__(VM)
    vm.__dict__ = {
        "name": name,
        "mac": mac,
        "cpus": cpus,
        "memory_mb": memory_mb,
        "disk_mb": disk_mb,
        "image": image,
        "created_at": created,
        "fixtures": [_fixture(*f) for f in fixtures] if fixtures else [],
        "ip": ip,
        "extra": decode_json_value(extra) if extra else {},
        "_created_at_raw": (text, created),
    }
    if spelling is not None:
        respell(vm, spelling)
    return vm


_sample = _vm(Record("", "", 0, 0, 0, "", datetime.min, (), "", None, "", None))
assert tuple(vars(_sample))[: len(VM_FIELDS)] == VM_FIELDS
del _sample


def _fixture(host_path: str, guest_path: str, label: str, extra: str | None) -> Fixture:
    fixture = object.__new__(Fixture)
    fixture.__dict__ = {
        "host_path": host_path,
        "guest_path": guest_path,
        "label": label,
        "extra": decode_json_value(extra) if extra else {},
    }
    return fixture
