"""The index file's life cycle: open lazily, upgrade, notice replacement, quarantine corruption.

The index is a cache of what disk says. Whatever is wrong with the file - missing, empty,
truncated, not SQLite, someone else's tables - the answer is the same: move it aside and
build a new one; the next reconcile fills it from disk.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Final

from filelock import FileLock, Timeout

from fleetbox_db import dbapi, schema
from fleetbox_db.errors import (
    FleetboxError,
    IndexBusyError,
    IndexSchemaError,
    IndexUnavailableError,
)

log = logging.getLogger("fleetbox_db")

DEFAULT_BUSY_TIMEOUT: Final = 30.0
_OPEN_ATTEMPTS: Final = 3


class IndexCorrupt(Exception):
    """Internal: the file is not a usable index; the caller quarantines it and retries."""


class Index:
    """The SQLite index of one storage root. Not shared between threads."""

    def __init__(self, path: Path, lock_path: Path, busy_timeout: float = DEFAULT_BUSY_TIMEOUT):
        self.path = path
        self.lock_path = lock_path
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._ino: int | None = None

    # -- connection ------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """The open connection, at head; reopened when the file was replaced or deleted.

        Raises IndexUnavailableError (cannot be written), IndexSchemaError (newer revision),
        IndexBusyError (an upgrade by another process took longer than the busy timeout).
        """
        if self._conn is not None and self._same_file():
            return self._conn
        self.close()
        for _ in range(_OPEN_ATTEMPTS):
            try:
                self._conn = self._open()
                return self._conn
            except IndexCorrupt as exc:
                self.quarantine(str(exc))
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
        try:
            return os.stat(self.path).st_ino == self._ino
        except OSError:
            return False

    def _open(self) -> sqlite3.Connection:
        self._check_writable()
        if not self.path.exists():
            with self.file_lock():
                if not self.path.exists():
                    # A -wal left by a deleted index would be replayed into the new file.
                    for suffix in ("-wal", "-shm"):
                        _remove(Path(f"{self.path}{suffix}"))
                    self._upgrade_locked()
        conn = self._connect()
        try:
            status = schema.classify(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise IndexCorrupt(str(exc)) from exc
        if status == "current":
            self._ino = os.stat(self.path).st_ino
            return conn
        conn.close()
        if status == "foreign":
            raise IndexCorrupt("not a fleetbox index (foreign tables or application id)")
        if status == "newer":
            raise self._newer_error()
        with self.file_lock():
            self._upgrade_locked()
        return self._open()

    def _connect(self) -> sqlite3.Connection:
        try:
            return dbapi.connect(self.path, self.busy_timeout)
        except sqlite3.DatabaseError as exc:
            raise self.translate(exc) from exc

    def _upgrade_locked(self) -> None:
        """Bring the file to head; the caller holds the file lock."""
        conn = self._connect()
        try:
            status = schema.classify(conn)
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(str(exc)) from exc
        finally:
            conn.close()
        if status == "foreign":
            raise IndexCorrupt("not a fleetbox index (foreign tables or application id)")
        if status == "newer":
            raise self._newer_error()
        if status in ("empty", "older"):
            log.info("upgrading index %s from %s to %s", self.path, status, schema.HEAD)
            try:
                schema.run_alembic(self.path, "upgrade", "head", self.busy_timeout)
            except Exception as exc:
                cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
                if isinstance(cause, sqlite3.Error):
                    raise self.translate(cause) from exc
                raise
            chown_to_invoker(
                self.path, self.lock_path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")
            )

    def _check_writable(self) -> None:
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
    def write(self) -> Iterator[sqlite3.Connection]:
        """A BEGIN IMMEDIATE transaction: the one critical section every writer shares."""
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise self.translate(exc) from exc
            raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot across several statements."""
        conn = self.connection()
        try:
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise self.translate(exc) from exc
            raise

    def translate(self, exc: sqlite3.Error) -> Exception:
        """A typed error for *exc*; IndexCorrupt when the file should be rebuilt."""
        kind = dbapi.classify_error(exc)
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
        if kind in ("corrupt", "io"):
            return IndexCorrupt(f"{kind}: {exc}")
        return FleetboxError(f"index {self.path} failed: {exc}", path=self.path)

    # -- recovery --------------------------------------------------------------------

    @contextmanager
    def file_lock(self) -> Iterator[None]:
        """<root>/index.lock: serialises upgrades and quarantines across processes."""
        lock = FileLock(str(self.lock_path), timeout=self.busy_timeout)
        try:
            with lock:
                chown_to_invoker(self.lock_path)
                yield
        except Timeout as exc:
            raise IndexBusyError(
                f"{self.lock_path} stayed locked for {self.busy_timeout:g} s: another "
                "fleetbox process is upgrading or rebuilding the index; wait for it",
                path=self.lock_path,
            ) from exc

    def quarantine(self, reason: str) -> None:
        """Move a bad index aside as index.db.corrupt-<timestamp>, unless already replaced."""
        self.close()
        with self.file_lock():
            if self._healthy():
                return
            stamp = (
                time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z"
            )
            aside = Path(f"{self.path}.corrupt-{stamp}")
            log.warning(
                "index %s is unusable (%s); moved to %s, rebuilding from disk",
                self.path,
                reason,
                aside,
            )
            with suppress(FileNotFoundError):
                os.rename(self.path, aside)
            for suffix in ("-wal", "-shm"):
                _remove(Path(f"{self.path}{suffix}"))

    def _healthy(self) -> bool:
        if not self.path.exists():
            return True
        try:
            conn = dbapi.connect(self.path, self.busy_timeout)
        except sqlite3.Error:
            return False
        try:
            status = schema.classify(conn)
            if status == "current":
                conn.execute("SELECT count(*) FROM members").fetchone()
            return status in ("current", "older", "newer", "empty")
        except sqlite3.Error:
            return False
        finally:
            conn.close()


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("rollback failed", exc_info=True)


def _remove(path: Path) -> None:
    with suppress(FileNotFoundError):
        path.unlink()


def chown_to_invoker(*paths: Path) -> None:
    """Under sudo, give files we created back to the invoking user (SUDO_UID/SUDO_GID).

    Without this, a later non-root run could not write the index a sudo run created.
    """
    if os.geteuid() != 0:
        return
    uid, gid = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
    if not (uid.isascii() and uid.isdigit() and gid.isascii() and gid.isdigit()):
        return
    for path in paths:
        try:
            os.chown(path, int(uid), int(gid), follow_symlinks=False)
        except FileNotFoundError:
            continue
        except OSError:
            log.warning("could not chown %s to %s:%s", path, uid, gid, exc_info=True)
