"""Open a file in the tree without following a symlink, and only if it is a regular file.

The one mechanism behind every file the store opens by name - configs, member and index
locks, the index and its -wal/-shm: under sudo (SPEC §6) a planted symlink would otherwise
let a user point root at /etc/shadow, and a FIFO or device node named config.json would
block the open or talk to hardware.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Final

__all__ = ["NotRegularFileError", "check_regular", "open_regular"]

#: O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: a tty must never become
#: our controlling terminal; O_NOFOLLOW: a symlink fails with ELOOP instead of being followed.
_SAFE_FLAGS: Final = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class NotRegularFileError(OSError):
    """The path is a symlink, directory, FIFO, socket or device node: never opened as a file."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"is a {kind}, not a regular file", os.fspath(path))
        self.kind = kind


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"


def open_regular(
    path: Path | str, flags: int, mode: int = 0o644, *, seen_regular: bool = False
) -> tuple[int, os.stat_result]:
    """os.open(path) without following a symlink; the fd and its fstat.

    Raises NotRegularFileError (a symlink, directory or special file: nothing was read or
    written through it) and the OSErrors of open() itself (FileNotFoundError, EACCES...).
    The file type is checked after the open, on the descriptor, so a swap between a check
    and the open cannot slip through. *seen_regular*: the caller has just stat-ed *path*
    as a regular file (the scan), so the lstat before the open is not made again.
    """
    # lstat first: opening a FIFO, even O_NONBLOCK, releases a writer blocked on it, and
    # opening a device node can have effects of its own. The fstat below closes the race.
    if not seen_regular:
        check_regular(path)
    try:
        fd = os.open(path, flags | _SAFE_FLAGS, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise NotRegularFileError(path, _lkind(path, exc.errno)) from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(path, _kind(st.st_mode))
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def check_regular(path: Path | str) -> bool:
    """True when *path* is a regular file, False when absent; NotRegularFileError otherwise.

    For files SQLite opens itself (it follows symlinks): checked just before it does.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(path, _kind(st.st_mode))
    return True


def _lkind(path: Path | str, code: int | None) -> str:
    try:
        return _kind(os.lstat(path).st_mode)
    except OSError:
        return {errno.EISDIR: "directory", errno.ENXIO: "FIFO"}.get(code or 0, "symlink")
