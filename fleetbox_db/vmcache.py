"""VM records built from index rows, kept by row id and the digest of their config.

A record depends only on its config's bytes, so one built for a (row, digest) stays right
until the row's digest changes; building 10,000 of them from rows cost more than the walk
that every vms() already pays. Callers get copies: they may mutate what they get.
"""

from __future__ import annotations

import copy
import sqlite3
from typing import Final

from fleetbox_db import queries
from fleetbox_db.config import VM, Fixture

#: Above this many missing records, one read of every 'ok' row beats an IN (...) list.
_BY_ID_LIMIT: Final = 500


class VMCache:
    """Per-Store cache; not shared between threads."""

    def __init__(self) -> None:
        self._by_row: dict[tuple[int, str | None], VM] = {}

    def vms(self, conn: sqlite3.Connection) -> list[VM]:
        """Every 'ok' member's VM, in Go List() order, from one read snapshot."""
        with queries.snapshot(conn):
            rows = conn.execute(
                "SELECT id, digest FROM members WHERE state = 'ok' ORDER BY cluster, name"
            ).fetchall()
            cache = self._by_row
            missing = [mid for mid, digest in rows if (mid, digest) not in cache]
            if missing:
                ids = missing if len(missing) <= _BY_ID_LIMIT else None
                cache.update(queries.vms_by_row(conn, ids))
        if len(cache) > len(rows):  # forget rows that changed or went away
            live = set(rows)
            self._by_row = cache = {k: vm for k, vm in cache.items() if k in live}
        return [_copy(cache[key]) for key in rows]


def _copy(vm: VM) -> VM:
    """A copy that shares nothing mutable; 5x faster than copy.deepcopy."""
    new = object.__new__(VM)
    new.__dict__.update(vm.__dict__)
    new.fixtures = [_copy_fixture(f) for f in vm.fixtures]
    new.extra = copy.deepcopy(vm.extra) if vm.extra else {}
    return new


def _copy_fixture(fixture: Fixture) -> Fixture:
    new = object.__new__(Fixture)
    new.__dict__.update(fixture.__dict__)
    new.extra = copy.deepcopy(fixture.extra) if fixture.extra else {}
    return new
