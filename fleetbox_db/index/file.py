"""The index file's life cycle: open lazily, upgrade, notice replacement, quarantine corruption.

The index is a cache of what disk says. Whatever is wrong with the file - missing, empty,
truncated, not SQLite, someone else's tables - the answer is the same: move it aside and
build a new one; the next reconcile fills it from disk. What is wrong with the machine
instead - a full disk, I/O errors, permissions, a symlink planted in the file's place - is
never the file's fault: the index is then unavailable (answers come from disk) and left as
it is. A new index is built under another name and renamed into place, so an interrupted
build never leaves an empty or half-built index.db.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Final

from fleetbox_db.disk.files import chown_to_invoker
from fleetbox_db.disk.safeopen import NotRegularFileError, check_regular, open_regular
from fleetbox_db.errors import (
    FleetboxError,
    IndexBusyError,
    IndexSchemaError,
    IndexUnavailableError,
)
from fleetbox_db.index import connection as dbconn
from fleetbox_db.index import lockfile, quarantine, schema
from fleetbox_db.index.connection import DEFAULT_BUSY_TIMEOUT
from fleetbox_db.logs import log

__all__ = ["Identity", "IndexCorrupt", "IndexFile", "WriteLockBusy"]


_OPEN_ATTEMPTS: Final = 3
_LOCK_SAMPLES: Final = 4096


#: (st_dev, st_ino) of an index file: tells the file we opened from one put in its place.
Identity = tuple[int, int]


class IndexCorrupt(Exception):
    """Internal: the file may not be a usable index; the caller asks quarantine() to check
    it (under the lock) and move it aside, and retries."""

    def __init__(self, reason: str, ident: Identity | None = None) -> None:
        super().__init__(reason)
        self.ident: Identity | None = ident


class WriteLockBusy(Exception):
    """Internal: another connection holds the write lock right now (write(wait=False))."""


class IndexFile:
    """The SQLite index file of one storage root. Not shared between threads."""

    def __init__(self, path: Path, lock_path: Path, busy_timeout: float = DEFAULT_BUSY_TIMEOUT):
        self.path = path
        self.lock_path = lock_path
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._ident: Identity | None = None
        #: Why this IndexFile last moved a file aside (the new index's history says so).
        self.quarantined: str | None = None
        #: (seconds waited for, seconds held) of the latest write locks taken, for the
        #: contention benchmark.
        self.lock_times: deque[tuple[float, float]] = deque(maxlen=_LOCK_SAMPLES)

    # -- connection ------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """The open connection, at head; reopened when the file was replaced or deleted.

        Raises IndexUnavailableError (cannot be written), IndexSchemaError (newer revision),
        IndexBusyError (an upgrade by another process took longer than the busy timeout).
        """
        if self._conn is not None:
            if self._same_file():
                return self._conn
            if not os.path.lexists(self.path):
                log.warning("index %s was deleted while in use; rebuilding it from disk", self.path)
        self.close()
        for _ in range(_OPEN_ATTEMPTS):
            try:
                self._conn = self._open()
                return self._conn
            except IndexCorrupt as exc:
                corrupt = exc
            except FleetboxError:
                raise  # typed already (IndexBusyError is an OSError too)
            except OSError as exc:
                raise self.os_error(exc) from exc
            self.recover(str(corrupt), corrupt.ident)
        raise IndexUnavailableError(
            f"index {self.path} could not be rebuilt after {_OPEN_ATTEMPTS} attempts; "
            "remove it and run `fleetbox-db reconcile`",
            path=self.path,
        )

    def close(self) -> None:
        """Release the connection; safe to call twice."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing a broken handle
                log.debug("closing index %s failed", self.path, exc_info=True)

    def _same_file(self) -> bool:
        # Sound against inode reuse: our open connection keeps the old inode allocated, so a
        # file created in its place cannot get the same number while we compare.
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return False
        except OSError:
            # Cannot tell (EIO, EACCES...): keep the connection. Reopening would close the
            # one a caller is still reading from ("Cannot operate on a closed database").
            return True
        return (st.st_dev, st.st_ino) == self._ident

    def _unavailable(self, reason: str) -> IndexUnavailableError:
        return IndexUnavailableError(
            f"index {self.path} cannot be used now ({reason}); answers come from disk and "
            "writes are refused until it can (free disk space, check the disk and the "
            "tree's permissions)",
            path=self.path,
        )

    def os_error(self, exc: OSError) -> Exception:
        """The typed error for an OSError of the index's own files. Callers let a
        FleetboxError that is also an OSError (DiskError, IndexBusyError) pass as it is:
        raised again "from" itself, it would be its own cause, a reference cycle."""
        if isinstance(exc, NotRegularFileError):
            where = exc.filename or self.path
            return IndexUnavailableError(
                f"{where} {exc.strerror}; fleetbox_db never follows or opens it: remove it "
                f"(rm {where}) and the index is rebuilt from disk",
                path=where,
            )
        where = f" ({exc.filename})" if exc.filename else ""
        return self._unavailable(f"{exc.strerror or exc}{where}")

    def _check_files(self) -> bool:
        """Whether index.db exists; NotRegularFileError when it, its -wal or -shm is a
        symlink or not a regular file (SQLite would follow or open it)."""
        exists = check_regular(self.path)
        for suffix in ("-wal", "-shm"):
            check_regular(f"{self.path}{suffix}")
        return exists

    def _open(self) -> sqlite3.Connection:
        exists = self._check_files()
        self.check_writable()
        if not exists:
            self._create()
        # Identity before connecting: if the file is swapped in between, the next call sees
        # a mismatch and reopens, rather than trusting a file it never classified.
        try:  # not _identity(): an lstat that fails (EIO) must not record "no file"
            st = os.lstat(self.path)
        except FileNotFoundError:
            raise IndexCorrupt("the file vanished while being opened") from None
        ident: Identity = (st.st_dev, st.st_ino)
        try:
            conn = self._open_at_head()
        except IndexCorrupt as exc:
            exc.ident = exc.ident or ident
            raise
        # No chown of -wal and -shm here: SQLite running as root creates them with the
        # owner of index.db, which chown_to_invoker gave to the sudo user when it was made.
        self._ident = ident
        return conn

    def _open_at_head(self, upgraded: bool = False) -> sqlite3.Connection:
        """A connection to the file at path, upgraded to head under the lock if older."""
        try:
            size = os.lstat(self.path).st_size
        except FileNotFoundError:
            raise IndexCorrupt("the file vanished while being opened") from None
        if size == 0:
            # SQLite would take a 0-byte file for a new database; here it is what a crash or
            # a truncation left, so it goes aside like any other broken file.
            raise IndexCorrupt("the file is empty (0 bytes)")
        conn = self._connect(wal=False)
        try:
            status = schema.classify(conn)
            if status == "current":
                dbconn.enable_wal(conn, self.busy_timeout)
                return conn
        except sqlite3.DatabaseError as exc:
            conn.close()
            if dbconn.classify_error(exc) in ("busy", "unavailable"):
                raise self.translate(exc) from exc
            raise IndexCorrupt(str(exc)) from exc
        except BaseException:
            conn.close()
            raise
        conn.close()
        if status == "foreign":
            raise IndexCorrupt("not a fleetbox index (foreign tables or application id)")
        if status == "newer":
            raise self._newer_error()
        if upgraded:  # pragma: no cover - an upgrade to head that did not reach head
            raise FleetboxError(f"index {self.path} is still {status} after an upgrade")
        with self.file_lock():
            self._upgrade_locked()
        return self._open_at_head(upgraded=True)

    def _create(self) -> None:
        """Create the index at head; another process may have done so first.

        Built as <index.db>.new and renamed into place: killed or failing half-way (a full
        disk), the build leaves no index.db at all, never an empty or half-built one.
        """
        with self.file_lock():
            if os.path.lexists(self.path):
                return
            # A -wal left by a deleted index would be replayed into the new file.
            for suffix in ("-wal", "-shm"):
                _remove(Path(f"{self.path}{suffix}"))
            building = Path(f"{self.path}.new")
            _remove_build(building)  # a build killed earlier, or a planted symlink
            try:
                fd, _ = open_regular(building, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                os.close(fd)
                self._upgrade_locked(building, wal=False)
                os.rename(building, self.path)
            except BaseException:
                _remove_build(building)
                raise
            chown_to_invoker(self.path)

    def _connect(self, wal: bool = True) -> sqlite3.Connection:
        try:
            return dbconn.connect(self.path, self.busy_timeout, wal=wal)
        except sqlite3.DatabaseError as exc:
            raise self.translate(exc) from exc

    def _upgrade_locked(self, path: Path | None = None, *, wal: bool = True) -> None:
        """Bring the file at *path* (default: the index) to head; the caller holds the file
        lock. wal=False leaves a new file in rollback-journal mode, so it is whole in one
        file when renamed into place."""
        path = self.path if path is None else path
        try:
            conn = dbconn.connect(path, self.busy_timeout, wal=False)
        except sqlite3.DatabaseError as exc:
            raise self.translate(exc) from exc
        try:
            status = schema.classify(conn)
            old = schema.current_revision(conn) if status == "older" else None
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(str(exc)) from exc
        finally:
            conn.close()
        if status == "foreign":
            raise IndexCorrupt("not a fleetbox index (foreign tables or application id)")
        if status == "newer":
            raise self._newer_error()
        if status in ("empty", "older"):
            was = f"revision {old}" if old else "an empty file"
            log.info("upgrading index %s from %s to %s", path, was, schema.HEAD)
            try:
                schema.upgrade_to_head(path, self.busy_timeout, wal=wal)
            except Exception as exc:
                cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
                if isinstance(cause, sqlite3.Error):
                    raise self.translate(cause) from exc
                raise
            chown_to_invoker(path, self.lock_path, Path(f"{path}-wal"), Path(f"{path}-shm"))

    def check_writable(self) -> None:
        directory = self.path.parent
        target = self.path if self.path.exists() else directory
        if not os.access(target, os.W_OK) or not os.access(directory, os.W_OK):
            raise IndexUnavailableError(
                f"index {self.path} is not writable by uid {os.geteuid()}; answers come from "
                "disk until it is (run as the owner of the tree, or fix its permissions)",
                path=self.path,
            )

    def _newer_error(self) -> IndexSchemaError:
        return IndexSchemaError(
            f"index {self.path} is at a newer schema revision than this fleetbox_db knows "
            f"(head {schema.HEAD}); upgrade fleetbox_db, or delete the index to rebuild it",
            path=self.path,
        )

    # -- transactions ----------------------------------------------------------------

    @contextmanager
    def write(self, *, wait: bool = True) -> Iterator[sqlite3.Connection]:
        """A BEGIN IMMEDIATE transaction: the one critical section every writer shares.

        With wait=False the lock is taken only if it is free at this instant; otherwise
        WriteLockBusy is raised at once (a reader then answers without recording).
        """
        conn = self.connection()
        asked = time.perf_counter()
        try:
            dbconn.begin_immediate(conn, self.busy_timeout, wait=wait)
        except sqlite3.Error as exc:
            if not wait and dbconn.classify_error(exc) == "busy":
                raise WriteLockBusy(str(exc)) from exc
            raise self.translate(exc) from exc
        taken = time.perf_counter()
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise self.translate(exc) from exc
            raise
        finally:
            self.lock_times.append((taken - asked, time.perf_counter() - taken))

    @staticmethod
    def is_corrupt(exc: sqlite3.Error) -> bool:
        """Whether translate() makes *exc* IndexCorrupt (the file may need rebuilding)."""
        return dbconn.classify_error(exc) in ("corrupt", "io")

    def translate(self, exc: sqlite3.Error) -> Exception:
        """A typed error for *exc*; IndexCorrupt when the file may need rebuilding (an I/O
        error too: quarantine() then asks SQLite whether the file itself is damaged)."""
        kind = dbconn.classify_error(exc)
        if kind == "busy":
            return IndexBusyError(
                f"index {self.path} stayed locked for {self.busy_timeout:g} s by another "
                "fleetbox process; wait for it to finish and retry",
                path=self.path,
            )
        if kind == "unavailable":
            return IndexUnavailableError(
                f"index {self.path} cannot be written ({exc}); answers come from disk until "
                "its permissions are fixed",
                path=self.path,
            )
        if kind == "full":
            return self._unavailable(f"{exc}: the disk is full or a file size limit is set")
        if kind in ("corrupt", "io"):
            return IndexCorrupt(f"{kind}: {exc}")
        return FleetboxError(f"index {self.path} failed: {exc}", path=self.path)

    # -- recovery --------------------------------------------------------------------

    @contextmanager
    def file_lock(self) -> Iterator[None]:
        """<root>/index.lock: serialises upgrades and quarantines across processes.

        NotRegularFileError when index.lock is a symlink or not a regular file (nothing is
        created or changed through it); other OSErrors of open() and flock().
        """
        try:
            with lockfile.held(self.lock_path, self.busy_timeout):
                chown_to_invoker(self.lock_path)
                yield
        except lockfile.LockTimeout as exc:
            raise IndexBusyError(
                f"{self.lock_path} stayed locked for {self.busy_timeout:g} s: another "
                "fleetbox process is upgrading or rebuilding the index; wait for it",
                path=self.lock_path,
            ) from exc

    def recover(self, reason: str, ident: Identity | None = None) -> None:
        """quarantine(), or IndexUnavailableError when the file is not broken after all (a
        full disk, an I/O error) or cannot be checked."""
        try:
            moved = self.quarantine(reason, ident)
        except FleetboxError:
            raise
        except OSError as exc:
            raise self.os_error(exc) from exc
        if not moved:
            raise self._unavailable(reason)

    def quarantine(self, reason: str, ident: Identity | None = None) -> bool:
        """Move a broken index aside as index.db.corrupt-<timestamp> and log a warning;
        False when the file is not broken after all (the caller reports it unavailable).

        *ident* is the file found bad (default: the one this Index opened last). Under the
        lock the file is moved only if it is still that file and SQLite says it is broken:
        another process may have rebuilt it meanwhile (True: retry), or the error came
        from the machine - a full disk, an I/O error - not the file (False).
        """
        expected = ident if ident is not None else self._ident
        self.close()
        with self.file_lock():
            found = _identity(self.path)
            if found is None or (expected is not None and found != expected):
                return True
            if quarantine.healthy(self.path, self.busy_timeout):
                return False
            aside = quarantine.move_aside(self.path, reason)
            self.quarantined = f"the index was unusable ({reason}); moved to {aside.name}"
            return True


def _identity(path: Path) -> Identity | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("rollback failed", exc_info=True)


def _remove(path: Path) -> None:
    with suppress(FileNotFoundError):
        path.unlink()


def _remove_build(path: Path) -> None:
    for name in (path, Path(f"{path}-journal")):
        _remove(name)
