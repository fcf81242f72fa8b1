"""The scan of clusters/: every member directory with one stat of its config.json.

What Go's List() sees, in its order; every answer and every reconcile starts here. Must stay
correct while the Go tool writes the same tree without telling us.
"""

from __future__ import annotations

import errno
import gc
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

from fleetbox_db.errors import StorageRootError
from fleetbox_db.records import Key
from fleetbox_db.rules.layout import CONFIG_NAME

__all__ = ["NOT_REGULAR", "MemberDir", "Scan", "Signature", "collector_paused", "scan"]

NOT_REGULAR: Final = "not a regular file"

_S_IFMT: Final = 0o170000
_S_IFREG: Final = 0o100000
# open(O_DIRECTORY|O_NOFOLLOW) of a symlink: ENOTDIR on Linux, ELOOP on macOS.
_GONE: Final = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_new: Final = tuple.__new__


class Signature(NamedTuple):
    """Stat signature of a config.json; equal signatures mean "unchanged".

    Not sufficient alone: a rewrite within one timestamp tick keeps size and mtime (racy
    mtime), so callers must distrust signatures whose mtime is close to their last scan.
    A NamedTuple, not a frozen dataclass: scan builds one per member and the dataclass
    __init__ (object.__setattr__ per field) costs ~3x as much: +15-30% on a whole scan.
    """

    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Signature:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class MemberDir(NamedTuple):
    """One directory under clusters/<cluster>/; a tuple because scan builds 100k of them."""

    cluster: str
    name: str
    signature: Signature | None  # None: config.json absent (configless member)
    error: str | None  # config.json exists but cannot be stat-ed or is not a regular file

    @property
    def key(self) -> Key:
        # tuple.__new__: Key's generated constructor costs ~3x, and this runs per member
        # on every rebuild.
        return _new(Key, (self[0], self[1]))


@dataclass(frozen=True, slots=True)
class Scan:
    """What clusters/ holds now, in Go's List() order."""

    members: list[MemberDir]
    # Listed but unlistable: their members must not be treated as removed.
    unreadable_clusters: list[str]


def _sorted_names(names: list[str]) -> list[str]:
    # Code-point order equals UTF-8 byte order (Go's order) for valid UTF-8 only; names
    # with undecodable bytes come back as surrogates that would sort between U+D7FF and
    # U+E000, so they fall back to sorting the real bytes.
    if len(names) < 2:
        return names  # one-VM clusters are common: skip the check
    try:
        "".join(names).encode()
    except UnicodeEncodeError:
        return sorted(names, key=os.fsencode)
    return sorted(names)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a block that makes many objects and no
    reference cycles (a scan, a snapshot of the index).

    Tens of thousands of new tuples would start collections that traverse every object the
    process holds, an earlier vms() result included; the scan's cost would then grow with the
    caller's heap (measured: warm list() -9 to -13% with it paused, more after a vms()).
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def scan(clusters_dir: Path) -> Scan:
    """List every member directory with one stat of its config.json, as Go's List() does.

    A missing clusters/ gives an empty Scan; one that cannot be read raises StorageRootError.
    Symlinks are not directories (Go's d_type check) at either level.
    """
    with collector_paused():
        return _scan(os.fspath(clusters_dir))


def _scan(top: str) -> Scan:
    try:
        topfd = os.open(top, _DIR_FLAGS)
    except FileNotFoundError:
        return Scan([], [])
    except OSError as exc:
        raise _unreadable_root(top, exc) from exc
    members: list[MemberDir] = []
    unreadable: list[str] = []
    try:
        try:
            with os.scandir(topfd) as it:
                clusters = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        except OSError as exc:
            raise _unreadable_root(top, exc) from exc
        for cluster in _sorted_names(clusters):
            try:
                # O_NOFOLLOW: a cluster swapped for a symlink since the listing stays skipped.
                cfd = os.open(cluster, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=topfd)
            except OSError as exc:
                # Gone or no longer a directory: its members are really gone. Anything else
                # (EACCES...): reporting no members would make callers drop them.
                if exc.errno not in _GONE:
                    unreadable.append(cluster)
                continue
            try:
                if not _scan_cluster(cfd, cluster, members.append):
                    unreadable.append(cluster)
            finally:
                os.close(cfd)
    finally:
        os.close(topfd)
    return Scan(members, unreadable)


def _unreadable_root(top: str, exc: OSError) -> StorageRootError:
    return StorageRootError(
        f"cannot read the clusters directory {top}: {exc.strerror}; "
        "check that it is a directory readable by this user",
        path=top,
    )


def _scan_cluster(cfd: int, cluster: str, append: Callable[[MemberDir], None]) -> bool:
    """Append the members of one open cluster directory; False if it cannot be listed."""
    try:
        with os.scandir(cfd) as it:
            names = [e.name for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return False
    # Relative stats (dir_fd) skip re-walking the root path for every member, and bound
    # locals with tuple.__new__ keep the per-member cost near the bare syscall.
    new, member_cls, sig_cls, stat_ = tuple.__new__, MemberDir, Signature, os.stat
    for name in _sorted_names(names):
        try:
            st = stat_(f"{name}/{CONFIG_NAME}", dir_fd=cfd)  # follows symlinks, like ReadFile
        except FileNotFoundError:
            append(new(member_cls, (cluster, name, None, None)))
            continue
        except OSError as exc:
            append(new(member_cls, (cluster, name, None, exc.strerror or str(exc))))
            continue
        if st.st_mode & _S_IFMT != _S_IFREG:
            why = os.strerror(errno.EISDIR) if stat.S_ISDIR(st.st_mode) else NOT_REGULAR
            append(new(member_cls, (cluster, name, None, why)))
            continue
        sig = new(sig_cls, (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        append(new(member_cls, (cluster, name, sig, None)))
    return True
