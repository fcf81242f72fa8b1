"""Bring the index in line with disk: a signature diff without locks, then a short apply.

The diff compares each config.json's stat signature (inode, size, mtime, ctime) with the
one recorded when the index last read it, and reads only what changed. A rewrite inside
one timestamp tick keeps the same signature, so a row read less than one granularity after
its file's mtime stays "racy" and is re-read (and its digest compared) until a later read
proves it settled - git's racy-index rule.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fleetbox_db import owners, queries
from fleetbox_db.config import VM, decode_config
from fleetbox_db.disk import MemberDir, Scan, Signature, read_config_bytes
from fleetbox_db.errors import ConfigError
from fleetbox_db.paths import cluster_name
from fleetbox_db.queries import Conflict, Key, Reservation, StoredRow

#: Timestamp granularity we do not trust to tell two writes apart: FAT/HFS+ and some network
#: filesystems keep 1-2 s, and Linux stamps files from a clock that ticks in milliseconds.
DEFAULT_GRANULARITY_NS: Final = 2_000_000_000

Clock = Callable[[], int]


@dataclass
class ReconcileReport:
    """What a reconcile changed (or, dry run, would change), by member name."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.released)


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


@dataclass
class Plan:
    observations: list[Observation]
    old: dict[Key, StoredRow]
    removed: list[Key]
    dead: list[Reservation]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    conn: sqlite3.Connection
    data_version: int
    entries: list[MemberDir]
    racy: int
    reservations: list[Reservation]


def encodable(text: str) -> bool:
    """False for names holding undecodable bytes, which SQLite TEXT cannot store."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
        self._snapshot: _Snapshot | None = None

    def invalidate(self) -> None:
        """Forget the snapshot: this connection wrote, which data_version does not show."""
        self._snapshot = None

    # -- the no-change path: no lock, no write, no parse ----------------------------------

    def is_current(self, conn: sqlite3.Connection, scan: Scan) -> bool:
        snap = self._load_snapshot(conn)
        if snap.racy or scan.unreadable_clusters:
            return False
        if any(not owners.is_alive(_owner(r)) for r in snap.reservations):
            return False
        return scan.members == snap.entries

    def _load_snapshot(self, conn: sqlite3.Connection) -> _Snapshot:
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        snap = self._snapshot
        if snap is not None and snap.conn is conn and snap.data_version == version:
            return snap
        with _read_txn(conn):
            rows = queries.signatures(conn)
            racy = queries.racy_count(conn, self.granularity_ns)
            reservations = queries.reservations(conn)
        entries = [
            MemberDir(c, n, None if i is None else Signature(i, s, m, t), None)
            for c, n, i, s, m, t in rows
        ]
        self._snapshot = _Snapshot(conn, version, entries, racy, reservations)
        return self._snapshot

    # -- the diff -------------------------------------------------------------------------

    def plan(self, conn: sqlite3.Connection, scan: Scan, full: bool = False) -> Plan:
        """Read what changed since the index last looked; takes no lock."""
        with _read_txn(conn):
            stored = queries.stored_rows(conn)
            signatures = {(r[0], r[1]): r[2:] for r in queries.signatures(conn)}
            reservations = queries.reservations(conn)
        old: dict[Key, StoredRow] = {}
        observations: list[Observation] = []
        for member in scan.members:
            key = (member.cluster, member.name)
            if not (encodable(member.cluster) and encodable(member.name)):
                continue
            row = stored.pop(key, None)
            if row is not None:
                old[key] = row
                sig = member.signature
                recorded = signatures[key]
                same = (tuple(sig) if sig else (None, None, None, None)) == tuple(recorded)
                if same and not full and not self._racy(row) and member.error is None:
                    continue
            observations.append(self.observe(member))
        skipped = set(scan.unreadable_clusters)
        removed = [key for key in stored if key[0] not in skipped]
        for key in removed:
            old[key] = stored[key]
        dead = [r for r in reservations if not owners.is_alive(_owner(r))]
        return Plan(observations, old, removed, dead)

    def _racy(self, row: StoredRow) -> bool:
        if row.mtime_ns is None or row.verified_ns is None:
            return False
        return row.mtime_ns + self.granularity_ns > row.verified_ns

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

    def apply(self, conn: sqlite3.Connection, plan: Plan, dry_run: bool = False) -> ReconcileReport:
        """Write the plan; the caller holds the write transaction (unless dry_run).

        Every observation is re-checked under the lock, so what is written is what disk holds
        now even if another process changed the file after the lock-free read.
        """
        report = ReconcileReport()
        for seen in plan.observations:
            obs = seen if dry_run else self._confirm(seen)
            old = plan.old.get(obs.key)
            same = old is not None and old.digest == obs.digest and old.state == obs.state
            if old is None:
                report.added.append(obs.key[1])
            elif not same:
                report.updated.append(obs.key[1])
            if obs.state == "unreadable":
                report.unreadable.append(obs.key[1])
            if not dry_run:
                self._write(conn, obs, old, same)
        for key in plan.removed:
            if dry_run or not os.path.isdir(f"{self.clusters_dir}/{key[0]}/{key[1]}"):
                report.removed.append(key[1])
        dead = [r for r in plan.dead if dry_run or not owners.is_alive(_owner(r))]
        report.released = [r.name for r in dead]
        if not dry_run:
            gone = [k for k in plan.removed if k[1] in report.removed]
            queries.delete_members(conn, gone)
            queries.delete_reservations(conn, (r.id for r in dead))
            self.invalidate()
        return report

    def _confirm(self, obs: Observation) -> Observation:
        path = f"{self.clusters_dir}/{obs.key[0]}/{obs.key[1]}/config.json"
        try:
            now = Signature.of(os.stat(path))
        except OSError:
            now = None
        if now == obs.signature and obs.present == (now is not None):
            return obs
        return self.observe(MemberDir(obs.key[0], obs.key[1], now, None))

    def _write(
        self, conn: sqlite3.Connection, obs: Observation, old: StoredRow | None, same: bool
    ) -> None:
        if same and old is not None and obs.signature is not None:
            settled = obs.signature.mtime_ns + self.granularity_ns <= obs.verified_ns
            if old.verified_ns is not None and old.mtime_ns == obs.signature.mtime_ns:
                if settled:
                    queries.set_verified(conn, obs.key, obs.verified_ns)
                return
        sig = tuple(obs.signature) if obs.signature is not None else None
        vm = None if same else obs.vm
        queries.put_member(conn, obs.key, obs.state, sig, obs.verified_ns, obs.digest, vm)
        if not obs.present:
            queries.clear_config(conn, obs.key)


def _owner(r: Reservation) -> owners.Owner:
    return (r.owner_pid, r.owner_boot, r.owner_start)


class _read_txn:
    """BEGIN ... COMMIT around several SELECTs so they see one snapshot."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.began = False

    def __enter__(self) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
            self.began = True

    def __exit__(self, *exc: object) -> None:
        if self.began:
            self.conn.execute("COMMIT")
