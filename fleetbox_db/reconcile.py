"""Bring the index in line with disk: a signature diff without locks, then a short apply.

The diff compares each config.json's stat signature (inode, size, mtime, ctime) with the
one recorded when the index last read it, and reads only what changed. A rewrite inside
one timestamp tick keeps the same signature, so a row read less than one granularity after
its file's last change (the later of mtime and ctime: mtime can be set back) stays "racy"
and is re-read (and its digest compared) until a later read proves it settled - git's
racy-index rule.

Whatever a scan can show must compare equal to the index once applied (a chmod's new ctime,
a config.json that is a directory, a name that is not UTF-8), or every list() would look
changed and take the write lock; the tests in test_reconcile.py pin each such case.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fleetbox_db import dryrun, owners, queries, reservations
from fleetbox_db.config import VM, decode_config
from fleetbox_db.dbnames import Key
from fleetbox_db.disk import MemberDir, Scan, Signature, read_config_bytes
from fleetbox_db.errors import ConfigError
from fleetbox_db.paths import cluster_name
from fleetbox_db.queries import Conflict, StoredRow
from fleetbox_db.reservations import Reservation
from fleetbox_db.snapshot import Snapshot, data_version

#: Timestamp granularity we do not trust to tell two writes apart: FAT/HFS+ and some network
#: filesystems keep 1-2 s, and Linux stamps files from a clock that ticks in milliseconds.
DEFAULT_GRANULARITY_NS: Final = 2_000_000_000
#: Configs read and written per step of apply(): bounds memory on a 100,000-member rebuild.
_BATCH: Final = 1000
#: Above this many touched rows, one table read beats a lookup per row.
_ROW_LOOKUPS: Final = 500

Clock = Callable[[], int]
Progress = Callable[[int, int], None]  # (configs read so far, configs to read)


@dataclass
class ReconcileReport:
    """What a reconcile changed (or, dry run, would change), by member name."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    # Paths of temp files a killed write left (full runs only; see sweep.py).
    swept: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.released or self.swept)


@dataclass(frozen=True, slots=True)
class Observation:
    """One member directory as read just now."""

    key: Key
    state: str
    signature: Signature | None
    verified_ns: int
    digest: str | None
    vm: VM | None
    present: bool  # config.json exists (parsed or not)

    @property
    def keeps_last_config(self) -> bool:
        """An unreadable file keeps the row's last good config; a missing one holds none,
        nor does a stray one that cannot even be stat-ed (the scan shows both alike, see
        snapshot.py)."""
        return self.present and not (self.signature is None and self.state == "stray")


