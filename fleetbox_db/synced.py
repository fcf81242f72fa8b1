"""A storage root whose index is brought in line with disk before every use.

Store's methods run through these few: each answer scans disk and reconciles first, each
write runs in the index's one write transaction with the index reconciled inside it, a
corrupt index file is moved aside and rebuilt once, and an index that cannot be used
(read-only, busy, newer) turns answers into answers from disk, with one warning per cause.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from fleetbox_db import disk
from fleetbox_db.errors import IndexBusyError, IndexSchemaError, IndexUnavailableError
from fleetbox_db.index import DEFAULT_BUSY_TIMEOUT, Index, IndexCorrupt
from fleetbox_db.paths import Layout
from fleetbox_db.reconcile import DEFAULT_GRANULARITY_NS, Clock, Reconciler, ReconcileReport
from fleetbox_db.vmcache import VMCache

log = logging.getLogger("fleetbox_db")

T = TypeVar("T")
#: Index errors after which answers come from disk instead (writes still raise them).
DEGRADED = (IndexUnavailableError, IndexSchemaError, IndexBusyError)


class SyncedRoot(Layout):
    """The index life cycle under Store; not shared between threads."""

    def __init__(
        self,
        root: Path | str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Clock = time.time_ns,
        granularity_ns: int = DEFAULT_GRANULARITY_NS,
    ) -> None:
        super().__init__(root)
        self._index = Index(self.index_path, self.index_lock_path, busy_timeout)
        self._reconciler = Reconciler(self.clusters_dir, clock, granularity_ns)
        self._vms = VMCache()
        self._warned: set[str] = set()

    def _indexed(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run *operation* on the index; a corrupt file is moved aside and rebuilt once."""
        for attempt in range(2):
            try:
                return operation(self._index.connection())
            except sqlite3.Error as exc:
                error = self._index.translate(exc)
                if isinstance(error, IndexCorrupt) and attempt:
                    raise IndexUnavailableError(str(error), path=self.index_path) from exc
                if not isinstance(error, IndexCorrupt):
                    raise error from exc
                self._recover(str(error))
            except IndexCorrupt as exc:
                if attempt:
                    raise IndexUnavailableError(str(exc), path=self.index_path) from exc
                self._recover(str(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    def _recover(self, reason: str) -> None:
        self._reconciler.invalidate()
        self._index.quarantine(reason)

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """The write transaction with the index reconciled inside it."""
        with self._index.write() as conn:
            self._bring_current(conn, disk.scan(self.clusters_dir), locked=True)
            try:
                yield conn
            finally:
                self._reconciler.invalidate()

    def _bring_current(
        self, conn: sqlite3.Connection, scan: disk.Scan, locked: bool = False
    ) -> ReconcileReport:
        if self._reconciler.is_current(conn, scan):
            return ReconcileReport()
        plan = self._reconciler.plan(conn, scan)
        if plan.empty:
            return ReconcileReport()
        if locked:
            return self._reconciler.apply(conn, plan)
        with self._index.write() as wconn:
            return self._reconciler.apply(wconn, plan)

    def _sync(self) -> disk.Scan | None:
        """Scan disk and reconcile; None (with a warning) when the index cannot be used."""
        scan = disk.scan(self.clusters_dir)
        try:
            self._indexed(lambda conn: self._bring_current(conn, scan))
        except DEGRADED as exc:
            self._warn(exc)
            return None
        return scan

    def _warn(self, exc: Exception) -> None:
        kind = type(exc).__name__
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("%s; answering from disk", exc)
