"""Leases: the addresses allocate_ip() handed out that no config holds yet, as files.

``<root>/leases/<a.b.c.d>`` is one file per leased address (as CNI's host-local plugin
keeps them), holding ``{"name": ..., "subnet": ...}``. Its owner holds an exclusive flock
on it for as long as the lease lives: the kernel drops the lock when the owner exits,
however it exits, so liveness needs no pid, boot id or start time and holds across PID
namespaces (a container sharing the tree). The index mirrors these files like configs;
a lease survives the deletion, quarantine or rebuild of index.db while its owner lives.

A lease ends when the member's config that holds the address is written, or its member is
removed (that writer ends it, whoever holds it: end()), when its owner's transaction rolls
back (release()), or when its owner dies (the next writer removes the file then). Files are
removed only under the index write lock, or by their holder after checking the file is
still the one it locked: a removal by address alone could remove a lease another process
has taken since. The lock is held by an open descriptor of this process, kept in a
process-wide table: a Store closed or dropped does not end its leases, its process does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from pathlib import Path
from typing import Final, NamedTuple

from fleetbox_db.disk import lease_owners
from fleetbox_db.disk.files import chown_to_invoker
from fleetbox_db.disk.locks import flock_within, shared_probe
from fleetbox_db.disk.safeopen import open_regular
from fleetbox_db.rules.ipam import EVERY_ADDRESS, Addresses, format_ipv4, parse_ipv4

__all__ = ["Lease", "end", "is_held", "leases", "read", "release", "remove_dead", "take"]

_CREATE: Final = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_LOCK_WAIT_S: Final = 2.0
_LOCK_POLL_S: Final = 0.0005
#: A lease file holds a name and a subnet; anything longer is not one of ours.
_MAX_LEASE_BYTES: Final = 4096
#: Descriptors holding this process's leases, by file path.
_held: dict[str, int] = {}
_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: Leases leases() read, with their owners, by address and file identity; file names and
#: the addresses they spell. Cleared past this many entries.
_read_before: dict[tuple[int, ...], tuple[Lease, str]] = {}
_named: dict[str, int | None] = {}
_REMEMBERED: Final = 65536
#: How long after its last change a lease file is read again on every listing.
_SETTLED_NS: Final = 2_000_000_000


class Lease(NamedTuple):
    """One lease file: the address, and whom and which subnet it was handed to."""

    ip: int
    name: str
    subnet: str


def take(directory: Path, ip: int, name: str, subnet: str) -> bool:
    """Create and lock the lease of *ip* for *name*; False when a live lease has it.

    A dead owner's file (nobody holds its lock) is removed and taken. The caller holds the
    index write lock, so two of our processes never race here; the exclusive create keeps
    a lease unique even so. OSError propagates (a tree that cannot be written).
    """
    path = _path(directory, ip)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755, exist_ok=True)  # the first lease of this root
        chown_to_invoker(directory)  # under sudo: the user's, like the index
    record = {"name": name, "subnet": subnet, "owner": lease_owners.token(directory)}
    for _ in range(3):
        try:
            fd = os.open(path, _CREATE, 0o644)
        except FileNotFoundError:
            os.makedirs(directory, 0o755, exist_ok=True)
            continue
        except FileExistsError:
            if is_held(directory, ip):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        try:
            _lock(fd)
            os.write(fd, json.dumps(record).encode())
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise
        chown_to_invoker(Path(path))  # a later run as the user may have to remove it
        _forget(path)  # a lease of ours at this address that another writer ended
        _held[path] = fd
        return True
    return False  # pragma: no cover - recreated by another process twice in a row


def _lock(fd: int) -> None:
    """LOCK_EX on a lease file we just created. Only is_held() probes can hold it (a shared
    lock for a few syscalls, from any listing), so retry briefly rather than block."""
    if not flock_within(fd, _LOCK_WAIT_S, _LOCK_POLL_S):
        raise BlockingIOError(errno.EWOULDBLOCK, "a lease file stayed locked by a probe")


def release(directory: Path, ip: int) -> None:
    """End this process's lease of *ip* (its allocation rolled back): drop our lock, and
    remove the file only if it is still the one we locked. No-op for a lease we do not hold.
    """
    path = _path(directory, ip)
    fd = _held.pop(path, None)
    if fd is None:
        return
    try:
        if _same_file(fd, path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)


def end(directory: Path, lease: Lease) -> None:
    """End *lease* whoever holds it: the config that holds its address was written, or its
    member was removed. The caller holds the index write lock, so no one takes the address
    anew between the test and the unlink; a file handed to another name is left alone."""
    path = _path(directory, lease.ip)
    found = read(directory, lease.ip)
    if found is not None and found.name == lease.name:  # the subnet may be spelled anew
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    fd = _held.get(path)
    if fd is not None and not _same_file(fd, path):
        _forget(path)  # ours, now removed: drop the lock on the unlinked file


def _forget(path: str) -> None:
    fd = _held.pop(path, None)
    if fd is not None:
        os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def remove_dead(directory: Path, ip: int) -> None:
    """Remove the lease file of *ip* if nobody holds it. The caller holds the index write
    lock, without which another process could take the address between test and unlink."""
    if not is_held(directory, ip):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_path(directory, ip))


def is_held(directory: Path, ip: int) -> bool:
    """True while some process (this one included) holds the lease of *ip*'s lock."""
    try:
        fd = os.open(_path(directory, ip), _READ)
    except OSError:
        return False
    try:
        return shared_probe(fd) is True
    finally:
        os.close(fd)  # also drops the shared lock taken to test it


