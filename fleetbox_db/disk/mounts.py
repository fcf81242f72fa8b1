"""Where a removal must stop: a filesystem mounted inside a member directory.

A VM's fixture or a debugging session can leave a host directory mounted inside a member;
rmtree would empty the mounted (host) directory before failing with EBUSY on the mount
point. delete() therefore checks the whole member first and removes nothing if any
directory in it is another mount: a different st_dev, or a mount point that
/proc/self/mountinfo lists (a bind mount of the same filesystem keeps st_dev).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Final

__all__ = ["CrossesMountError", "check_no_mounts"]

_MOUNTINFO: Final = "/proc/self/mountinfo"
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CrossesMountError(OSError):
    """A directory inside the member is a mount point; nothing was removed."""

    def __init__(self, where: str) -> None:
        super().__init__(errno.EXDEV, "a filesystem is mounted there", where)


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \\ooo octal escapes.
    out = bytearray()
    raw = field.encode("utf-8", "surrogateescape")
    i = 0
    while i < len(raw):
        digits = raw[i + 1 : i + 4]
        if raw[i] == 0x5C and len(digits) == 3 and digits.isdigit():
            out.append(int(digits, 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def _mount_points() -> list[str]:
    try:
        with open(_MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
            return [_unescape(line.split(" ")[4]) for line in f if line.count(" ") >= 4]
    except OSError:  # not Linux, or no /proc: the st_dev comparison still holds
        return []


def check_no_mounts(path: str) -> None:
    """Raise CrossesMountError if *path* or any directory below it is a mount point.

    *path* is an absolute member directory; symlinks inside are not followed (they are
    unlinked by the removal, never descended into). Other OSErrors of the walk propagate.
    """
    real = os.path.realpath(path)
    for point in _mount_points():
        if point == real or point.startswith(real.rstrip("/") + "/"):
            raise CrossesMountError(point)
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(top.st_mode):
        return
    for root, _dirs, _files, rootfd in os.fwalk(path, follow_symlinks=False):
        if os.fstat(rootfd).st_dev != top.st_dev:
            raise CrossesMountError(root)
