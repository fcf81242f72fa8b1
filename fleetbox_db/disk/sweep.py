"""Temp files that atomic writes left behind when their process was killed mid-write.

disk.files.atomic_write writes ``.config.json.<16 hex>.tmp`` beside config.json and renames it
over; a SIGKILL between the two leaves the temp file. Neither Go nor our scan ever reads
it, but nothing else would remove it, so a full reconcile (the operator's repair after a
crash) does. It runs under the index write lock, which every one of our config writes
holds, and still spares files younger than a minute: a writer holding the lock of an index
another process has just moved aside could be mid-write.

Walks by file descriptor, like disk.files.remove_member: a cluster or member directory swapped
for a symlink is never entered, and only regular files matching the name are removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from fleetbox_db.disk.scan import MemberDir

#: The names disk.atomic_write gives its temp files (secrets.token_hex(8)).
TEMP_NAME: Final = re.compile(r"\.config\.json\.[0-9a-f]{16}\.tmp")
MIN_AGE_NS: Final = 60_000_000_000

_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def sweep(
    clusters_dir: Path | str,
    members: Iterable[MemberDir],
    now_ns: int,
    *,
    remove: bool = True,
    min_age_ns: int = MIN_AGE_NS,
) -> list[str]:
    """Paths of the leftover temp files in *members*' directories, removed unless not
    *remove*; files changed less than *min_age_ns* before *now_ns* are left alone.
    Directories that cannot be opened or listed are skipped: this is a tidy-up, not a check.
    """
    found: list[str] = []
    top = os.open(clusters_dir, _DIR)
    try:
        for cluster, names in _by_cluster(members):
            with _opened(cluster, top) as cluster_fd:
                if cluster_fd is None:
                    continue
                for name in names:
                    with _opened(name, cluster_fd) as member_fd:
                        if member_fd is None:
                            continue
                        for leftover in _leftovers(member_fd, now_ns - min_age_ns, remove):
                            found.append(f"{clusters_dir}/{cluster}/{name}/{leftover}")
    finally:
        os.close(top)
    return found


def _by_cluster(members: Iterable[MemberDir]) -> Iterator[tuple[str, list[str]]]:
    grouped: dict[str, list[str]] = {}
    for member in members:
        grouped.setdefault(member.cluster, []).append(member.name)
    yield from grouped.items()


@contextlib.contextmanager
def _opened(name: str, parent_fd: int) -> Iterator[int | None]:
    try:
        fd = os.open(name, _DIR, dir_fd=parent_fd)
    except OSError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def _leftovers(member_fd: int, changed_before_ns: int, remove: bool) -> list[str]:
    names: list[str] = []
    try:
        entries = list(os.scandir(member_fd))
    except OSError:
        return names
    for entry in entries:
        if TEMP_NAME.fullmatch(entry.name) is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            if max(st.st_mtime_ns, st.st_ctime_ns) >= changed_before_ns:
                continue
            if remove:
                os.unlink(entry.name, dir_fd=member_fd)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
        names.append(entry.name)
    return names
