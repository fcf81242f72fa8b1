"""Configs read from index rows, kept by row id and the digest of their config.json.

A config depends only on its file's bytes, so what was read for a (row, digest) stays right
until the row's digest changes. It is kept as an immutable record and turned into fresh VM
objects on every call: callers may mutate what they get, and building a VM from a record
costs a fraction of fetching and parsing its row again.
"""

from __future__ import annotations

import gc
import sqlite3
from typing import Final

from fleetbox_db import queries
from fleetbox_db.config import VM, Fixture
from fleetbox_db.gojson import decode_json_value
from fleetbox_db.queries import Record

#: Above this many missing records, one read of every 'ok' row beats an IN (...) list.
_BY_ID_LIMIT: Final = 500


class VMCache:
    """Per-Store cache; not shared between threads."""

    def __init__(self) -> None:
        self._records: dict[tuple[int, str | None], Record] = {}
        self._rows: list[tuple[int, str | None]] = []
        self._version: object = None

    def vms(self, conn: sqlite3.Connection, version: object = None) -> list[VM]:
        """Every 'ok' member's VM, in Go List() order, from one read snapshot.

        *version* names the index state the caller knows is current (the reconciler's
        snapshot); while it is unchanged the row list is not read again.
        """
        # Building makes no reference cycles, but tens of thousands of new objects would start
        # collections that traverse the whole cache (measured: a third of the time at 10,000
        # members), so the collector waits until the records are built.
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._build(conn, version)
        finally:
            if paused:
                gc.enable()

    def _build(self, conn: sqlite3.Connection, version: object) -> list[VM]:
        with queries.snapshot(conn):
            if not self._records:
                # The first build: one read of every row gives both the order and the records.
                self._records = queries.records(conn)
                self._rows = list(self._records)
                self._version = version
            elif version is None or version is not self._version:
                self._rows = queries.record_keys(conn)
                self._version = version
            rows = self._rows
            cache = self._records
            missing = [mid for mid, digest in rows if (mid, digest) not in cache]
            if missing:
                ids = missing if len(missing) <= _BY_ID_LIMIT else None
                cache.update(queries.records(conn, ids))
        if len(cache) > len(rows):  # forget rows that changed or went away
            live = set(rows)
            self._records = cache = {k: r for k, r in cache.items() if k in live}
        return [_vm(cache[key]) for key in rows]


def _vm(record: Record) -> VM:
    """A new VM from a record, without the dataclass __init__ (it would re-default fields)."""
    name, mac, cpus, memory_mb, disk_mb, image, created, text, fixtures, ip, extra = record
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
    return vm


def _fixture(host_path: str, guest_path: str, label: str, extra: str | None) -> Fixture:
    fixture = object.__new__(Fixture)
    fixture.__dict__ = {
        "host_path": host_path,
        "guest_path": guest_path,
        "label": label,
        "extra": decode_json_value(extra) if extra else {},
    }
    return fixture
