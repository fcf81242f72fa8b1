"""VM records built from index rows, kept by the digest of the config they came from.

A record depends only on its config's bytes, so one built for a digest stays right for as
long as any member has that digest; building 10,000 of them from rows cost more than the
walk that every vms() already pays. Callers get copies: they may mutate what they get.
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
        self._by_digest: dict[str, VM] = {}

    def vms(self, conn: sqlite3.Connection) -> list[VM]:
        """Every 'ok' member's VM, in Go List() order, from one read snapshot."""
        with queries.snapshot(conn):
            rows = conn.execute(
                "SELECT id, digest FROM members WHERE state = 'ok' ORDER BY cluster, name"
            ).fetchall()
            cache = self._by_digest
            missing = [mid for mid, digest in rows if digest not in cache]
            if missing:
                ids = missing if len(missing) <= _BY_ID_LIMIT else None
                cache.update(queries.vms_by_digest(conn, ids))
        if len(cache) > len(rows):  # forget what no member holds any more
            live = {digest for _, digest in rows}
            self._by_digest = cache = {d: vm for d, vm in cache.items() if d in live}
        return [_copy(cache[digest]) for _, digest in rows]


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
