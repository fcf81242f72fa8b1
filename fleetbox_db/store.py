"""The Store: the Go-compatible tree on disk, with the SQLite index kept in step with it.

Disk is canonical. The Store composes the two parts and holds no SQL: each method checks
its arguments (rules), does what disk must (disk), and asks or tells the index (a Mirror),
which reconciles with disk first; writes that must be unique (names, IPs, MACs) run inside
the index's one write transaction, so two processes can never both pass the same check.
When the index cannot be used (IndexAccessError), answers come from disk alone.
"""

from __future__ import annotations

import builtins
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeVar

from fleetbox_db.disk import files, member
from fleetbox_db.disk.fallback import DiskAnswers
from fleetbox_db.disk.locks import Lock
from fleetbox_db.disk.observe import observe
from fleetbox_db.disk.problems import disk_problems
from fleetbox_db.disk.scan import Scan, scan
from fleetbox_db.errors import (
    FleetboxError,
    IndexAccessError,
    InvalidValueError,
    VMExistsError,
    VMNotFoundError,
)
from fleetbox_db.index.connection import DEFAULT_BUSY_TIMEOUT
from fleetbox_db.index.mirror import Mirror, WriteTransaction
from fleetbox_db.index.reconcile import DEFAULT_GRANULARITY_NS, Progress
from fleetbox_db.records import (
    VM,
    Entry,
    Key,
    Problem,
    ReconcileReport,
    Removal,
)
from fleetbox_db.rules.config import encode_config
from fleetbox_db.rules.ipam import (
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
    resolve_root,
    validate_cluster,
    validate_name,
)
from fleetbox_db.rules.targets import resolve_targets
from fleetbox_db.rules.validate import accept

__all__ = ["Store"]

log = logging.getLogger("fleetbox_db")

T = TypeVar("T")


