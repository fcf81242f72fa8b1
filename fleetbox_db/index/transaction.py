"""The write transaction a Store write runs in (Mirror.write opens it; store.py uses it).

While it is open no other process can claim a name, an IP or a MAC, so a check made here
still holds at the write; the leases it takes and drops are noted for after the commit.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fleetbox_db.disk.observe import observe_written
from fleetbox_db.disk.scan import Signature
from fleetbox_db.index import allocation, members, reservations
from fleetbox_db.index.reconcile import Reconciler
from fleetbox_db.logs import log
from fleetbox_db.records import VM, Key
from fleetbox_db.rules.ipam import Subnet

__all__ = ["WriteTransaction"]


class WriteTransaction:
    """The open write transaction a Store write runs in: while it is open no other process
    can claim a name, an IP or a MAC, so a check made here still holds at the write."""

    def __init__(self, conn: sqlite3.Connection, reconciler: Reconciler) -> None:
        self._conn = conn
        self._reconciler = reconciler
        self.leases = reservations.LeaseChanges()
        #: A config has been renamed into place: from here on the write has happened, and
        #: a failure to record it must not make the caller think otherwise.
        self.wrote = False

    def allocate(self, name: str, net: Subnet) -> int:
        """Reserve the lowest free host of *net* for *name*. Raises SubnetExhaustedError,
        AddressUnknownError."""
        reconciler = self._reconciler
        return allocation.allocate(
            self._conn, reconciler.clusters_dir, reconciler.leases_dir, name, net, self.leases
        )

    def check_unique(self, vm: VM, ip: int | None, path: Path) -> None:
        """Raise IPConflictError or MACConflictError if another member holds vm's address
        (*ip* is vm.ip parsed)."""
        allocation.check_unique(self._conn, vm, ip, path)

    def record_written(self, key: Key, data: bytes, signature: Signature) -> None:
        """Record the config the caller has just written (its bytes, and the signature
        atomic_write returned) without reading it back; a reservation the config now
        holds is released."""
        self.wrote = True
        obs = observe_written(
            self._reconciler.clusters_dir, key, data, signature, self._reconciler.clock()
        )
        try:
            members.put_member(self._conn, obs)
            self.leases.dropped += reservations.release_held(self._conn, key)
        except sqlite3.Error as exc:
            # The config is on disk, which is what counts: the next reconcile records it.
            log.warning("vm %r was written but the index could not record it: %s", key.name, exc)
