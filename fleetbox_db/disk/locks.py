"""Per-member flock on ``<member>/.lock``, the lock the Go tool takes (TryLock).

A lock is held on an open descriptor, so it is released when the holder exits, however it
exits; the Go tool and fleetbox_db exclude each other through the same file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Final

from fleetbox_db.disk.safeopen import open_regular
from fleetbox_db.errors import LockedError

__all__ = ["LOCK_FILE_MODE", "Lock", "is_held", "jittered", "shared_probe", "try_lock"]

LOCK_FILE_MODE: Final = 0o644
_LOCK_FLAGS: Final = os.O_RDWR | os.O_CREAT


class Lock:
    """An exclusive flock held on an open descriptor until unlock().

    Nothing releases it on garbage collection: a Lock dropped without unlock() stays
    held until the process exits, rather than silently un-guarding the caller's work.
    """

    __slots__ = ("_fd", "name", "path")

    def __init__(self, fd: int, path: Path, name: str) -> None:
        self._fd = fd
        self.path = path
        self.name = name

    @property
    def locked(self) -> bool:
        return self._fd >= 0

    def unlock(self) -> None:
        """Release the lock; calling it again does nothing."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass  # close() below releases it anyway, as in Go's Unlock
        finally:
            os.close(fd)

    def __enter__(self) -> Lock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unlock()

    def __repr__(self) -> str:
        state = "locked" if self.locked else "unlocked"
        return f"<Lock {self.name!r} {state} {self.path}>"


def flock_within(fd: int, timeout: float, poll_s: float) -> bool:
    """LOCK_EX on *fd*, tried about every *poll_s* (jittered, so pollers do not move in
    step) for up to *timeout* seconds; False when another holder kept it that long.

    Polling rather than a blocking flock: a blocking one cannot be given up on.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
        time.sleep(jittered(poll_s))


def jittered(seconds: float) -> float:
    """*seconds* times a random factor in [0.5, 1.5], so that pollers do not wake in step
    (from os.urandom: importing random costs every command a millisecond)."""
    return seconds * (0.5 + os.urandom(1)[0] / 255)


def shared_probe(fd: int) -> bool | None:
    """Whether another open file description holds *fd*'s file with an exclusive flock:
    True, False, or None when the probe itself fails. The probe's shared lock is dropped
    by the caller's close of *fd*. (Leases and their owners are held this way.)"""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return True if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
    return False


def is_held(lock_path: Path) -> bool:
    """Whether another open file description holds lock_path's flock now, without creating
    the file (a dry run must change nothing): an absent file is held by nobody."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's own lock, if it got it
    return False


def try_lock(lock_path: Path, name: str) -> Lock:
    """Take a non-blocking exclusive flock on lock_path, creating the file (not its dir).

    Raises LockedError when any open file description holds it, this process included;
    FileNotFoundError when the member directory is missing; NotRegularFileError when the
    lock is a symlink (never followed: under sudo its target would be created or locked)
    or not a regular file.
    """
    fd, _ = open_regular(lock_path, _LOCK_FLAGS, LOCK_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockedError(
            f"vm {name!r} is locked by another process or by this one; "
            f"retry once it is released (lock file {lock_path})",
            name=name,
            path=lock_path,
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return Lock(fd, Path(lock_path), name)
