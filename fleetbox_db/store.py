"""The Store: the Go-compatible tree on disk, with the SQLite index kept in step with it.

Disk is canonical. Every answer starts from a scan of clusters/ and brings the index in line
with it first; writes that must be unique (names, IPs, MACs) run inside the index's one
write transaction, so two processes can never both pass the same check.
"""

from __future__ import annotations

import builtins
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from fleetbox_db import allocation, disk, diskview, locks, queries, reservations, schema
from fleetbox_db.checks import Entry, Problem, entries_from_index, find_problems
from fleetbox_db.config import VM, decode_config, encode_config
from fleetbox_db.errors import (
    ConfigError,
    DiskError,
    InvalidValueError,
    VMExistsError,
    VMNotFoundError,
)
from fleetbox_db.ipam import addresses, format_ipv4, generate_mac, parse_ipv4
from fleetbox_db.paths import (
    cluster_name,
    resolve_root,
    validate_cluster,
    validate_name,
)
from fleetbox_db.reconcile import (
    Progress,
    ReconcileReport,
)
from fleetbox_db.sweep import sweep
from fleetbox_db.synced import DEGRADED, SyncedRoot

log = logging.getLogger("fleetbox_db")


class Store(SyncedRoot):
    """One storage root. Use Store.open(); not shared between threads (one per thread)."""

    @classmethod
    def open(cls, path: Path | str | None = None, **options: object) -> Store:
        """Open the root at *path*, or the one the Go tool uses (SPEC §2) when None.

        Creates <root>, clusters/, images/ and run/ (mode 0755) and nothing else; the index
        is opened on first use. Raises StorageRootError.
        """
        store = cls(resolve_root() if path is None else Path(path), **options)  # type: ignore[arg-type]
        for directory in (store.base_dir, store.clusters_dir, store.images_dir, store.run_dir):
            disk.make_dirs(directory)
        return store

    def close(self) -> None:
        """Release the index; safe to call twice."""
        self._index.close()

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
        path = self.vm_dir(name)
        self._refuse_symlinks(name)
        disk.make_dirs(path)
        return path

    def _refuse_symlinks(self, name: str) -> None:
        link = disk.symlink_on_the_way(self.clusters_dir, cluster_name(name), name)
        if link is not None:
            raise DiskError(
                f"{link} is a symlink; vm {name!r} is not written through it (the Go tool does "
                "not list it either): replace it with a real directory",
                name=name,
                path=link,
            )

    def exists(self, name: str) -> bool:
        """True when config.json exists (any stat error counts as absent, as in Go)."""
        try:
            os.stat(self.config_path(name))
        except OSError:
            return False
        return True

    def load(self, name: str) -> VM:
        """Read config.json from disk. Raises VMNotFoundError, ConfigError."""
        path = self.config_path(name)
        try:
            data, _ = disk.read_config_bytes(path)
        except FileNotFoundError:
            raise VMNotFoundError(
                f"vm {name!r} has no config at {path}; create it first", name=name, path=path
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"config of vm {name!r} at {path} cannot be read: {exc.strerror or exc}; "
                "check its permissions",
                name=name,
                path=path,
            ) from exc
        return decode_config(data, path)

    def create(self, vm: VM, subnet: str | None = None) -> VM:
        """Write a new member's config; returns the VM as written.

        Fills an empty mac with generate_mac(); allocates the lowest free IP of *subnet* when
        vm.ip is empty. Raises VMExistsError, IPConflictError, MACConflictError,
        SubnetExhaustedError, InvalidValueError; nothing is written on any error.
        """
        net = allocation.optional_subnet(subnet)
        vm = allocation.checked(vm, net)
        if not vm.mac:
            vm.mac = generate_mac(vm.name)

        def operation(_: sqlite3.Connection) -> VM:
            with self._writing() as conn:
                path = self.config_path(vm.name)
                if os.path.lexists(path):
                    raise VMExistsError(
                        f"vm {vm.name!r} already exists at {path}; delete it or choose "
                        "another name",
                        name=vm.name,
                        path=path,
                    )
                if not vm.ip and net is not None:
                    vm.ip = format_ipv4(allocation.allocate(conn, vm.name, net))
                allocation.check_unique(conn, vm, self.config_path(vm.name))
                self.ensure_dir(vm.name)
                self._write_config(conn, vm)
            return vm

        return self._indexed(operation)

    def save(self, vm: VM) -> VM:
        """Atomically overwrite an existing member's config; returns the VM as written.

        Raises VMNotFoundError (no member directory), IPConflictError, MACConflictError,
        InvalidValueError; nothing is written on any error.
        """
        vm = allocation.checked(vm, None)
        member_dir = self.vm_dir(vm.name)

        def operation(_: sqlite3.Connection) -> VM:
            with self._writing() as conn:
                if not member_dir.is_dir():
                    raise VMNotFoundError(
                        f"vm {vm.name!r} has no directory at {member_dir}; use create()",
                        name=vm.name,
                        path=member_dir,
                    )
                allocation.check_unique(conn, vm, self.config_path(vm.name))
                self._write_config(conn, vm)
            return vm

        return self._indexed(operation)

    def _write_config(self, conn: sqlite3.Connection, vm: VM) -> None:
        """Write config.json atomically and record it; the caller holds the transaction."""
        path = self.config_path(vm.name)
        self._refuse_symlinks(vm.name)
        try:
            disk.atomic_write(path, encode_config(vm))
        except OSError as exc:
            raise DiskError(
                f"cannot write the config of vm {vm.name!r} at {path}: {exc.strerror or exc}; "
                "check who owns the tree (a sudo run may have created it)",
                name=vm.name,
                path=path,
            ) from exc
        member = disk.MemberDir(cluster_name(vm.name), vm.name, None, None)
        obs = self._reconciler.observe(member)
        signature = tuple(obs.signature) if obs.signature is not None else None
        queries.put_member(conn, obs.key, obs.state, signature, obs.verified_ns, obs.digest, obs.vm)
        if vm.ip:
            reservations.release(conn, vm.name, ip_int=parse_ipv4(vm.ip))

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

        def remove() -> None:
            try:
                removed = disk.remove_member(self.clusters_dir, cluster_name(name), name)
            except OSError as exc:
                raise DiskError(
                    f"cannot remove vm {name!r} at {member_dir}: {exc.strerror or exc}"
                    f"{f' ({exc.filename})' if exc.filename else ''}; check permissions, or "
                    "retry if another process was writing into it",
                    name=name,
                    path=member_dir,
                ) from exc
            if not removed:
                raise VMNotFoundError(
                    f"vm {name!r} does not exist (no directory at {member_dir}, or its "
                    "cluster directory is a symlink, which delete never follows)",
                    name=name,
                    path=member_dir,
                )
            for socket in (self.socket_path(name), self.control_socket_path(name)):
                try:
                    disk.remove_quietly(socket)
                except OSError as exc:  # best effort, as in Go: the member itself is gone
                    log.warning("could not remove %s: %s", socket, exc.strerror or exc)

        def operation(_: sqlite3.Connection) -> None:
            with self._index.write() as conn:
                remove()
                queries.delete_members(conn, [(cluster_name(name), name)])
                reservations.release(conn, name)
                self._reconciler.invalidate()

        try:
            self._indexed(operation)
        except DEGRADED as exc:
            if os.path.lexists(member_dir):
                self._warn(exc)
                remove()

    # -- answers ------------------------------------------------------------------------

    def list(self) -> list[str]:
        """Every member directory name, cluster-sorted then member-sorted (Go's List order).

        Reconciles the index first; the answer itself always comes from the scan.
        """
        scan = disk.scan(self.clusters_dir)
        try:
            self._indexed(lambda conn: self._bring_current(conn, scan))
        except DEGRADED as exc:
            self._warn(exc)
        return [m.name for m in scan.members]

    def vms(self) -> builtins.list[VM]:
        """Every member whose own config.json parses now, in list() order."""
        if self._sync() is None:
            return diskview.vms(self.clusters_dir, disk.scan(self.clusters_dir))
        return self._indexed(lambda conn: self._vms.vms(conn, self._reconciler.snapshot))

    def members(self, cluster: str) -> builtins.list[str]:
        """Names of the member directories under clusters/<cluster>/, in list() order."""
        validate_cluster(cluster)
        if self._sync() is None:
            scan = disk.scan(self.clusters_dir)
            return [m.name for m in scan.members if m.cluster == cluster]
        return self._indexed(lambda conn: queries.member_names(conn, cluster))

    def entries(self) -> builtins.list[Entry]:
        """Every member directory with its state and last good config (for `ls`)."""
        if self._sync() is None:
            return diskview.entries(self.clusters_dir, disk.scan(self.clusters_dir))
        return self._indexed(entries_from_index)

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
        net = allocation.required_subnet(subnet)
        if net.size_hosts == 0 or limit == 0:
            return iter(())
        if self._sync() is None:
            scan = disk.scan(self.clusters_dir)
            ranges = diskview.free_ips(self.clusters_dir, scan, net)
        else:
            ranges = self._indexed(
                lambda conn: queries.free_ranges(conn, net.first_host, net.last_host, limit)
            )
        return map(format_ipv4, addresses(ranges, limit))

    def allocate_ip(self, name: str, subnet: str) -> str:
        """Reserve the lowest free address of *subnet* for *name*; idempotent per both.

        Safe across processes. Raises SubnetExhaustedError, InvalidValueError.
        """
        validate_name(name)
        net = allocation.required_subnet(subnet)

        def operation(_: sqlite3.Connection) -> str:
            with self._writing() as conn:
                return format_ipv4(allocation.allocate(conn, name, net))

        return self._indexed(operation)

    def who_has(self, value: str) -> str | None:
        """The member name holding an IP or MAC, or None. Raises InvalidValueError."""
        ip, mac = allocation.ip_or_mac(value)
        if self._sync() is None:
            return diskview.who_has(self.clusters_dir, disk.scan(self.clusters_dir), ip, mac)

        def lookup(conn: sqlite3.Connection) -> str | None:
            if ip is not None:
                holders = queries.holders_of_ip(conn, ip)
                return holders[0][1] if holders else reservations.holder(conn, ip)
            assert mac is not None
            holders = queries.holders_of_mac(conn, mac)
            return holders[0][1] if holders else None

        return self._indexed(lookup)

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

        def operation(conn: sqlite3.Connection) -> ReconcileReport:
            scan = disk.scan(self.clusters_dir)
            plan = self._reconciler.plan(conn, scan, full=full)
            now = self._reconciler.clock
            if dry_run:
                report = self._reconciler.apply(conn, plan, dry_run=True, progress=progress)
                if full:
                    report.swept = sweep(self.clusters_dir, scan.members, now(), remove=False)
                return report
            with self._index.write() as wconn:
                report = self._reconciler.apply(wconn, plan, progress=progress)
                if full:  # under the lock that every config write holds
                    report.swept = sweep(self.clusters_dir, scan.members, now())
            report.unreadable = queries.names_in_state(conn, "unreadable")
            report.conflicts = queries.conflicts(conn)
            return report

        return self._indexed(operation)

    def check(self) -> builtins.list[Problem]:
        """Problems on disk now and the index's drift from it; changes nothing."""
        scan = disk.scan(self.clusters_dir)
        if not self.index_path.exists():  # creating one would be a change
            return find_problems(None, self._reconciler, scan)
        try:
            return self._indexed(lambda conn: find_problems(conn, self._reconciler, scan))
        except DEGRADED as exc:
            return find_problems(None, self._reconciler, scan, str(exc))

    def migrate(self) -> str:
        """Upgrade the index schema to head (opening it does so) and return its revision.

        Raises IndexSchemaError for an index newer than this code, IndexUnavailableError.
        """
        revision = self._indexed(schema.current_revision)
        assert revision is not None
        return revision

    def try_lock(self, name: str) -> locks.Lock:
        """Non-blocking exclusive flock on <m>/.lock. Raises LockedError, VMNotFoundError."""
        path = self.lock_path(name)
        self._refuse_symlinks(name)
        try:
            return locks.try_lock(path, name)
        except FileNotFoundError:
            raise VMNotFoundError(
                f"vm {name!r} has no directory at {path.parent}; create it first",
                name=name,
                path=path.parent,
            ) from None
