"""Judging an index file broken, moving it aside, and keeping only the newest few of those.

Only SQLite's own verdict counts: a file it says is not a database, one whose
``PRAGMA quick_check`` reports damage, an empty file or someone else's tables. A full disk,
a file-size limit, an I/O error or a permission error says nothing about the file: moving
a healthy index aside for one lost its reservations and, repeated on every call, filled
the disk with copies (48 under RLIMIT_FSIZE).
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import suppress
from pathlib import Path
from typing import Final

from fleetbox_db.index import connection as dbconn
from fleetbox_db.index import schema
from fleetbox_db.logs import log

__all__ = ["KEEP_CORRUPT", "healthy", "move_aside", "prune"]


KEEP_CORRUPT: Final = 3
"""How many index.db.corrupt-* copies are kept; older ones are deleted when one is added."""
_MARK: Final = ".corrupt-"


def healthy(path: Path, busy_timeout: float) -> bool:
    """False only when SQLite says the file at *path* is broken (see the module docstring).

    True when it is usable, absent, or not ours to judge: a newer revision, a file we may
    not open, a disk that fails or is full while we look.
    """
    try:
        if os.lstat(path).st_size == 0:
            return False
        conn = dbconn.connect(path, busy_timeout, wal=False)
    except OSError:
        return True
    except sqlite3.Error as exc:
        return dbconn.classify_error(exc) != "corrupt"
    try:
        status = schema.classify(conn)
        if status == "foreign":
            return False
        if status != "current":
            return True
        # Only on this failure path: quick_check reads every page, which a truncated
        # file fails even when the pages a first query touches happen to be intact.
        return bool(conn.execute("PRAGMA quick_check").fetchone()[0] == "ok")
    except sqlite3.Error as exc:
        return dbconn.classify_error(exc) != "corrupt"
    finally:
        conn.close()


def move_aside(path: Path, reason: str) -> Path:
    """Rename *path* to <path>.corrupt-<UTC timestamp>, with its -wal, and drop its -shm;
    then keep only the KEEP_CORRUPT newest such copies. Returns the new name.

    The caller holds index.lock and has found the file broken (healthy() is False).
    OSError when the rename fails (the file is then where it was).
    """
    # One reading of the clock: seconds and nanoseconds from two readings could straddle a
    # second and name a newer copy older, and prune() would then delete the wrong one.
    seconds, nanos = divmod(time.time_ns(), 10**9)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
    aside = Path(f"{path}{_MARK}{stamp}")
    os.rename(path, aside)
    # Its -wal holds committed pages of that file: keep them with it, under the name
    # SQLite looks for; a new index must not start with them either.
    with suppress(FileNotFoundError):
        os.rename(f"{path}-wal", f"{aside}-wal")
    with suppress(FileNotFoundError):
        os.unlink(f"{path}-shm")
    log.warning("index %s is unusable (%s); moved to %s, rebuilding from disk", path, reason, aside)
    prune(path)
    return aside


def prune(path: Path, keep: int = KEEP_CORRUPT) -> list[Path]:
    """Delete all but the *keep* newest <path>.corrupt-* copies (and their -wal); the
    deleted ones. Best effort: a copy that cannot be deleted is logged and left."""
    prefix = f"{path.name}{_MARK}"
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix)]
    except OSError:
        return []
    # The stamp sorts by time; "-wal" companions follow their copy.
    copies = sorted(n for n in names if not n.endswith("-wal"))
    removed: list[Path] = []
    for name in copies[: max(len(copies) - keep, 0)]:
        for victim in (path.parent / name, path.parent / f"{name}-wal"):
            try:
                os.unlink(victim)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("could not delete old index copy %s: %s", victim, exc.strerror)
                continue
            removed.append(victim)
    return removed
