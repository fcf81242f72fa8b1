"""Bring the index in line with disk: a signature diff without locks, then a short apply.

The diff compares each config.json's stat signature (inode, size, mtime, ctime) with the
one recorded when the index last read it, and reads only what changed, and the rows still
"racy" (index/racy.py: read within a timestamp tick of their file's change).

Whatever a scan can show must compare equal to the index once applied (a chmod's new ctime,
a config.json that is a directory, a name that is not UTF-8), or every list() would look
changed and take the write lock; the tests in test_reconcile.py pin each such case.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fleetbox_db.disk import leases
from fleetbox_db.disk.files import is_member_dir
from fleetbox_db.disk.leases import Lease
from fleetbox_db.disk.observe import (
    Clock,
    Observation,
    Reparse,
    caught_mid_write,
    observe,
    observe_whole,
    read_whole,
)
from fleetbox_db.disk.scan import MemberDir, Scan, Signature
from fleetbox_db.index import members, outcome, reservations, settled
from fleetbox_db.index.connection import data_version
from fleetbox_db.index.diff import differences
from fleetbox_db.index.members import StoredRow
from fleetbox_db.index.plan import Plan, lease_drift
from fleetbox_db.index.racy import needs_no_write, read_settled, write_later
from fleetbox_db.index.readahead import ReadAhead
from fleetbox_db.index.recorded import RecordedScan
from fleetbox_db.index.reservations import Reservation
from fleetbox_db.logs import DEBUG, log
from fleetbox_db.records import Key, ReconcileReport
from fleetbox_db.rules.ipam import EVERY_ADDRESS, Addresses
from fleetbox_db.rules.layout import member_file

__all__ = ["DEFAULT_GRANULARITY_NS", "Progress", "Reconciler"]

#: Timestamp granularity we do not trust to tell two writes apart: FAT/HFS+ and some network
#: filesystems keep 1-2 s, and Linux stamps files from a clock that ticks in milliseconds.
DEFAULT_GRANULARITY_NS: Final = 2_000_000_000
#: Configs read and written per step of apply(): bounds memory on a 100,000-member rebuild.
_BATCH: Final = 1000
#: Above this many touched rows, one table read beats a lookup per row.
_ROW_LOOKUPS: Final = 500
#: At most this many configs with a new signature are read by plan(), lock-free, to skip
#: writing those whose bytes are unchanged (a Go tool re-saving the same config); more
#: are read by apply(), in batches.
_PRE_READS: Final = 64

Progress = Callable[[int, int], None]  # (configs read so far, configs to read)


@dataclass
class _Seen:
    """The leases and the configs read for one scan (Reconciler._seen_for)."""

    scan: Scan
    leases: dict[Addresses, list[Lease]] = field(default_factory=dict)
    configs: dict[Key, Observation] = field(default_factory=dict)


class Reconciler:
    """Diffs a Scan against the index; keeps the RecordedScan while the index is unchanged."""

    def __init__(
        self,
        clusters_dir: Path,
        clock: Clock = time.time_ns,
        granularity_ns: int = DEFAULT_GRANULARITY_NS,
        leases_dir: Path | None = None,
    ) -> None:
        self.clusters_dir = str(clusters_dir)
        self.clock = clock
        self.granularity_ns = granularity_ns
        # <root>/leases beside <root>/clusters (rules.layout.Layout.leases_dir).
        self.leases_dir = Path(clusters_dir).parent / "leases" if leases_dir is None else leases_dir
        self._recorded: RecordedScan | None = None
        self._stale = False  # this connection wrote since _recorded was loaded
        self._seen: _Seen | None = None  # what the last scan planned has read
        self._reparse = Reparse()  # configs plans read again, not parsed again if unchanged
        #: (change number, digest) of a scan is_current() found equal to every row it read.
        self.unrecorded_digest: tuple[int, bytes] | None = None

    @property
    def version(self) -> object:
        """A token for the index state last loaded: a new object whenever the index changed;
        None (unknown) after this connection wrote, until the scan is refreshed."""
        return None if self._stale else self._recorded

    @property
    def last_members(self) -> Sequence[MemberDir]:
        """The members the index was last seen to hold, in scan order: a hint for the next
        scan, which reuses the equal ones (disk.scan); stale or not, the scan is the same."""
        return () if self._recorded is None else self._recorded.entries

    def invalidate(self) -> None:
        """Refresh the recorded scan before its next use: this connection wrote, which
        data_version does not show."""
        self._stale = self._recorded is not None

    def committed(self) -> None:
        """The write transaction ended in a commit: a recorded scan loaded inside it holds
        only committed rows, a base for an incremental refresh."""
        if self._recorded is not None and self._recorded.in_transaction:
            self._recorded.in_transaction = False
            self._stale = True

    def read_ended(self) -> None:
        """A read transaction of this connection ended: a recorded scan loaded inside it
        holds no write of ours, so it is a base for an incremental refresh like any other
        (kept as loaded inside a transaction, about 30% of who_has and free_ips answers
        beside the contention benchmark's writers read every row again)."""
        if self._recorded is not None:
            self._recorded.in_transaction = False

    def rolled_back(self) -> None:
        """The write transaction did not commit: a recorded scan loaded inside it may hold
        its writes and the change numbers they took; the next use loads every row."""
        if self._recorded is not None and self._recorded.in_transaction:
            self._recorded = None
            self._stale = False

    def observe(self, member: MemberDir, wait: bool = True, again: bool = False) -> Observation:
        """Read and parse one member's config.json now; one caught mid-write is read again
        after pauses (observe_whole) unless *wait* is False. *again*: a member with a row,
        read for a plan; bytes this Reconciler read for it last time are not parsed again
        (Reparse; a rebuild's first reads skip it, where it cost 1.5 us a config)."""
        parse = self._reparse if again else None
        if not wait:
            return observe(self.clusters_dir, member, self.clock, parse)
        return observe_whole(self.clusters_dir, member, self.clock, self.granularity_ns, parse)

    # -- the no-change path: no lock, no write, no parse ----------------------------------

    def is_current(
        self, conn: sqlite3.Connection, scan: Scan, leases: Addresses | None = EVERY_ADDRESS
    ) -> bool:
        """True when the index already says what *scan* shows and no row is racy; the
        leases of the addresses *leases* are compared too (None: an answer no address is
        part of).

        The first call of a Reconciler trusts a digest a reader recorded for this very scan
        (index/settled.py) instead of reading every row; when none was recorded at the
        index's change number, unrecorded_digest says what to record for the next process.
        """
        if self._recorded is None and not scan.unreadable_clusters:
            self._recorded = RecordedScan.settled(conn, scan.members, self.granularity_ns)
        recorded = self._load(conn, leases)
        if recorded.racy:
            return False
        if leases is not None and self._drift(recorded, scan, leases) != ([], []):
            return False
        if scan.unreadable_clusters:
            # Their rows stay (plan never drops them) but the scan cannot show them.
            skipped = set(scan.unreadable_clusters)
            return scan.members == [e for e in recorded.entries if e.cluster not in skipped]
        if scan.members != recorded.entries:
            return False
        if recorded.settled_at != recorded.seq and not recorded.in_transaction:
            # Tried once per change number: a busy write lock leaves it to the next process.
            recorded.settled_at = recorded.seq
            found = settled.digest(scan.members, self.granularity_ns, recorded.schema)
            self.unrecorded_digest = None if found is None else (recorded.seq, found)
        return True

    def _load(
        self, conn: sqlite3.Connection, leases: Addresses | None = EVERY_ADDRESS
    ) -> RecordedScan:
        """The recorded scan as the index holds it now; its reservations too, of the
        addresses *leases* (None: an answer no address is part of)."""
        recorded = self._recorded
        if recorded is None:
            recorded = RecordedScan.load(conn, self.granularity_ns)
        elif (
            self._stale
            or not recorded.is_current(conn)
            or (leases is not None and recorded.reservations_of(leases) is None)
        ):
            recorded = recorded.refreshed(conn, self.granularity_ns, leases)
        else:
            return recorded
        self._recorded, self._stale = recorded, False
        return recorded

    def _drift(
        self, recorded: RecordedScan, scan: Scan, within: Addresses
    ) -> tuple[list[Reservation], list[Lease]]:
        """lease_drift() of the addresses *within*, their live leases listed once per scan:
        is_current() and plan() of one answer share them (an allocator may hold hundreds).
        apply() lists them again, locked."""
        listed = self._seen_for(scan).leases
        live = listed.get(within)
        if live is None:
            live = listed[within] = leases.leases(self.leases_dir, within)
        held = recorded.reservations_of(within)
        assert held is not None, "the recorded scan was loaded for other addresses"
        return lease_drift(held, live, within)

    def forget_scan(self) -> None:
        """Drop what was read for the last scan, the scan with it: kept past its answer, it
        would be a second scan alive in the next (100,000 members: about 40 MB)."""
        self._seen = None

    def _seen_for(self, scan: Scan) -> _Seen:
        """What was read for *scan*, kept while it is the scan planned: a plan made again
        for it (another process committed meanwhile, the reader's copy came out newer) reads
        neither the leases nor a config twice. Beside a Go tool re-saving configs, those
        config reads were most of a re-plan."""
        if self._seen is None or self._seen.scan is not scan:
            self._seen = _Seen(scan)
        return self._seen

    # -- the diff -------------------------------------------------------------------------

    def plan(
        self,
        conn: sqlite3.Connection,
        scan: Scan,
        full: bool = False,
        leases: Addresses | None = EVERY_ADDRESS,
        contents: bool = True,
    ) -> Plan:
        """Diff *scan* against the recorded scan; takes no lock and reads no config except
        racy rows and rows whose last read failed (re-read now, so that one that did not
        change needs no write). The leases of the addresses *leases* are compared (None:
        none, for an answer no address is part of), by apply() too. *contents* False: the
        answer shows no config beyond its addresses, so a row's config caught mid-write is
        left as the row holds it, without the pauses of observe_whole() (unreadable, it
        would keep that config).
        """
        recorded = self._load(conn, leases)
        touched, gone = differences(scan.members, recorded, full)
        reads: list[MemberDir] = []  # every row to write, in the scan's (Go's) order
        # Racy, or their last read failed: re-read here and dropped from reads if unchanged.
        reread: list[MemberDir] = []
        resigned: list[MemberDir] = []  # a new signature: re-read here too, if few
        for member, entry in touched:
            reads.append(member)
            if entry is None or full:
                continue
            # Racy, or recorded without a signature (its read failed) but stat-able now:
            # retried here, lock-free, and written only if the read now gives something else.
            unsigned = entry.signature is None and member.signature is not None
            if entry == member or unsigned:
                reread.append(member)
            elif entry.signature is not None and member.signature is not None:
                resigned.append(member)
        if len(resigned) > _PRE_READS:
            resigned = []  # a bulk change: read in apply(), in batches
        unlisted = set(scan.unreadable_clusters)
        removed = [Key(*k) for k in gone if k[0] not in unlisted]
        old = self._stored(conn, full, reads, removed)
        observed: dict[Key, Observation] = {}
        unchanged: set[Key] = set()
        read = self._seen_for(scan).configs
        pairs = [(m, needs_no_write) for m in reread] + [(m, write_later) for m in resigned]
        read.update(self._observed([m for m, _ in pairs if m.key not in read], old, contents))
        for member, same in pairs:
            obs = read.get(member.key)
            if obs is None:
                unchanged.add(member.key)  # caught mid-write, left as its row holds it
                continue
            row = old.get(obs.key)  # None: another process dropped it since it was loaded
            if row is not None and same(row, obs, self.granularity_ns):
                unchanged.add(obs.key)
            else:
                observed[obs.key] = obs
        if unchanged:
            reads = [m for m in reads if m.key not in unchanged]
        dead, unmirrored = self._drift(recorded, scan, leases) if leases is not None else ([], [])
        return Plan(
            scan, full, reads, old, removed, dead, unmirrored, recorded.data_version, observed,
            leases, contents,
        )  # fmt: skip

    def _observed(
        self, members: list[MemberDir], old: dict[tuple[str, str], StoredRow], contents: bool
    ) -> dict[Key, Observation]:
        """*members* read now for a plan, those caught mid-write again after one round of
        pauses (read_whole). Left out: one caught mid-write that has a row, when the answer
        shows no config (*contents* False): it stays as the row holds it. Beside a Go tool
        re-saving configs in place, waiting for its writes was a tenth of a call."""
        g = self.granularity_ns

        def waits_for(member: MemberDir) -> bool:
            return contents or member.key not in old

        found = read_whole(lambda m: self.observe(m, wait=False, again=True), members, g, waits_for)
        return {
            obs.key: obs
            for member, obs in zip(members, found, strict=True)
            if waits_for(member) or not caught_mid_write(obs, g)
        }

    def plan_aside(
        self,
        conn: sqlite3.Connection,
        schema: int | None,
        scan: Scan,
        leases: Addresses | None = EVERY_ADDRESS,
        contents: bool = True,
    ) -> Plan:
        """plan() against another connection (a reader's in-memory copy), leaving the
        recorded scan of the index file as it was: the next answer refreshes that one
        instead of reading every row again. The copy's (taken at *schema*, the file's schema
        version) is that one carried to the copy by the rows changed since: reading every
        row of it was a third of a copy answer beside the contention benchmark's writers."""
        kept = self._recorded, self._stale
        base = None if self._stale else self._recorded
        self._recorded = (
            None if base is None else base.carried_to(conn, schema, self.granularity_ns)
        )
        try:
            return self.plan(conn, scan, leases=leases, contents=contents)
        finally:
            self._recorded, self._stale = kept

    def _stored(
        self, conn: sqlite3.Connection, full: bool, touched: list[MemberDir], removed: list[Key]
    ) -> dict[tuple[str, str], StoredRow]:
        """The index rows of the keys a plan touches: all at once for a full run, else one
        indexed lookup each (an incremental run touches few)."""
        if full or len(touched) + len(removed) > _ROW_LOOKUPS:
            every = members.stored_rows(conn)
            # Plain (cluster, name) tuples, equal to Keys: a rebuild looks up every member.
            keys = [(m[0], m[1]) for m in touched] + removed
            return {key: every[key] for key in keys if key in every}
        found: dict[tuple[str, str], StoredRow] = {}
        for key in [m.key for m in touched] + removed:
            row = members.stored_row(conn, key)
            if row is not None:
                found[key] = row
        return found

    def _read_again(self, member: MemberDir, planned: Observation | None) -> Observation:
        """*member* read under the lock; once only if plan() caught it mid-write, which it
        had already read again after the pauses (they would hold the lock 5 ms more)."""
        planned_torn = planned is not None and caught_mid_write(planned, self.granularity_ns)
        return self.observe(member, wait=not planned_torn)

    def _unchanged_since(self, obs: Observation) -> bool:
        """plan() read *obs* before the write lock: it stands if its file had settled then
        and still has the signature it was read under (one stat, not another read). One
        read within a tick of its file's change is read again: a file replaced within the
        same tick can keep size, times and even a reused inode number."""
        if obs.signature is None or not read_settled(obs, self.granularity_ns):
            return False
        try:
            st = os.stat(member_file(self.clusters_dir, *obs.key))
        except OSError:
            return False
        return Signature.of(st) == obs.signature

    # -- the apply ------------------------------------------------------------------------

    def apply(
        self,
        conn: sqlite3.Connection,
        plan: Plan,
        dry_run: bool = False,
        progress: Progress | None = None,
        *,
        on_disk: bool = True,
    ) -> ReconcileReport:
        """Read and write the plan; the caller holds the write transaction (unless dry_run).

        Configs are read here, under the lock, so what is written is what disk holds now.
        A dry run writes nothing and reports what a real run would, unreadable and
        conflicts included. on_disk=False: *conn* is a reader's private in-memory copy of
        the index at the plan's version (index/overlay.py); the rows are written there, and
        no dead lease file is removed.
        """
        if not dry_run and on_disk and data_version(conn) != plan.data_version:
            # another process wrote meanwhile
            plan = self.plan(conn, plan.scan, plan.full, plan.leases, plan.contents)
        # The index as this apply found it: still what the file holds after an apply to a
        # reader's in-memory copy, so the next answer need not load it again.
        found = self._recorded
        log.info(
            "reconciling the index: %d configs to read, %d directories gone%s",
            len(plan.reads),
            len(plan.removed),
            " (dry run)" if dry_run else "",
        )
        debug = log.isEnabledFor(DEBUG)  # once: a rebuild reads 100,000 configs
        report = ReconcileReport()
        kept: list[Observation] = []
        gone: list[Key] = []
        unplanned = [m for m in plan.reads if m.key not in plan.observed]
        # A rebuild's reads, made by a child on the other CPU while this loop writes rows.
        ahead = ReadAhead.start(lambda m: self._read_again(m, None), unplanned)
        try:
            for start in range(0, len(plan.reads), _BATCH):
                fresh: list[Observation] = []
                for member in plan.reads[start : start + _BATCH]:
                    obs = plan.observed.get(member.key) if plan.observed else None
                    if obs is None:
                        obs = ahead.take(member) if ahead else None
                        if obs is None:
                            obs = self._read_again(member, None)
                    elif not self._unchanged_since(obs):
                        obs = self._read_again(member, obs)
                    if debug:
                        why = f" ({obs.reason})" if obs.reason else ""
                        log.debug("read %s/%s: %s%s", member.cluster, member.name, obs.state, why)
                    old = plan.old.get(obs.key)
                    if not obs.present and not is_member_dir(self.clusters_dir, *obs.key):
                        if old is not None:  # the member directory went away after the scan
                            gone.append(obs.key)
                        continue
                    outcome.classify(report, obs, old)
                    if dry_run:
                        kept.append(obs)
                    elif old is None and obs.vm is not None and obs.digest is not None:
                        fresh.append(obs)
                    else:
                        outcome.record(conn, obs, old, self.granularity_ns)
                if fresh:
                    members.insert_members(conn, fresh)
                if progress is not None:
                    progress(min(start + _BATCH, len(plan.reads)), len(plan.reads))
        finally:  # a child left running would hold this process's flocks open
            if ahead is not None:
                ahead.stop()
        gone += [k for k in plan.removed if dry_run or not is_member_dir(self.clusters_dir, *k)]
        report.removed = [k.name for k in gone]
        # Under the lock the table and the leases are read again: the plan's dead rows may
        # have been released by another process since, and their ids reused. A reader's
        # copy is the plan's own snapshot, and this scan's leases were listed for the plan.
        # A plan for an answer that holds no address leaves them to one that does: beside
        # an allocator, listing its hundreds of leases held the write lock up to 30 ms.
        if dry_run or not on_disk:
            dead, unmirrored = plan.dead, plan.unmirrored
        elif plan.leases is not None:
            live = leases.leases(self.leases_dir, plan.leases)
            dead, unmirrored = lease_drift(reservations.every(conn), live, plan.leases)
        else:
            dead, unmirrored = [], []
        report.released = [r.name for r in dead]
        if dry_run:
            outcome.preview(conn, report, plan, kept)
        else:
            members.delete_members(conn, gone)
            reservations.delete(conn, (r.id for r in dead))
            if on_disk:  # only under the lock: a writer may take the address anew meanwhile
                for r in dead:
                    leases.remove_dead(self.leases_dir, r.ip_int)
            reservations.mirror(conn, unmirrored)
            if on_disk:
                self.invalidate()
            else:
                self._recorded = found
        return report
