"""<root>/index.lock: the flock that serialises index upgrades, builds and quarantines.

Taken by us rather than by the filelock package: filelock before 3.20.1 opened the path
following a symlink and truncated and chmod-ed whatever it pointed at (under sudo, that
could be /etc/shadow), and it cannot tell a directory or a FIFO from a lock file. The
lock is the same kernel flock on the same file, so a process running an older
fleetbox_db (which uses filelock) still excludes this one and the other way round.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from fleetbox_db.disk.locks import flock_within
from fleetbox_db.disk.safeopen import open_regular

__all__ = ["LockTimeout", "held"]

_POLL_S: Final = 0.005
_MODE: Final = 0o644


class LockTimeout(Exception):
    """Internal: the lock stayed held by another process past the timeout."""


@contextmanager
def held(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on *path* (created as a regular file if absent).

    Raises LockTimeout after *timeout* seconds; NotRegularFileError (an OSError) when
    *path* is a symlink or not a regular file: nothing is created through it, nothing it
    points at is touched; other OSErrors of open() and flock().
    """
    fd, _ = open_regular(path, os.O_RDWR | os.O_CREAT, _MODE)
    try:
        if not flock_within(fd, timeout, _POLL_S):
            raise LockTimeout(str(path))
        yield
    finally:
        os.close(fd)  # releases the flock
