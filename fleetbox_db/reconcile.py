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
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fleetbox_db import owners, queries, reservations
from fleetbox_db.config import VM, decode_config
from fleetbox_db.dbnames import Key
from fleetbox_db.disk import MemberDir, Scan, Signature, read_config_bytes
from fleetbox_db.errors import ConfigError
from fleetbox_db.ipam import format_ipv4
from fleetbox_db.paths import cluster_name, name_bytes
from fleetbox_db.queries import Conflict, StoredRow
from fleetbox_db.reservations import Reservation
from fleetbox_db.rows import ip_key, mac_key

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


@dataclass
class _Snapshot:
    conn: sqlite3.Connection
    data_version: int
    entries: list[MemberDir]
    racy: set[Key]
    reservations: list[Reservation]
    _by_key: dict[Key, MemberDir] | None = None

    @property
    def by_key(self) -> dict[Key, MemberDir]:
        """The entries by (cluster, name), built on the first diff that needs it."""
        if self._by_key is None:
            self._by_key = {(e[0], e[1]): e for e in self.entries}
        return self._by_key


class _AnyError(str):
    """Equal to any stat error text (and, with none_too, to None): the index keeps no error
    text, only the fact that a row with no signature was unreadable or stray.

    A str subclass, so == against the scan's str tries this __eq__ first; the no-change
    comparison stays one list == list.
    """

    __slots__ = ()
    none_too = False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) or (self.none_too and other is None)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]


class _AnyErrorOrNone(_AnyError):
    __slots__ = ()
    none_too = True


#: What the scan shows for a row without a signature: "unreadable" means config.json exists
#: but stat or open failed; a stray row looks the same whether its config is missing or not
#: (_write keeps no config for either, so both give the same row).
_NO_FILE: Final[dict[str, str | None]] = {
    "configless": None,
    "unreadable": _AnyError("unreadable"),
    "stray": _AnyErrorOrNone("stray"),
}


def _no_file(cluster: str, name: str, configless: set[str]) -> str | None:
    """What the scan shows as error for a row recorded without a signature."""
    if cluster_name(name) != cluster:
        return _NO_FILE["stray"]
    return None if name in configless else _NO_FILE["unreadable"]


def _expected(cluster: str, name: str, sig: tuple[Any, ...], state: str) -> MemberDir:
    """The MemberDir a scan shows for a row whose config.json has signature *sig*."""
    if sig[0] is None:
        return MemberDir(cluster, name, None, _NO_FILE.get(state))
    return MemberDir(cluster, name, Signature(*sig), None)


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

    def _load_snapshot(self, conn: sqlite3.Connection) -> _Snapshot:
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        snap = self._snapshot
        if snap is not None and snap.conn is conn and snap.data_version == version:
            return snap
        with queries.snapshot(conn):
            rows = queries.signatures(conn)
            racy = queries.racy_keys(conn, self.granularity_ns)
            held = reservations.every(conn)
            # Rows without a signature need their state (configless or not); usually few.
            unsigned = any(r[2] is None for r in rows)
            configless = set(queries.names_in_state(conn, "configless")) if unsigned else set()
        # tuple.__new__ skips the NamedTuple constructors: this runs for every row whenever
        # another process wrote, and the constructors were half its cost.
        new, member, signature = tuple.__new__, MemberDir, Signature
        entries = [
            new(member, (c, n, new(signature, (i, s, m, t)), None))
            if i is not None
            else member(c, n, None, _no_file(c, n, configless))
            for c, n, i, s, m, t in rows
        ]
        self._snapshot = _Snapshot(conn, version, entries, racy, held)
        return self._snapshot

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
        if not dry_run and _data_version(conn) != plan.data_version:
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
            self._preview(conn, plan, kept, report)
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
        # A stray config that cannot even be stat-ed holds nothing, as a missing one: both
        # leave rows the scan cannot tell apart (_NO_FILE).
        if not obs.present or (obs.signature is None and obs.state == "stray"):
            queries.clear_config(conn, obs.key)

    def _preview(
        self,
        conn: sqlite3.Connection,
        plan: Plan,
        observations: list[Observation],
        report: ReconcileReport,
    ) -> None:
        """Fill report.unreadable and .conflicts as the index would hold them after *plan*."""
        rows = {(c, n): (state, vm) for c, n, state, vm in queries.all_members(conn)}
        for key in plan.removed:
            rows.pop(key, None)
        for obs in observations:
            last = rows.get(obs.key, ("", None))[1]
            # As _write does: an unreadable file keeps its last good config, a missing one
            # (or a stray one without a signature) none.
            keeps = obs.present and not (obs.signature is None and obs.state == "stray")
            vm = obs.vm if obs.vm is not None else (last if keeps else None)
            rows[obs.key] = (obs.state, vm)
        ordered = sorted(rows.items(), key=lambda item: _byte_order(item[0]))
        report.unreadable = [key[1] for key, (state, _) in ordered if state == "unreadable"]
        report.conflicts = conflicts_among((key[1], vm) for key, (_, vm) in ordered if vm)


def conflicts_among(configs: Iterable[tuple[str, VM]]) -> list[Conflict]:
    """Every IP, then every MAC, that more than one (member name, config) claims, by value.

    Grouped as the index groups them: IPs as addresses, MACs case-insensitively.
    """
    by_ip: dict[int, list[str]] = defaultdict(list)
    by_mac: dict[str, list[str]] = defaultdict(list)
    for name, vm in configs:
        ip, mac = ip_key(vm.ip), mac_key(vm.mac)
        if ip is not None:
            by_ip[ip].append(name)
        if mac is not None:
            by_mac[mac].append(name)
    found = [Conflict("ip", format_ipv4(v), tuple(n)) for v, n in sorted(by_ip.items())]
    found += [Conflict("mac", v, tuple(n)) for v, n in sorted(by_mac.items())]
    return [c for c in found if len(c.members) > 1]


def _byte_order(key: Key) -> tuple[bytes, bytes]:
    """Go's List() order, which code-point order matches only for names that are UTF-8."""
    return name_bytes(key[0]), name_bytes(key[1])


_NO_SIGNATURE: Final = (None, None, None, None)


def _sig_tuple(sig: Signature | None) -> tuple[int | None, ...]:
    """A signature as the index stores it: four NULLs when there is no regular file."""
    return _NO_SIGNATURE if sig is None else tuple(sig)


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _owner(r: Reservation) -> owners.Owner:
    return (r.owner_pid, r.owner_boot, r.owner_start)