class Answers(Protocol):
    """The questions both the index (IndexAnswers) and disk alone (DiskAnswers) answer."""

    def vms(self) -> builtins.list[VM]: ...
    def member_names(self, cluster: str) -> builtins.list[str]: ...
    def entries(self, cluster: str | None = None) -> builtins.list[Entry]: ...
    def free_ranges(self, net: Subnet, limit: int | None) -> builtins.list[tuple[int, int]]: ...
    def who_has(self, ip: int | None, mac: str | None) -> str | None: ...


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
    ) -> None:
        super().__init__(root)
        self._mirror = Mirror(
            self, busy_timeout=busy_timeout, clock=clock, granularity_ns=granularity_ns
        )
        self._warned: set[str] = set()

    @classmethod
    def open(cls, path: Path | str | None = None, **options: object) -> Store:
        """Open the root at *path*, or the one the Go tool uses (SPEC §2) when None.

        Creates <root>, clusters/, images/ and run/ (mode 0755) and nothing else; the index
        is opened on first use. Options (tests and tuning): busy_timeout (seconds),
        clock (the filesystem's "now" in ns; default: read off a file in the root),
        granularity_ns. Raises StorageRootError.
        """
        store = cls(resolve_root() if path is None else Path(path), **options)  # type: ignore[arg-type]
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
        """True when config.json exists (any stat error counts as absent, as in Go)."""
        try:
            os.stat(self.config_path(name))
        except OSError:
            return False
        return True

    def load(self, name: str) -> VM:
        """Read config.json from disk. Raises VMNotFoundError, ConfigError."""
        return member.load(self, name)

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
                written = encode_config(vm)
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

        Raises VMNotFoundError when the member directory is absent.
        """
        member_dir = self.vm_dir(name)
        if not os.path.lexists(member_dir):
            raise VMNotFoundError(
                f"vm {name!r} does not exist (no directory at {member_dir})",
                name=name,
                path=member_dir,
            )
        try:
            self._mirror.forget(Key(cluster_name(name), name), lambda: member.remove(self, name))
        except IndexAccessError as exc:
            if os.path.lexists(member_dir):
                self._warn(exc)
                member.remove(self, name)

    def remove(self, targets: Sequence[str] | None) -> Removal:
        """Delete members by name or cluster as the Go CLI's `rm` picks them (see
        rules.targets), or every member when *targets* is None. Members that vanish
        meanwhile are reported in ``failed``, not raised. Raises InvalidNameError first."""
        for target in targets or ():
            validate_name(target)
        names = self.list()
        chosen, unknown = (names, []) if targets is None else resolve_targets(names, targets)
        result = Removal(unknown=unknown)
        for name in dict.fromkeys(chosen):  # a stray copy lists its name twice
            try:
                self.delete(name)
            except VMNotFoundError as exc:  # removed meanwhile, or only a stray copy exists
                result.failed.append(exc)
                continue
            result.removed.append(name)
        return result

    # -- answers ------------------------------------------------------------------------

    def list(self) -> builtins.list[str]:
        """Every member directory name, cluster-sorted then member-sorted (Go's List() order).

        Records the scan in the index when the write lock is free; the answer itself always
        comes from the scan, so it needs no in-memory reconcile when the lock is taken.
        """
        found = scan(self.clusters_dir)
        try:
            self._mirror.sync(found)
        except IndexAccessError as exc:
            self._warn(exc)
        return [m.name for m in found.members]

    def vms(self) -> builtins.list[VM]:
        """Every member whose own config.json parses now, in list() order."""
        return self._ask(lambda answers: answers.vms())

    def members(self, cluster: str) -> builtins.list[str]:
        """Names of the member directories under clusters/<cluster>/, in list() order."""
        validate_cluster(cluster)
        return self._ask(lambda answers: answers.member_names(cluster))

    def entries(self, cluster: str | None = None) -> builtins.list[Entry]:
        """Every member directory (of *cluster*, if given) with its state and last good
        config, in list() order (for `ls`)."""
        if cluster is not None:
            validate_cluster(cluster)
        return self._ask(lambda answers: answers.entries(cluster))

    def entry(self, name: str) -> Entry:
        """The member directory `show` shows: the one Go finds by *name*, else a stray copy.

        Raises VMNotFoundError, InvalidNameError.
        """
        validate_name(name)
        found = [e for e in self.entries() if e.name == name]
        if not found:
            raise VMNotFoundError(
                f"vm {name!r} does not exist in {self.clusters_dir}; see `fleetbox-db ls`",
                name=name,
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
        ranges = self._ask(lambda answers: answers.free_ranges(net, limit))
        return map(format_ipv4, addresses(ranges, limit))

    def allocate_ip(self, name: str, subnet: str) -> str:
        """Reserve the lowest free address of *subnet* for *name*; idempotent per both.

        Safe across processes. Raises SubnetExhaustedError, InvalidValueError.
        """
        validate_name(name)
        net = required_subnet(subnet)
        return self._mirror.write(lambda tx: format_ipv4(tx.allocate(name, net)))

    def who_has(self, value: str) -> str | None:
        """The member name holding an IP or MAC, or None. Raises InvalidValueError."""
        ip, mac = ip_or_mac(value)
        return self._ask(lambda answers: answers.who_has(ip, mac))

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
        found = scan(self.clusters_dir)
        try:
            problems = self._mirror.check(found)
        except IndexAccessError as exc:
            return [*self._disk_problems(found), Problem("index", (), "", f"index not used: {exc}")]
        return self._disk_problems(found) if problems is None else problems

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

    def _ask(self, question: Callable[[Answers], T]) -> T:
        """*question* answered by the index, reconciled with one scan of disk; by disk alone
        (one warning per cause) when the index cannot be used."""
        found = scan(self.clusters_dir)
        try:
            return self._mirror.answer(found, question)
        except IndexAccessError as exc:
            self._warn(exc)
            # The process clock: nothing is recorded, and the filesystem's touches a file.
            return question(DiskAnswers(self.clusters_dir, found, time.time_ns))

    def _disk_problems(self, found: Scan) -> builtins.list[Problem]:
        observations = [observe(self.clusters_dir, m, time.time_ns) for m in found.members]
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
