"""The Store: the Go-compatible tree on disk, with the SQLite index kept in step with it.

Disk is canonical. The Store composes the two parts and holds no SQL: each method checks
its arguments (rules), does what disk must (disk), and asks or tells the index (a Mirror),
which reconciles with disk first; writes that must be unique (names, IPs, MACs) run inside
the index's one write transaction, so two processes can never both pass the same check.
When the index cannot be used (IndexAccessError), answers come from disk alone.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from fleetbox_db.disk import files, member
from fleetbox_db.disk.locks import Lock
from fleetbox_db.disk.observe import observe_all
from fleetbox_db.disk.problems import disk_problems
from fleetbox_db.disk.scan import Scan, collector_paused
from fleetbox_db.errors import (
    FleetboxError,
    IndexAccessError,
    InvalidValueError,
    LockedError,
    NoStoreError,
    VMExistsError,
    VMNotFoundError,
)
from fleetbox_db.index.connection import DEFAULT_BUSY_TIMEOUT
from fleetbox_db.index.history import history_filters
from fleetbox_db.index.mirror import Mirror
from fleetbox_db.index.reconcile import DEFAULT_GRANULARITY_NS, Progress
from fleetbox_db.index.sql import DEFAULT_TIMEOUT as DEFAULT_QUERY_TIMEOUT
from fleetbox_db.index.transaction import WriteTransaction
from fleetbox_db.logs import log
from fleetbox_db.records import (
    VM,
    Entry,
    Event,
    Key,
    Problem,
    QueryResult,
    ReconcileReport,
    Removal,
)
from fleetbox_db.rules.config import writable_config
from fleetbox_db.rules.ipam import (
    Addresses,
    Subnet,
    addresses,
    format_ipv4,
    ip_or_mac,
    optional_subnet,
    required_subnet,
)
from fleetbox_db.rules.layout import (
    Layout,
    cluster_name,
    is_stray,
    member_key,
    member_label,
    resolve_root,
    validate_cluster,
    validate_name,
)
from fleetbox_db.rules.targets import resolve_members
from fleetbox_db.rules.validate import accept

__all__ = ["Store"]


T = TypeVar("T")


class Answers(Protocol):
    """The questions both the index (IndexAnswers) and disk alone (DiskAnswers) answer."""

    def vms(self) -> builtins.list[VM]: ...
    def member_names(self, cluster: str) -> builtins.list[str]: ...
    def entries(self, cluster: str | None = None) -> builtins.list[Entry]: ...
    def named(self, name: str) -> builtins.list[Entry]: ...
    def free_ranges(self, net: Subnet, limit: int | None) -> builtins.list[tuple[int, int]]: ...
    def who_has(self, ip: int | None, mac: str | None) -> str | None: ...
    def holders(self, ip: int | None, mac: str | None) -> builtins.list[str]: ...


class Store(Layout):
    """One storage root. Use Store.open(); not shared between threads (one per thread).

    Its paths are the Layout's (Go's accessors); its operations are below.
    """

    __slots__ = ("_mirror", "_warned")

    def __init__(
        self,
        root: Path | str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], int] | None = None,
        granularity_ns: int = DEFAULT_GRANULARITY_NS,
        progress: Progress | None = None,
        history_limit: int | None = None,
    ) -> None:
        super().__init__(root)
        if history_limit is not None and (type(history_limit) is not int or history_limit < 1):
            raise InvalidValueError(
                f"history_limit must be a positive integer, not {history_limit!r}"
            )
        self._mirror = Mirror(
            self,
            busy_timeout=busy_timeout,
            clock=clock,
            granularity_ns=granularity_ns,
            progress=progress,
            history_limit=history_limit,
        )
        self._warned: set[str] = set()

    @classmethod
    def open(
        cls,
        path: Path | str | None = None,
        *,
        create: bool = True,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], int] | None = None,
        granularity_ns: int = DEFAULT_GRANULARITY_NS,
        progress: Progress | None = None,
        history_limit: int | None = None,
    ) -> Store:
        """Open the root at *path*, or the one the Go tool uses (SPEC §2) when None.

        Creates <root>, clusters/, images/ and run/ (mode 0755) and nothing else; the index
        is opened on first use. With create=False nothing is created, and a root without
        clusters/ raises NoStoreError (a StorageRootError), so a mistyped path is not
        mistaken for an empty store. *progress(done, total)* is called as configs are read
        by any long reconcile (the first build, a cold index) and by check(). Tuning (and
        tests): busy_timeout (seconds), clock (the filesystem's "now" in ns; default: read
        off a file in the root), granularity_ns, history_limit (events kept, default
        100,000; stored in the index at the first write). Raises StorageRootError.
        """
        root = resolve_root() if path is None else Path(path)
        store = cls(
            root,
            busy_timeout=busy_timeout,
            clock=clock,
            granularity_ns=granularity_ns,
            progress=progress,
            history_limit=history_limit,
        )
        if not create:
            if not store.clusters_dir.is_dir():
                raise NoStoreError(
                    f"no fleetbox store at {root} (it has no clusters/ directory); check "
                    "the path, or open it with create=True to start one",
                    path=root,
                )
            return store
        for directory in (store.base_dir, store.clusters_dir, store.images_dir, store.run_dir):
            files.make_dirs(directory)
        return store

    def close(self) -> None:
        """Release the index; safe to call twice."""
        self._mirror.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- disk records ---------------------------------------------------------------------

    def ensure_dir(self, name: str) -> Path:
        """mkdir -p the member directory; idempotent. Raises DiskError for a symlink."""
        return member.ensure_dir(self, name)

    def exists(self, name: str) -> bool:
        """True when config.json exists (any stat error counts as absent, as in Go).

        *name* may be ``cluster/name`` (rules.layout.member_key), which reaches a stray."""
        try:
            os.stat(self.key_dir(member_key(name)) / "config.json")
        except OSError:
            return False
        return True

    def load(self, name: str) -> VM:
        """Read config.json from disk; *name* may be ``cluster/name`` (a stray).

        Raises VMNotFoundError, ConfigError."""
        return member.load(self, member_key(name))

    def create(self, vm: VM, subnet: str | None = None) -> VM:
        """Write a new member's config; returns the VM as written.

        Fills an empty mac with generate_mac(); allocates the lowest free IP of *subnet* when
        vm.ip is empty. Raises VMExistsError, IPConflictError, MACConflictError,
        SubnetExhaustedError, InvalidValueError; nothing is written on any error.
        """
        net = optional_subnet(subnet)
        vm, data, ip = accept(vm, net, fill_mac=True)

        def operation(tx: WriteTransaction) -> VM:
            path = self.config_path(vm.name)
            if os.path.lexists(path):
                raise VMExistsError(
                    f"vm {vm.name!r} already exists at {path}; delete it or choose another name",
                    name=vm.name,
                    path=path,
                )
            written, held = data, ip
            if held is None and net is not None:
                held = tx.allocate(vm.name, net)
                vm.ip = format_ipv4(held)
                written = writable_config(vm)
            tx.check_unique(vm, held, path)
            made = member.make_new_member_dir(self, vm.name)
            try:
                self._write_config(tx, vm.name, written)
            except BaseException:
                if not tx.wrote:  # nothing reached disk: leave no empty member behind
                    member.remove_made(made)
                raise
            return vm

        return self._mirror.write(operation)

    def save(self, vm: VM) -> VM:
        """Atomically overwrite an existing member's config; returns the VM as written.

        Raises VMNotFoundError (no member directory), IPConflictError, MACConflictError,
        InvalidValueError; nothing is written on any error.
        """
        vm, data, ip = accept(vm)
        member_dir = self.vm_dir(vm.name)

        def operation(tx: WriteTransaction) -> VM:
            if not member_dir.is_dir():
                raise VMNotFoundError(
                    f"vm {vm.name!r} has no directory at {member_dir}; use create()",
                    name=vm.name,
                    path=member_dir,
                )
            tx.check_unique(vm, ip, self.config_path(vm.name))
            self._write_config(tx, vm.name, data)
            return vm

        return self._mirror.write(operation)

    def delete(self, name: str) -> None:
        """Remove the member directory (never following symlinks out of it), its sockets,
        the cluster directory if now empty, and its rows and reservations in the index.

        *name* may be ``cluster/name``, which reaches a stray. The member's .lock is taken
        (non-blocking) for the removal. Raises VMNotFoundError when the member directory is
        absent, LockedError when the VM is running (another process holds its lock).
        """
        self._delete(member_key(name))

    def _delete(self, key: Key, dry_run: bool = False) -> None:
        member_dir = self.key_dir(key)
        if not os.path.lexists(member_dir):
            raise VMNotFoundError(
                f"vm {member_label(key)!r} does not exist (no directory at {member_dir})"
                f"{member.stray_hint(self, key.name)}",
                name=key.name,
                path=member_dir,
            )
        lock = member.hold_for_removal(self, key, probe=dry_run)
        try:
            if dry_run:
                return
            try:
                self._mirror.forget(key, lambda: member.remove(self, key))
            except IndexAccessError as exc:
                if os.path.lexists(member_dir):
                    self._warn(exc)
                    member.remove(self, key)
        finally:
            if lock is not None:
                lock.unlock()

    def remove(
        self,
        targets: Sequence[str] | None,
        *,
        dry_run: bool = False,
        confirm: Callable[[builtins.list[str]], bool] | None = None,
    ) -> Removal:
        """Delete members by name or cluster as the Go CLI's `rm` picks them (see
        rules.targets.resolve_members; ``cluster/name`` reaches a stray), or every member
        when *targets* is None.

        *confirm(labels)* is asked once with everything chosen, before anything goes; when
        it says no, nothing is removed (``confirmed`` is False). dry_run removes nothing and
        reports what would go, running members (LockedError) in ``failed``. Members that
        vanish meanwhile or are running are reported in ``failed``, not raised. Raises
        InvalidNameError first.
        """
        for target in targets or ():
            member_key(target)
        found = self._scan()
        try:
            self._mirror.sync(found)
        except IndexAccessError as exc:
            self._warn(exc)
        keys = [m.key for m in found.members]
        chosen, unknown = (keys, []) if targets is None else resolve_members(keys, targets)
        result = Removal(dry_run=dry_run)
        for pattern in unknown:
            hint = member.stray_hint(self, pattern) if "/" not in pattern else ""
            if hint:
                result.failed.append(VMNotFoundError(f"no member named {pattern!r}{hint}"))
            else:
                result.unknown.append(pattern)
        labels = [member_label(k) for k in chosen]
        if confirm is not None and chosen and not dry_run and not confirm(labels):
            result.confirmed = False
            return result
        for key, label in zip(chosen, labels, strict=True):
            try:
                self._delete(key, dry_run)
            except (VMNotFoundError, LockedError) as exc:  # removed meanwhile, or running
                result.failed.append(exc)
                continue
            result.removed.append(label)
        return result

    # -- answers ------------------------------------------------------------------------

    def list(self) -> builtins.list[str]:
        """Every member directory name, cluster-sorted then member-sorted (Go's List() order).

        Records the scan in the index when the write lock is free; the answer itself always
        comes from the scan, so it needs no in-memory reconcile when the lock is taken.
        """
        # One pause for the scan and the snapshot compare: collections started by the scan's
        # short-lived tuples would traverse the caller's whole heap (see collector_paused).
        with collector_paused():
            found = self._scan()
            try:
                self._mirror.sync(found)
            except IndexAccessError as exc:
                self._warn(exc)
            names = [m.name for m in found.members]
            del found  # freed while paused, or the first collection after would visit it all
        return names

    def vms(self) -> builtins.list[VM]:
        """Every member whose own config.json parses now, in list() order."""
        return self._ask(lambda answers: answers.vms(), leases=None)

    def members(self, cluster: str) -> builtins.list[str]:
        """Names of the member directories under clusters/<cluster>/, in list() order."""
        validate_cluster(cluster)
        return self._ask(lambda answers: answers.member_names(cluster), leases=None, contents=False)

    def entries(self, cluster: str | None = None) -> builtins.list[Entry]:
        """Every member directory (of *cluster*, if given) with its state and last good
        config, in list() order (for `ls`)."""
        if cluster is not None:
            validate_cluster(cluster)
        return self._ask(lambda answers: answers.entries(cluster), leases=None)

    def entry(self, name: str) -> Entry:
        """The member directory `show` shows: the one Go finds by *name*, else a stray copy;
        ``cluster/name`` names one directory exactly.

        Raises VMNotFoundError, InvalidNameError.
        """
        key = member_key(name)
        explicit = "/" in name
        named = self._ask(lambda answers: answers.named(key.name), leases=None)
        found = [e for e in named if not explicit or e.cluster == key.cluster]
        if not found:
            raise VMNotFoundError(
                f"vm {name!r} does not exist in {self.clusters_dir}; see `fleetbox-db ls`",
                name=key.name,
            )
        return min(found, key=lambda e: is_stray(e.cluster, e.name))

    def free_ips(self, subnet: str, limit: int | None = None) -> builtins.list[str]:
        """Ascending free host addresses of *subnet*. Raises InvalidValueError."""
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidValueError(f"limit must be a non-negative integer, not {limit!r}")
        return builtins.list(self._free_ips(subnet, limit))

    def iter_free_ips(self, subnet: str) -> Iterator[str]:
        """free_ips(subnet) one address at a time, for subnets too large to list: the index
        is reconciled and the free ranges read by this call, the addresses made on demand.
        Raises InvalidValueError."""
        return self._free_ips(subnet, None)

    def _free_ips(self, subnet: str, limit: int | None) -> Iterator[str]:
        net = required_subnet(subnet)
        if net.size_hosts == 0 or limit == 0:
            return iter(())
        ranges = self._ask(
            lambda answers: answers.free_ranges(net, limit), leases=net.addresses, contents=False
        )
        return map(format_ipv4, addresses(ranges, limit))

    def allocate_ip(self, name: str, subnet: str) -> str:
        """Reserve the lowest free address of *subnet* for *name*; idempotent per both.

        Safe across processes. Raises SubnetExhaustedError, InvalidValueError.
        """
        validate_name(name)
        net = required_subnet(subnet)
        return self._mirror.write(lambda tx: format_ipv4(tx.allocate(name, net)))

    def who_has(self, value: str) -> str | None:
        """The member name holding an IP or MAC, or None: a convenience that gives the first
        when several members claim it (a conflict); holders() gives every one.

        Raises InvalidValueError."""
        ip, mac = ip_or_mac(value)
        return self._ask(lambda answers: answers.who_has(ip, mac), leases=_only(ip), contents=False)

    def holders(self, value: str) -> builtins.list[str]:
        """Every member whose config claims an IP or MAC (a stray as ``cluster/name``), in
        list() order, then a live reservation's holder of that IP; [] when none.

        More than one name is a conflict to fix. Raises InvalidValueError."""
        ip, mac = ip_or_mac(value)
        return self._ask(lambda answers: answers.holders(ip, mac), leases=_only(ip), contents=False)

    def reconcile(
        self,
        full: bool = False,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> ReconcileReport:
        """Bring the index in line with disk (full: re-read every config, and remove the temp
        files that writes killed mid-way left, older than a minute); the report also lists
        every unreadable member and conflict. dry_run changes nothing.

        *progress(done, total)* is called after each batch of configs read.
        """
        return self._mirror.reconcile(full=full, dry_run=dry_run, progress=progress)

    def check(self) -> builtins.list[Problem]:
        """Problems on disk now and the index's drift from it; changes nothing."""
        found = self._scan()
        try:
            problems = self._mirror.check(found)
        except IndexAccessError as exc:
            return [*self._disk_problems(found), Problem("index", (), "", f"index not used: {exc}")]
        return self._disk_problems(found) if problems is None else problems

    def history(
        self,
        member: str | None = None,
        since: datetime | timedelta | None = None,
        kinds: Iterable[str] | None = None,
        limit: int | None = 1000,
        *,
        ip: str | None = None,
    ) -> builtins.list[Event]:
        """The newest *limit* recorded events (None: all kept), oldest first, after bringing
        the index in line with disk (waiting for the write lock if a change must be recorded).

        *member* is a name or ``cluster/name``; *since* a time or an age; *kinds* event kinds
        (records.EventKind); *ip* an address: events of members that held it. Raises
        InvalidValueError, IndexAccessError (there is no history without the index).
        """
        return self._mirror.history(**history_filters(member, since, kinds, limit, ip))

    def query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] = (),
        *,
        timeout: float = DEFAULT_QUERY_TIMEOUT,
    ) -> QueryResult:
        """Run one read-only SELECT over the public views (vms, fixtures, addresses,
        reservations, events, problems) after bringing the index in line with disk.

        The statement runs on a read-only connection and is stopped after *timeout* seconds.
        Raises QueryRefusedError (a write, ATTACH, PRAGMA, load_extension, an internal
        table, several statements, invalid SQL), QueryTimeoutError, IndexAccessError.
        """
        if not isinstance(timeout, int | float) or not timeout > 0:
            raise InvalidValueError(
                f"timeout must be a positive number of seconds, not {timeout!r}"
            )
        return self._mirror.query(sql, params, float(timeout))

    def views(self) -> QueryResult:
        """The public views query() reads: (view, columns, description) rows."""
        return self._mirror.views()

    def migrate(self) -> str:
        """Upgrade the index schema to head (opening it does so) and return its revision.

        Raises IndexSchemaError for an index newer than this code, IndexUnavailableError.
        """
        revision = self._mirror.revision()
        assert revision is not None
        return revision

    def try_lock(self, name: str) -> Lock:
        """Non-blocking exclusive flock on <m>/.lock. Raises LockedError, VMNotFoundError."""
        return member.try_lock(self, name)

    # -- how each operation reaches disk and the index -----------------------------------

    def _ask(
        self,
        question: Callable[[Answers], T],
        *,
        leases: Addresses | None,
        contents: bool = True,
    ) -> T:
        """*question* answered by the index, reconciled with one scan of disk; by disk alone
        (one warning per cause) when the index cannot be used. *leases*: the addresses the
        answer shows, whose leases are compared (None: none); *contents* False: it shows no
        config beyond its addresses, so one caught mid-write is not waited for
        (Mirror.answer)."""
        with collector_paused():  # as in list(): the scan's tuples die before any collection
            found = self._scan()
            try:
                answer = self._mirror.answer(found, question, leases=leases, contents=contents)
            except IndexAccessError as exc:
                self._warn(exc)
                from fleetbox_db.disk.fallback import DiskAnswers  # only without an index

                # The process clock: nothing is recorded, and the filesystem's touches a file.
                answer = question(DiskAnswers(self.clusters_dir, found, time.time_ns))
            del found
        return answer

    def _scan(self) -> Scan:
        found = self._mirror.scan()
        log.info("scanned %d member directories under %s", len(found.members), self.clusters_dir)
        return found

    def _disk_problems(self, found: Scan) -> builtins.list[Problem]:
        observations = observe_all(self.clusters_dir, found, time.time_ns, self._mirror.progress)
        return disk_problems(self.clusters_dir, observations, found.unreadable_clusters)

    def _write_config(self, tx: WriteTransaction, name: str, data: bytes) -> None:
        """Write config.json atomically and record it; inside *tx*."""
        signature = member.write_config(self, name, data)
        tx.record_written(Key(cluster_name(name), name), data, signature)

    def _warn(self, exc: FleetboxError) -> None:
        kind = type(exc).__name__
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("%s; answering from disk", exc)


def _only(ip: int | None) -> Addresses | None:
    """The one address a who_has or holders answer shows (none for a MAC)."""
    return None if ip is None else Addresses(ip, ip)
