"""The scan of clusters/: every member directory with one stat of its config.json.

What Go's List() sees, in its order; every answer and every reconcile starts here. Must stay
correct while the Go tool writes the same tree without telling us.
"""

from __future__ import annotations

import errno
import gc
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any, Final, NamedTuple

from fleetbox_db.disk import ahead
from fleetbox_db.errors import StorageRootError
from fleetbox_db.keys import Key
from fleetbox_db.rules.layout import CONFIG_NAME, Layout, resolve_root

__all__ = [
    "NOT_REGULAR",
    "MemberDir",
    "Scan",
    "Signature",
    "collector_paused",
    "scan",
    "scan_ahead",
]

NOT_REGULAR: Final = "not a regular file"

_S_IFMT: Final = 0o170000
_S_IFREG: Final = 0o100000
# open(O_DIRECTORY|O_NOFOLLOW) of a symlink: ENOTDIR on Linux, ELOOP on macOS.
_GONE: Final = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_new: Final = tuple.__new__
_third: Final = itemgetter(2)


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


class Scan(NamedTuple):
    """What clusters/ holds now, in Go's List() order."""

    members: list[MemberDir]
    # Listed but unlistable: their members must not be treated as removed.
    unreadable_clusters: list[str]


#: From how many clusters a scan is started ahead. A fork costs the parent ~3 ms of
#: copy-on-write faults while it loads (fleetbox-db ls at 100 members: 73.6 -> 76.3 ms),
#: more than a tree of a few dozen clusters takes to scan. A directory's link count is 2
#: plus its subdirectories on ext4, xfs and tmpfs; btrfs says 1 (unknown: started).
AHEAD_CLUSTERS: Final = 64
_SUBDIRS_COUNTED: Final = 2

_Kinds = tuple[type[tuple[Any, ...]], type[tuple[Any, ...]]]
#: The classes of a scan's members and signatures: the typed ones, or plain tuples (what a
#: child process hands over: disk.ahead), written by the same loop.
_TYPED: Final[_Kinds] = (MemberDir, Signature)
_PLAIN: Final[_Kinds] = (tuple, tuple)


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


def scan(clusters_dir: Path, earlier: Sequence[MemberDir] = ()) -> Scan:
    """List every member directory with one stat of its config.json, as Go's List() does.

    A missing clusters/ gives an empty Scan; one that cannot be read raises StorageRootError.
    Symlinks are not directories (Go's d_type check) at either level. A member equal to one
    of *earlier* (an earlier scan, in this order) is that very tuple: no new one is made or
    freed, and comparing the two scans costs an identity check per member.
    """
    path = os.fspath(clusters_dir)
    with collector_paused():
        early = _typed(ahead.take(path))
        return _scan(path, _TYPED, earlier) if early is None else early


def scan_ahead(root: Path | str | None = None) -> bool:
    """Start the first scan of the Store that opens *root* (None: the default root, as
    Store.open finds it) now, in a child process: for a command line about to spend its
    first tens of ms loading its modules (disk/ahead.py). False if none was started, as
    for a tree too small to pay for it. Raises StorageRootError when there is no home to
    find the default root in."""
    path = os.fspath(Layout(resolve_root() if root is None else Path(root)).clusters_dir)
    try:
        st = os.stat(path)
    except OSError:
        return False  # nothing to scan, or nothing a child could: the Store will say
    if not stat.S_ISDIR(st.st_mode):
        return False
    if _SUBDIRS_COUNTED <= st.st_nlink < _SUBDIRS_COUNTED + AHEAD_CLUSTERS:
        return False
    return ahead.start(path, lambda: _plain(_scan(path, _PLAIN)))


def _plain(found: Scan) -> tuple[list[Any], list[str]]:
    """A scan made of _PLAIN tuples, as values marshal writes (it refuses tuple subclasses)."""
    return found.members, found.unreadable_clusters


def _typed(listing: Any) -> Scan | None:
    """_plain's values as a Scan again; None for no listing (or not one of _plain's)."""
    if listing is None:
        return None
    try:
        members, unreadable = listing
        # Four fields a member (the unpacking checks), four a signature (tuple.__new__
        # would not): a malformed listing is dropped whole, never half-used.
        if not set(map(len, filter(None, map(_third, members)))) <= {len(Signature._fields)}:
            return None
        return Scan(
            [
                _new(MemberDir, (c, n, None if s is None else _new(Signature, s), e))
                for c, n, s, e in members
            ],
            list(unreadable),
        )
    except (TypeError, ValueError, IndexError):
        return None


def _scan(top: str, kinds: _Kinds = _TYPED, earlier: Sequence[MemberDir] = ()) -> Scan:
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
        before = _Before(earlier)
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
                if not _scan_cluster(cfd, cluster, members.append, kinds, before):
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


def _scan_cluster(
    cfd: int, cluster: str, append: Callable[[Any], None], kinds: _Kinds, before: _Before
) -> bool:
    """Append the members of one open cluster directory; False if it cannot be listed."""
    try:
        with os.scandir(cfd) as it:
            names = [e.name for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return False
    names = _sorted_names(names)
    # The earlier scan's members of this cluster, when it had as many: the k-th is reused
    # if equal (the usual case: nothing changed).
    earlier = before.of(cluster, len(names))
    # Relative stats (dir_fd) skip re-walking the root path for every member, and bound
    # locals with tuple.__new__ keep the per-member cost near the bare syscall.
    (member_cls, sig_cls), new, stat_ = kinds, tuple.__new__, os.stat
    for k, name in enumerate(names):
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
        if earlier:
            same = earlier[k]
            was = same[2]
            if (
                was is not None
                and was[2] == st.st_mtime_ns
                and was[3] == st.st_ctime_ns
                and was[0] == st.st_ino
                and was[1] == st.st_size
                and same[1] == name
                and same[0] == cluster  # a hard-linked config is another member's too
                and same[3] is None
            ):
                append(same)
                continue
        sig = new(sig_cls, (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        append(new(member_cls, (cluster, name, sig, None)))
    return True


class _Before:
    """An earlier scan's members, handed out cluster by cluster in the order scan lists them.

    Only a hint: a member is reused after comparing every field, so an earlier scan in
    another order (names that are not UTF-8 sort by bytes) only makes fewer reuses.
    """

    __slots__ = ("at", "members")

    def __init__(self, members: Sequence[MemberDir]) -> None:
        self.members = members
        self.at = 0

    def of(self, cluster: str, count: int) -> Sequence[MemberDir]:
        """The *count* earlier members of *cluster*, or none if it had another number."""
        members, at, end = self.members, self.at, len(self.members)
        while at < end and members[at][0] < cluster:
            at += 1  # a cluster gone since
        last = at + count
        if (
            count
            and last <= end
            and members[at][0] == cluster
            and members[last - 1][0] == cluster
            and (last == end or members[last][0] != cluster)
        ):
            self.at = last
            return members[at:last]
        while at < end and members[at][0] == cluster:
            at += 1  # another number of members: none reused here
        self.at = at
        return ()
