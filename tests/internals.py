"""The one place tests reach inside a Store: its index connection (to read pragmas and to
drive a Reconciler by hand) and its Reconciler (to count reads or to inject a race).

Everything else in the suite goes through the public API; keeping these few reaches here
means a change to the Store's inner layout touches one file of tests.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fleetbox_db import Store
from fleetbox_db.index.file import IndexFile
from fleetbox_db.index.reconcile import Reconciler

R = TypeVar("R", bound=Reconciler)


def index_file(store: Store) -> IndexFile:
    return store._mirror._file


def index_connection(store: Store) -> sqlite3.Connection:
    return index_file(store).connection()


def reconciler(store: Store) -> Reconciler:
    return store._mirror._reconciler


def swap_reconciler(store: Store, cls: Callable[[Path, Callable[[], int], int], R]) -> R:
    """Give *store* a reconciler of class *cls* with the same settings; returns it."""
    current = reconciler(store)
    swapped = cls(Path(current.clusters_dir), current.clock, current.granularity_ns)
    store._mirror._reconciler = swapped
    return swapped


def drop_lease_locks() -> None:
    """Close this process's lease descriptors, as its exit would: its leases are dead now,
    their files left for the next writer to remove."""
    import os

    from fleetbox_db.disk import lease_owners, leases

    for fd in leases._held.values():
        os.close(fd)
    leases._held.clear()
    for _, fd in lease_owners._mine.values():
        os.close(fd)
    lease_owners._mine.clear()
