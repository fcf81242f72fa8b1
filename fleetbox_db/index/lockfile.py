"""<root>/index.lock: the flock that serialises index upgrades, builds and quarantines.

Taken by us rather than by the filelock package: filelock before 3.20.1 opened the path
following a symlink and truncated and chmod-ed whatever it pointed at (under sudo, that
could be /etc/shadow), and it cannot tell a directory or a FIFO from a lock file. The
lock is the same kernel flock on the same file, so a process running an older
fleetbox_db (which uses filelock) still excludes this one and the other way round.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

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
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(str(path)) from None
            time.sleep(random.uniform(0.5, 1.5) * _POLL_S)
        yield
    finally:
        os.close(fd)  # releases the flock