@dataclass
class Plan:
    """What plan() found: directories to read and write, rows to drop, reservations to free.

    The reads happen in apply(), under the write lock and in batches, so what is written is
    what disk holds then and a rebuild of 100,000 members never holds them all in memory.
    """

    scan: Scan
    full: bool
    reads: list[MemberDir]
    old: dict[Key, StoredRow]
    removed: list[Key]
    dead: list[Reservation]
    # Signature recorded in the index per row, to tell "same bytes, new stat" from no change.
    recorded: dict[Key, tuple[int | None, ...]] = field(default_factory=dict)
    # The index version the plan was made against; apply() re-plans if another process
    # wrote in between, so "no row yet" still holds when it inserts.
    data_version: int = -1
    # Racy rows plan() already re-read to see whether they changed: not read twice.
    observed: dict[Key, Observation] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when applying would write nothing: the caller may skip the write lock."""
        return not (self.reads or self.removed or self.dead)


class Reconciler:
    """Diffs a Scan against the index; keeps the last snapshot while the index is unchanged."""

    def __init__(
        self,
        clusters_dir: Path,
        clock: Clock = time.time_ns,
        granularity_ns: int = DEFAULT_GRANULARITY_NS,
    ) -> None:
        self.clusters_dir = str(clusters_dir)
        self.clock = clock
        self.granularity_ns = granularity_ns
        self._snapshot: Snapshot | None = None

    @property
    def snapshot(self) -> object:
        """The current snapshot, as a token: a new object whenever the index changed."""
        return self._snapshot

    def invalidate(self) -> None:
        """Forget the snapshot: this connection wrote, which data_version does not show."""
        self._snapshot = None

    # -- the no-change path: no lock, no write, no parse ----------------------------------

    def is_current(self, conn: sqlite3.Connection, scan: Scan) -> bool:
        """True when the index already says what *scan* shows and no row is racy."""
        snap = self._load_snapshot(conn)
        if snap.racy:
            return False
        if snap.reservations and any(not owners.is_alive(_owner(r)) for r in snap.reservations):
            return False
        if scan.unreadable_clusters:
            # Their rows stay (plan never drops them) but the scan cannot show them.
            skipped = set(scan.unreadable_clusters)
            return scan.members == [e for e in snap.entries if e.cluster not in skipped]
        return scan.members == snap.entries

    def _load_snapshot(self, conn: sqlite3.Connection) -> Snapshot:
        snap = self._snapshot
        if snap is None or not snap.is_current(conn):
            snap = self._snapshot = Snapshot.load(conn, self.granularity_ns)
        return snap

    # -- the diff -------------------------------------------------------------------------

    def plan(self, conn: sqlite3.Connection, scan: Scan, full: bool = False) -> Plan:
        """Diff *scan* against the index snapshot; takes no lock and reads no config except
        racy rows (re-read now so that one whose bytes did not change needs no write).
        """
        snap = self._load_snapshot(conn)
        remaining = dict(snap.by_key)
        reads: list[MemberDir] = []
        racy: list[MemberDir] = []
        for member in scan.members:
            key = (member[0], member[1])
            entry = remaining.pop(key, None)
            if entry is None or full or entry != member:
                reads.append(member)
            elif key in snap.racy:
                racy.append(member)
        unlisted = set(scan.unreadable_clusters)
        removed = [k for k in remaining if k[0] not in unlisted]
        old, recorded = self._stored(conn, full, [*reads, *racy], removed)
        observed: dict[Key, Observation] = {}
        for member in racy:
            obs = self.observe(member)
            row = old.get(obs.key)  # None: another process dropped it since the snapshot
            if row is None or not self._noop(row, recorded[obs.key], obs):
                reads.append(member)
                observed[obs.key] = obs
        dead = [r for r in snap.reservations if not owners.is_alive(_owner(r))]
        return Plan(scan, full, reads, old, removed, dead, recorded, snap.data_version, observed)

    def _stored(
        self,
        conn: sqlite3.Connection,
        full: bool,
        members: list[MemberDir],
        removed: list[Key],
    ) -> tuple[dict[Key, StoredRow], dict[Key, tuple[int | None, ...]]]:
        """The index rows of the keys a plan touches: all at once for a full run, else one
        indexed lookup each (an incremental run touches few)."""
        keys = [(m[0], m[1]) for m in members] + removed
        if full or len(keys) > _ROW_LOOKUPS:
            every = queries.stored_rows(conn)
            found = {key: every[key] for key in keys if key in every}
        else:
            found = {}
            for key in keys:
                row = queries.stored_row(conn, key)
                if row is not None:
                    found[key] = row
        return {k: v[0] for k, v in found.items()}, {k: v[1] for k, v in found.items()}

    def _racy(self, row: StoredRow) -> bool:
        if row.changed_ns is None or row.verified_ns is None:
            return False
        return row.changed_ns + self.granularity_ns > row.verified_ns

    def _settled(self, obs: Observation) -> bool:
        """The read happened more than one timestamp tick after the file last changed."""
        sig = obs.signature
        if sig is None:
            return False
        return max(sig.mtime_ns, sig.ctime_ns) + self.granularity_ns <= obs.verified_ns

    def _noop(self, row: StoredRow, recorded: tuple[int | None, ...], obs: Observation) -> bool:
        if row.digest != obs.digest or row.state != obs.state:
            return False
        if _sig_tuple(obs.signature) != recorded:
            return False
        return not (self._racy(row) and self._settled(obs))

    def observe(self, member: MemberDir) -> Observation:
        """Read and parse one member's config.json now."""
        key = (member.cluster, member.name)
        stray = cluster_name(member.name) != member.cluster
        path = f"{self.clusters_dir}/{member.cluster}/{member.name}/config.json"
        verified = self.clock()
        try:
            data, sig = read_config_bytes(path)
        except FileNotFoundError:
            state = "stray" if stray else "configless"
            return Observation(key, state, None, verified, None, None, False)
        except OSError:
            state = "stray" if stray else "unreadable"
            return Observation(key, state, member.signature, verified, None, None, True)
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        try:
            vm: VM | None = decode_config(data, path)
        except ConfigError:
            vm = None
        state = "stray" if stray else ("ok" if vm is not None else "unreadable")
        return Observation(key, state, sig, verified, digest, vm, True)

    # -- the apply ------------------------------------------------------------------------

    def apply(
        self,
        conn: sqlite3.Connection,
        plan: Plan,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> ReconcileReport:
        """Read and write the plan; the caller holds the write transaction (unless dry_run).

        Configs are read here, under the lock, so what is written is what disk holds now.
        A dry run writes nothing and reports what a real run would, unreadable and
        conflicts included.
        """
        if not dry_run and data_version(conn) != plan.data_version:
            plan = self.plan(conn, plan.scan, plan.full)  # another process wrote meanwhile
        report = ReconcileReport()
        kept: list[Observation] = []
        gone: list[Key] = []
        for start in range(0, len(plan.reads), _BATCH):
            fresh: list[tuple[Key, str, tuple[int | None, ...], int, str, VM]] = []
            for member in plan.reads[start : start + _BATCH]:
                obs = plan.observed.get((member[0], member[1])) or self.observe(member)
                old = plan.old.get(obs.key)
                if not obs.present and not self._is_member_dir(obs.key):
                    if old is not None:  # the member directory went away after the scan
                        gone.append(obs.key)
                    continue
                self._classify(report, obs, old)
                if dry_run:
                    kept.append(obs)
                elif old is None and obs.vm is not None and obs.digest is not None:
                    sig = _sig_tuple(obs.signature)
                    fresh.append((obs.key, obs.state, sig, obs.verified_ns, obs.digest, obs.vm))
                else:
                    self._write(conn, obs, old, plan.recorded.get(obs.key))
            if fresh:
                queries.insert_members(conn, fresh)
            if progress is not None:
                progress(min(start + _BATCH, len(plan.reads)), len(plan.reads))
        gone += [k for k in plan.removed if dry_run or not self._is_member_dir(k)]
        report.removed = [k[1] for k in gone]
        # Under the lock the table is read again: the plan's dead rows may have been released
        # by another process since, and their ids reused by live reservations.
        candidates = plan.dead if dry_run else reservations.every(conn)
        dead = [r for r in candidates if dry_run or not owners.is_alive(_owner(r))]
        report.released = [r.name for r in dead]
        if dry_run:
            report.unreadable, report.conflicts = dryrun.outcome(
                queries.all_members(conn),
                plan.removed,
                [(o.key, o.state, o.vm, o.keeps_last_config) for o in kept],
            )
        else:
            queries.delete_members(conn, gone)
            reservations.delete(conn, (r.id for r in dead))
            self.invalidate()
        return report

    @staticmethod
    def _classify(report: ReconcileReport, obs: Observation, old: StoredRow | None) -> None:
        if old is None:
            report.added.append(obs.key[1])
        elif old.digest != obs.digest or old.state != obs.state:
            report.updated.append(obs.key[1])
        if obs.state == "unreadable":
            report.unreadable.append(obs.key[1])

    def _is_member_dir(self, key: Key) -> bool:
        """A real directory, as scan sees one: a symlink in its place is not a member."""
        try:
            cluster = os.lstat(f"{self.clusters_dir}/{key[0]}")
            member = os.lstat(f"{self.clusters_dir}/{key[0]}/{key[1]}")
        except OSError:
            return False
        return stat.S_ISDIR(cluster.st_mode) and stat.S_ISDIR(member.st_mode)

    def _write(
        self,
        conn: sqlite3.Connection,
        obs: Observation,
        old: StoredRow | None,
        recorded: tuple[int | None, ...] | None,
    ) -> None:
        sig = _sig_tuple(obs.signature)
        if old is not None and old.digest == obs.digest and old.state == obs.state:
            if sig == recorded:
                # Same bytes under the same signature: only a racy row that is now
                # settled has anything to record.
                if self._racy(old) and self._settled(obs):
                    queries.set_verified(conn, obs.key, obs.verified_ns)
                return
            # Same bytes, new signature (chmod, touch, a copy over it): record the new
            # signature, or the scan would differ from the index on every list().
            queries.put_member(
                conn, obs.key, obs.state, obs.signature, obs.verified_ns, obs.digest, None
            )
            return
        queries.put_member(
            conn, obs.key, obs.state, obs.signature, obs.verified_ns, obs.digest, obs.vm
        )
        if not obs.keeps_last_config:
            queries.clear_config(conn, obs.key)


_NO_SIGNATURE: Final = (None, None, None, None)


def _sig_tuple(sig: Signature | None) -> tuple[int | None, ...]:
    """A signature as the index stores it: four NULLs when there is no regular file."""
    return _NO_SIGNATURE if sig is None else tuple(sig)


def _owner(r: Reservation) -> owners.Owner:
    return (r.owner_pid, r.owner_boot, r.owner_start)