def leases(directory: Path, within: Addresses = EVERY_ADDRESS) -> list[Lease]:
    """Every live lease on disk of an address *within*, by address. Files that are not
    leases, and dead or unreadable ones, are left out (a writer removes dead ones when it
    releases them); so are other addresses', by their file names, with no syscall.

    Every answer that involves addresses lists them, beside an allocator that may hold
    hundreds. A file is opened, probed and read once; while it keeps its inode, size and
    times its lease and owner are remembered, and a listing probes each owner once
    (disk/lease_owners.py), a lease without one (older versions) by its own lock.
    """
    try:
        dfd = os.open(directory, _DIR)
    except FileNotFoundError:
        return []
    found: list[Lease] = []
    living: dict[str, bool | None] = {}  # owners probed by this listing
    try:
        for name, ip, st in _files(dfd, within):
            known = _read_before.get(_identity(ip, st))
            if known is not None:
                owner = known[1]
                if owner not in living:
                    living[owner] = lease_owners.alive(dfd, owner)
                if living[owner] is not None:
                    if living[owner]:
                        found.append(known[0])
                    continue
            read_now = _live(dfd, name, ip)
            if read_now is not None:
                found.append(read_now)
    finally:
        os.close(dfd)
    return sorted(found)


def _files(dfd: int, within: Addresses) -> list[tuple[str, int, os.stat_result]]:
    """(file name, address, lstat) of the regular files in *dfd* that name an address
    *within*. One address has one name (parse_ipv4 is strict): who_has looks that file up
    instead of listing an allocator's hundreds (its listing was most of who_has's lease cost
    beside an allocate_ip loop)."""
    if within.first == within.last:
        name = format_ipv4(within.first)
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except OSError:
            return []
        # Not a regular file (a FIFO, a symlink): never opened, as in a listing.
        return [(name, within.first, st)] if stat.S_ISREG(st.st_mode) else []
    with os.scandir(dfd) as it:
        # d_type, no syscall: a FIFO is never opened (that would release its writer).
        entries = [e for e in it if e.is_file(follow_symlinks=False)]
    files = []
    for entry in entries:
        ip = _ip_named(entry.name)
        if ip is None or not within.holds(ip):
            continue
        try:
            files.append((entry.name, ip, entry.stat(follow_symlinks=False)))
        except OSError:
            continue
    return files


def _ip_named(entry: str) -> int | None:
    """The address a file name spells, or None; remembered, as every listing reads every
    name."""
    try:
        return _named[entry]
    except KeyError:
        pass
    try:
        ip: int | None = parse_ipv4(entry)
    except ValueError:
        ip = None
    if len(_named) >= _REMEMBERED:
        _named.clear()
    _named[entry] = ip
    return ip


def _live(dfd: int, entry: str, ip: int) -> Lease | None:
    """The lease in *entry* if its holder holds its lock, else None; remembered by file
    identity with its owner, when it names one."""
    try:
        fd = os.open(entry, _READ, dir_fd=dfd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if shared_probe(fd) is not True:
            return None  # nobody holds it: its owner died (the close drops our probe)
        lease, owner = _parsed(ip, os.read(fd, _MAX_LEASE_BYTES))
        # Remembered only once settled: a lease ended and taken anew within one timestamp
        # tick can keep size, times and a reused inode number, and would read as the old.
        settled = max(st.st_mtime_ns, st.st_ctime_ns) + _SETTLED_NS < time.time_ns()
        if lease is not None and owner is not None and settled:
            if len(_read_before) >= _REMEMBERED:
                _read_before.clear()
            _read_before[_identity(ip, st)] = (lease, owner)
        return lease
    except OSError:
        return None
    finally:
        os.close(fd)


def _identity(ip: int, st: os.stat_result) -> tuple[int, ...]:
    return (ip, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _parsed(ip: int, data: bytes) -> tuple[Lease | None, str | None]:
    """(the lease a file holds, its owner's token or None)."""
    try:
        record = json.loads(data or b"{}")
        lease = Lease(ip, str(record["name"]), str(record["subnet"]))
    except (ValueError, KeyError, TypeError):
        return None, None  # being written, or not ours: not a lease to mirror
    owner = record.get("owner")
    return lease, owner if lease_owners.is_token(owner) else None


def read(directory: Path, ip: int) -> Lease | None:
    """The lease file of *ip* as written, live or not; None if absent or unreadable."""
    try:
        # Not open(): a FIFO planted under a lease's name would block it forever.
        fd, _ = open_regular(_path(directory, ip), os.O_RDONLY)
        try:
            data = os.read(fd, _MAX_LEASE_BYTES)
        finally:
            os.close(fd)
    except OSError:
        return None
    return _parsed(ip, data)[0]


def _path(directory: Path, ip: int) -> str:
    return os.path.join(directory, format_ipv4(ip))
