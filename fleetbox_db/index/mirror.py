"""The index of one storage root, brought in line with disk before every use.

Every read scans disk and reconciles first; every write runs in the index's one write
transaction with the index reconciled inside it; a corrupt index file is moved aside and
rebuilt once. The Store holds a Mirror and decides what to do when it raises an
IndexAccessError (answer from disk instead); the Mirror never decides what is true, it
only remembers what disk said.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from fleetbox_db.disk import leases
from fleetbox_db.disk.clock import FilesystemClock
from fleetbox_db.disk.observe import Clock
from fleetbox_db.disk.scan import Scan, scan
from fleetbox_db.disk.sweep import sweep
from fleetbox_db.errors import FleetboxError, IndexAccessError, IndexUnavailableError
from fleetbox_db.index import history, members, reservations, schema, settled, sql, vmblob
from fleetbox_db.index.answers import (
    IndexAnswers,
    conflicts,
    names_in_state,
    stray_labels,
    unreadable_reasons,
)
from fleetbox_db.index.connection import DEFAULT_BUSY_TIMEOUT
from fleetbox_db.index.file import IndexCorrupt, IndexFile, WriteLockBusy
from fleetbox_db.index.plan import Plan
from fleetbox_db.index.reconcile import DEFAULT_GRANULARITY_NS, Progress, Reconciler
from fleetbox_db.index.transaction import WriteTransaction
from fleetbox_db.index.vmcache import VMCache
from fleetbox_db.logs import DEBUG, INFO, log
from fleetbox_db.records import Event, Key, MemberState, Problem, QueryResult, ReconcileReport
from fleetbox_db.rules.ipam import EVERY_ADDRESS, Addresses
from fleetbox_db.rules.layout import Layout

if TYPE_CHECKING:
    from fleetbox_db.index import readonly

__all__ = ["Mirror"]


T = TypeVar("T")


class Mirror:
    """The index life cycle under a Store; not shared between threads."""

    def __init__(
        self,
        layout: Layout,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Clock | None = None,
        granularity_ns: int = DEFAULT_GRANULARITY_NS,
        history_limit: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.progress = progress  # for every reconcile that reads configs, and check()
        #: A dry run's clock: the given one, else the process's (reading the filesystem's
        #: touches, or creates, index.lock, and a dry run changes nothing).
        self._dry_clock: Clock = clock if clock is not None else time.time_ns
        if clock is None:  # the clock that stamps the files: index.lock is in the tree
            clock = FilesystemClock(layout.index_lock_path)
        self._clusters_dir = layout.clusters_dir
        self._file = IndexFile(layout.index_path, layout.index_lock_path, busy_timeout)
        self._reconciler = Reconciler(layout.clusters_dir, clock, granularity_ns)
        self._vms = VMCache()
        # Set at this Mirror's first write lock (history_meta keeps it in the index).
        self._history_limit = history_limit
        # Whether the history of the index is known to have started (see _changes).
        self._history_started = False

    def close(self) -> None:
        """Release the connection; safe to call twice."""
        self._file.close()

    # -- reads ----------------------------------------------------------------------------

    def scan(self) -> Scan:
        """A scan of disk now, made of the recorded scan's tuples where they are equal: the
        usual answer then compares identities, and makes and frees no tuple per member."""
        return scan(self._clusters_dir, self._reconciler.last_members)

    def sync(self, scan: Scan) -> None:
        """Bring the index in line with *scan* if the write lock is free; never waits. The
        leases are left to answers that involve addresses (see answer())."""

        def run() -> None:
            plan = self._changes(self._file.connection(), scan, leases=None, contents=False)
            if plan is not None:
                self._record_if_free(plan)

        self._retrying(run)

    def answer(
        self,
        scan: Scan,
        question: Callable[[IndexAnswers], T],
        *,
        leases: Addresses | None = EVERY_ADDRESS,
        contents: bool = True,
    ) -> T:
        """*question* asked of the index brought in line with *scan*. Never waits for the
        write lock: when another process holds it, the reconcile is applied to an
        in-memory copy for this answer only, or, when only reservations differ, to a TEMP
        table shadowing them; an answer about addresses whose rows the reconcile leaves
        alone is the file's (index/overlay.py).

        *leases*: the addresses the answer shows, whose leases are compared; None when it
        shows none (an allocator holding hundreds, each taken before its commit, would make
        every answer a copy). *contents* False: it shows no config beyond its addresses, so a
        config caught mid-write is not waited for (Reconciler.plan)."""

        def run() -> T:
            conn = self._file.connection()
            plan = self._changes(conn, scan, leases=leases, contents=contents)
            # Live leases without rows alone: allocations in flight, which their own commits
            # record in a moment; a write here would only queue beside them.
            in_flight = plan is not None and plan.leases_only and not plan.dead
            if plan is None or (not in_flight and self._record_if_free(plan)):
                answer = question(IndexAnswers(conn, self._vms, self._reconciler.version))
                self._save_vms()
                return answer

            def ask(answering: sqlite3.Connection) -> T:
                return question(IndexAnswers(answering, self._vms, None))

            from fleetbox_db.index import overlay  # only beside a writer: not on every start

            if plan.leases_only or (leases is not None and not contents):
                direct = overlay.answer_from_file(conn, self._reconciler, scan, plan, ask)
                if direct is not None:
                    return direct[0]
            return overlay.answer_from_copy(conn, self._reconciler, scan, plan, ask, self.progress)

        return self._retrying(run)

    def check(self, scan: Scan) -> list[Problem] | None:
        """Problems on disk and the index's drift from *scan*; None when there is no index.

        Changes nothing at all: the file is read as it is (readonly.peek), never created,
        upgraded or moved aside. Raises IndexAccessError saying why it cannot be compared.
        """

        from fleetbox_db.index.check import find_problems

        def compare(found: readonly.Peek) -> list[Problem]:
            if found.conn is None:
                assert found.problem is not None
                raise found.problem
            return find_problems(found.conn, self._reconciler.clusters_dir, scan, self.progress)

        return self._peeking(compare, None)

    def _peeking(self, use: Callable[[readonly.Peek], T], absent: T) -> T:
        """use(peek) of the index as it is (*absent* when there is none), read again the
        shared way if a writer came in during the first read; typed errors only."""
        try:
            if os.path.lexists(self._file.path):
                # An index this user cannot write cannot be brought back in line: its drift
                # is not a problem they can fix. Nor is it opened: SQLite could not remove
                # the -wal and -shm it makes beside a read-only file.
                self._file.check_writable()
            from fleetbox_db.index import readonly

            for shared in (False, True):
                with readonly.peek(self._file.path, self._file.busy_timeout, shared=shared) as p:
                    if p is None:
                        return absent
                    try:
                        result = use(p)
                    except (sqlite3.Error, IndexAccessError):
                        if p.stale():
                            continue
                        raise
                    if not p.stale():
                        return result
            raise AssertionError("unreachable")  # pragma: no cover - shared is never stale
        except sqlite3.Error as exc:
            # Raised where it is made, never from a local: an exception bound in a frame
            # its traceback holds is a reference cycle keeping every frame of the call (a
            # scan among them) alive until a collection.
            if self._file.is_corrupt(exc):
                raise IndexUnavailableError(f"index {self._file.path}: {exc}") from exc
            raise self._file.translate(exc) from exc
        except FleetboxError:
            raise  # typed already (IndexBusyError is an OSError too)
        except OSError as exc:
            raise self._file.os_error(exc) from exc

    def revision(self) -> str | None:
        """The index's schema revision, upgrading it to head first (opening does)."""
        return self._retrying(lambda: schema.current_revision(self._file.connection()))

    # -- writes ---------------------------------------------------------------------------

    def write(self, operation: Callable[[WriteTransaction], T]) -> T:
        """Run *operation* inside the one write transaction, the index reconciled first."""

        def run() -> T:
            # Scan and plan before taking the lock, so it is held for the apply and the
            # write alone; apply() re-plans if another process wrote meanwhile, and reads
            # every config it records then, under the lock.
            found = self.scan()
            plan = self._changes(self._file.connection(), found)
            changes = reservations.LeaseChanges()
            done: list[T] = []  # the result, once the operation has written disk
            try:
                with self._locked() as conn:
                    if plan is not None:
                        self._reconciler.apply(conn, plan, progress=self.progress)
                    self._reconciled(conn)
                    tx = WriteTransaction(conn, self._reconciler)
                    tx.leases = changes
                    try:
                        result = operation(tx)
                        if tx.wrote:
                            done.append(result)
                        history.record(conn, history.ours())
                        changes.end_dropped(self._reconciler.leases_dir)
                    finally:
                        self._reconciler.invalidate()
            except Exception as exc:
                if done:  # the commit failed after the config reached disk: it is done
                    _unrecorded(exc)
                    return done[0]
                changes.roll_back(self._reconciler.leases_dir)
                raise
            except BaseException:
                changes.roll_back(self._reconciler.leases_dir)
                raise
            return result

        return self._retrying(run)

    def forget(self, key: Key, remove: Callable[[], None]) -> None:
        """Run *remove* (the member's removal from disk) under the write lock, then drop its
        rows and every reservation of its name."""

        def run() -> None:
            removed = False
            try:
                with self._locked() as conn:
                    remove()
                    removed = True
                    members.delete_members(conn, [key])
                    for lease in reservations.release(conn, key.name):
                        leases.end(self._reconciler.leases_dir, lease)
                    history.record(conn, history.ours())
                    self._reconciler.invalidate()
            except Exception as exc:
                if not removed:
                    raise
                self._reconciler.invalidate()
                _unrecorded(exc)  # the member is gone from disk: the delete is done

        self._retrying(run)

    def reconcile(self, *, full: bool, dry_run: bool, progress: Progress | None) -> ReconcileReport:
        """Store.reconcile(): see there."""
        progress = progress or self.progress

        def run() -> ReconcileReport:
            if dry_run:
                return self._dry_run(full, progress)
            conn = self._file.connection()
            found = self.scan()
            plan = self._reconciler.plan(conn, found, full=full)
            now = self._reconciler.clock
            with self._locked() as wconn:
                report = self._reconciler.apply(wconn, plan, progress=progress)
                self._reconciled(wconn)
                if full:  # under the lock that every config write holds
                    report.swept = sweep(self._clusters_dir, found.members, now())
            report.unreadable = names_in_state(conn, MemberState.UNREADABLE)
            report.reasons = unreadable_reasons(conn)
            report.conflicts = conflicts(conn)
            report.strays = stray_labels(conn)
            return report

        return self._retrying(run)

    # -- history and SQL: answered after a reconcile recorded under the write lock ---------

    def history(self, **filters: Any) -> list[Event]:
        """Events matching *filters* (index.history.read), disk's latest changes included."""
        return self._retrying(lambda: history.read(self._recorded(), **filters))

    def query(
        self, text: str, params: Sequence[Any] | Mapping[str, Any], timeout: float
    ) -> QueryResult:
        """Store.query(): see there."""

        def run() -> QueryResult:
            self._recorded()
            return sql.run(self._file.path, text, params, timeout, self._file.busy_timeout)

        return self._retrying(run)

    def views(self) -> QueryResult:
        """The public views and their columns."""

        def run() -> QueryResult:
            self._file.connection()  # at head
            return sql.describe(self._file.path, self._file.busy_timeout)

        return self._retrying(run)

    def _recorded(self) -> sqlite3.Connection:
        """The connection, its index brought in line with disk and the changes recorded:
        unlike answer(), this waits for the write lock when there is something to record,
        so that the events a query or log reads include what disk shows now."""
        conn = self._file.connection()
        plan = self._changes(conn, self.scan())
        if plan is not None:
            with self._locked() as wconn:
                self._reconciler.apply(wconn, plan)
                self._reconciled(wconn)
        return conn

    def _reconciled(self, conn: sqlite3.Connection) -> None:
        """Record the reconcile just applied under the write lock (index/history.py)."""
        history.after_reconcile(conn, self._file.quarantined)
        self._file.quarantined = None
        self._history_started = True
        if self._history_limit is not None:
            history.set_limit(conn, self._history_limit)
            self._history_limit = None

    def _dry_run(self, full: bool, progress: Progress | None) -> ReconcileReport:
        """What reconcile() would report, changing nothing: against the index as it is, or
        (missing, older, broken, or unusable now) against the empty one a rebuild would
        start from, with a warning."""

        # Its own Reconciler: no cache of the real one is touched, and no clock that
        # touches index.lock.
        dry = Reconciler(self._clusters_dir, self._dry_clock, self._reconciler.granularity_ns)

        from fleetbox_db.index import readonly

        def preview(found: readonly.Peek | None) -> ReconcileReport:
            if found is not None and found.conn is None:
                log.warning("%s; the dry run compares disk with an empty index", found.problem)
            blank = readonly.empty_head() if found is None or found.conn is None else None
            target = blank or (found.conn if found is not None else None)
            assert target is not None
            try:
                plan = dry.plan(target, self.scan(), full=full)
                report = dry.apply(target, plan, dry_run=True, progress=progress)
            finally:
                if blank is not None:
                    blank.close()
            if full:
                report.swept = sweep(
                    self._clusters_dir, plan.scan.members, dry.clock(), remove=False
                )
            return report

        try:
            return self._peeking(preview, None) or preview(None)
        except IndexAccessError as exc:  # a read: it answers, as a rebuild would see disk
            log.warning("%s; the dry run compares disk with an empty index", exc)
            return preview(None)

    # -- the life cycle -------------------------------------------------------------------

    @contextmanager
    def _locked(self, *, wait: bool = True) -> Iterator[sqlite3.Connection]:
        """The write transaction, logging how long it took to get (-v shows lock waits).

        The reconciler learns whether it committed: a recorded scan loaded inside it is
        then the file's and can be refreshed incrementally, else it is forgotten."""
        started = time.monotonic()
        try:
            with self._file.write(wait=wait) as conn:
                waited = time.monotonic() - started
                level = INFO if waited >= 0.01 else DEBUG
                log.log(level, "took the index write lock after %.3f s", waited)
                history.drop_staged_elsewhere(conn)
                yield conn
        except BaseException:
            self._reconciler.rolled_back()
            raise
        self._reconciler.committed()

    def _changes(
        self,
        conn: sqlite3.Connection,
        scan: Scan,
        leases: Addresses | None = EVERY_ADDRESS,
        contents: bool = True,
    ) -> Plan | None:
        """The reconcile *scan* calls for, or None when the index already says it."""
        if self._reconciler.is_current(conn, scan, leases):
            if not scan.members and not self._history_started:
                self._start_history(conn)
            if self._reconciler.unrecorded_digest is not None:
                self._record_digest(*self._reconciler.unrecorded_digest)
            return None
        plan = self._reconciler.plan(conn, scan, leases=leases, contents=contents)
        return None if plan.empty else plan

    def _start_history(self, conn: sqlite3.Connection) -> None:
        """Start the history of a new index over an empty tree, which no reconcile fills:
        its first member must be recorded as created. Once per Mirror, never waits."""
        if history.started(conn):
            self._history_started = True
            return
        try:
            with self._locked(wait=False) as wconn:
                self._reconciled(wconn)
        except WriteLockBusy:
            pass

    def _record_digest(self, seq: int, found: bytes) -> None:
        """Record the digest of a scan found equal to every row (index/settled.py), if the
        write lock is free this instant: the next new process then reads no row."""
        self._reconciler.unrecorded_digest = None
        self._optionally(lambda wconn: settled.record(wconn, seq, found))

    def _save_vms(self) -> None:
        """Save the VM records just answered for the next new process (index/vmblob.py) if
        the index is settled and the write lock free this instant. The chunks are made
        while it is held, one at a time, to bound memory (at 10,000 members about 15 ms,
        once per change of a settled index; readers do not wait for it)."""
        unsaved = self._vms.unsaved()
        if unsaved is not None:
            self._optionally(lambda wconn: vmblob.save(wconn, *unsaved))

    def _optionally(self, write: Callable[[sqlite3.Connection], object]) -> None:
        """Run *write*, a hint for later readers, in a write transaction if the lock is free
        this instant. A failure (a full disk) costs those readers time, never this answer,
        so it is logged, not raised."""
        try:
            with self._locked(wait=False) as wconn:
                write(wconn)
        except WriteLockBusy:
            pass
        except IndexAccessError as exc:
            log.debug("left the index as it was: %s", exc)

    def _record_if_free(self, plan: Plan) -> bool:
        """Apply *plan* if the write lock is free this instant; False when it is not."""
        try:
            with self._locked(wait=False) as wconn:
                self._reconciler.apply(wconn, plan, progress=self.progress)
                self._reconciled(wconn)
        except WriteLockBusy:
            return False
        return True

    def _retrying(self, run: Callable[[], T]) -> T:
        try:
            return self._retrying_corrupt(run)
        except FleetboxError:
            raise  # typed already (IndexBusyError, DiskError are OSErrors too)
        except OSError as exc:  # the index's own files, or its leases
            raise self._file.os_error(exc) from exc
        finally:
            self._reconciler.forget_scan()  # every operation scans anew

    def _retrying_corrupt(self, run: Callable[[], T]) -> T:
        """Run *run*; a corrupt index file is moved aside and rebuilt, and *run* tried once
        more. Other index failures raise as the typed errors IndexFile names; an OSError
        of the index's own files is IndexUnavailableError (reads then answer from disk)."""
        for attempt in range(2):
            try:
                return run()
            except sqlite3.Error as exc:
                if not self._file.is_corrupt(exc):
                    raise self._file.translate(exc) from exc  # not from a local (_peeking)
                reason = str(self._file.translate(exc))
                if attempt:
                    raise IndexUnavailableError(reason, path=self._file.path) from exc
                self._recover(reason)
            except IndexCorrupt as exc:
                if attempt:
                    raise IndexUnavailableError(str(exc), path=self._file.path) from exc
                self._recover(str(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    def _recover(self, reason: str) -> None:
        self._reconciler.invalidate()
        self._history_started = False
        self._file.recover(reason)


def _unrecorded(exc: Exception) -> None:
    log.warning(
        "the change is on disk but the index could not record it (%s); the next reconcile will",
        exc,
    )
