"""The filesystem's clock: "now" as the clock that stamps the tree's files reads it.

The racy-timestamp guard compares a file's mtime and ctime with the moment it was read.
Those times come from the filesystem's clock (an NFS server's, a VM share's host's), which
can lag or lead the process's: measured with time.time_ns(), a filesystem 10 s behind makes
every fresh row look settled at once, and a same-size rewrite within one tick goes unseen.
So "now" is read off a file this clock touches, and kept as an offset from the process
clock for a second at a time (touching per read would cost a metadata write per config).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

from fleetbox_db.disk.safeopen import open_regular

__all__ = ["FilesystemClock"]

#: How long a measured offset is trusted, in process-clock nanoseconds.
REMEASURE_NS: Final = 1_000_000_000
_FLAGS: Final = os.O_WRONLY | os.O_CREAT


class FilesystemClock:
    """A time.time_ns stand-in that reads the filesystem's clock; not shared between threads.

    Where the file cannot be touched (a read-only tree), it is the process clock: nothing
    is recorded from such a tree anyway.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._measured_at: int | None = None

    def __call__(self) -> int:
        now = time.time_ns()
        if self._measured_at is None or now - self._measured_at > REMEASURE_NS:
            self._offset = self._measure(now)
            self._measured_at = now
        return now + self._offset

    def _measure(self, now: int) -> int:
        """The filesystem's time minus *now*, from a touch of the file (created 0644)."""
        try:
            # open_regular: O_WRONLY on a FIFO planted as index.lock would block forever.
            fd, _ = open_regular(self.path, _FLAGS, 0o644)
        except OSError:
            return 0
        try:
            os.utime(fd)
            stamped = os.fstat(fd)
        except OSError:
            return 0
        finally:
            os.close(fd)
        # ctime, not mtime: the filesystem always stamps ctime itself, while a utime() of
        # "now" takes mtime from the caller's clock in some C libraries and shims. The
        # stamp comes from a coarse clock a tick behind, so the offset errs early and a row
        # errs on the racy (re-read) side.
        return stamped.st_ctime_ns - now
