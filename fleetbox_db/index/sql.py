"""Read-only SQL over the public views: Store.query() and `fleetbox-db sql`.

Each query gets its own connection, opened with ``mode=ro`` (SQLite refuses to write the file
at all) and ``PRAGMA query_only``. On it the public views (vms, fixtures, addresses,
reservations, events, problems) are TEMP views over the api_* views the schema defines
(migrations/versions/fleetbox_0006_history.py); being TEMP, they shadow the internal tables
of the same name. An authorizer then lets a statement read only through those views and
refuses everything else by its action code, before it runs: writes, ATTACH, PRAGMA,
transactions, load_extension. A progress handler stops a query past its time limit (a
runaway recursive CTE), and SQLite's own limits bound the SQL text and any value's length.
The caller reconciles (under the write lock) first; nothing here can change the index.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from fleetbox_db.errors import IndexBusyError, QueryRefusedError, QueryTimeoutError
from fleetbox_db.index.connection import classify_error
from fleetbox_db.records import QueryResult

__all__ = ["DEFAULT_TIMEOUT", "MAX_SQL_LENGTH", "VIEWS", "describe", "run"]

DEFAULT_TIMEOUT: Final = 10.0
#: Longest SQL text accepted, in bytes (SQLite refuses a longer one before parsing it).
MAX_SQL_LENGTH: Final = 100_000
#: Longest string or blob a query may build (zeroblob(2e9) would take that much memory).
_MAX_VALUE_LENGTH: Final = 10_000_000
#: Most text and blob bytes an answer may hold; rows fetched between looks at the clock.
_MAX_ANSWER_BYTES: Final = 256 * 2**20
_ROWS_PER_LOOK: Final = 1000
#: Virtual machine steps between two looks at the clock.
_STEPS: Final = 10_000

#: Public view -> (the schema's view, what a row is). Part of the API: a change is a new
#: schema revision, and the README lists them.
VIEWS: Final = {
    "vms": ("api_vms", "one row per member directory: its state and last good config"),
    "fixtures": ("api_fixtures", "one row per fixture of a member's config, in file order"),
    "addresses": ("api_addresses", "every IP and MAC a config holds, and reserved IPs"),
    "reservations": ("api_reservations", "addresses allocate_ip() reserved, not yet in a config"),
    "events": ("api_events", "the change history, oldest first (see `fleetbox-db log`)"),
    "problems": ("api_problems", "conflicting addresses, unreadable configs, stray directories"),
}

_ALLOWED: Final = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE})
_REFUSED_FUNCTIONS: Final = frozenset({"load_extension", "readfile", "writefile", "edit"})


def run(
    path: Path,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any],
    timeout: float,
    busy_timeout: float,
) -> QueryResult:
    """Run one read-only statement on the index at *path*; every row, fetched under the
    time limit. Raises QueryRefusedError, QueryTimeoutError, IndexBusyError."""
    if not isinstance(sql, str) or not sql.strip():
        raise QueryRefusedError("no SQL given; pass one SELECT statement over the views")
    if len(sql.encode("utf-8", "surrogatepass")) > MAX_SQL_LENGTH:
        raise QueryRefusedError(
            f"the query is longer than {MAX_SQL_LENGTH} bytes; shorten it (bind values as "
            "parameters)"
        )
    conn = _open(path, busy_timeout)
    try:
        guard = _Guard(timeout)
        conn.set_authorizer(guard.authorize)
        conn.set_progress_handler(guard.progress, _STEPS)
        try:
            cursor = conn.execute(sql, params)
            columns = tuple(d[0] for d in cursor.description or ())
            rows = _fetch(cursor, guard)
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise guard.error(exc) from exc
        if columns == ():
            raise QueryRefusedError("the statement returns no rows; only a SELECT is run")
        return QueryResult(columns, rows)
    finally:
        conn.close()


def _fetch(cursor: sqlite3.Cursor, guard: _Guard) -> list[tuple[Any, ...]]:
    """Every row, stopping at the time limit or past _MAX_ANSWER_BYTES of text and blobs
    (a few rows of zeroblob() would otherwise fill memory well within the time limit)."""
    rows: list[tuple[Any, ...]] = []
    size = 0
    for row in cursor:
        rows.append(row)
        size += sum(len(v) for v in row if isinstance(v, str | bytes))
        if size > _MAX_ANSWER_BYTES:
            raise QueryRefusedError(
                f"the answer is larger than {_MAX_ANSWER_BYTES // 2**20} MiB; select fewer "
                "rows or columns (LIMIT, WHERE)"
            )
        if len(rows) % _ROWS_PER_LOOK == 0 and guard.progress():
            raise sqlite3.OperationalError("interrupted")
    return rows


def describe(path: Path, busy_timeout: float) -> QueryResult:
    """The public views: (view, columns, what a row is), for `fleetbox-db sql --schema`."""
    conn = _open(path, busy_timeout)
    try:
        rows = [
            (view, ", ".join(r[1] for r in conn.execute(f"PRAGMA temp.table_info({view})")), what)
            for view, (_, what) in VIEWS.items()
        ]
    finally:
        conn.close()
    return QueryResult(("view", "columns", "description"), rows)


def _open(path: Path, busy_timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=busy_timeout, isolation_level=None
    )
    try:
        for view, (source, _) in VIEWS.items():
            conn.execute(f"CREATE TEMP VIEW {view} AS SELECT * FROM main.{source}")
        conn.execute("PRAGMA query_only = ON")
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_LENGTH)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _MAX_VALUE_LENGTH)
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    except BaseException:
        conn.close()
        raise
    return conn


class _Guard:
    """The authorizer and progress handler of one query, and what it refused and why."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.timed_out = False
        self.refused: str | None = None

    def progress(self) -> int:
        if time.monotonic() > self.deadline:
            self.timed_out = True
            return 1  # SQLite stops the statement: "interrupted"
        return 0

    def authorize(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, via: str | None
    ) -> int:
        if action in _ALLOWED:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            # The main schema's tables only through a view (the internal tables are read by
            # ours alone); a TEMP view's or a common table expression's columns freely.
            if via is not None or db != "main":
                return sqlite3.SQLITE_OK
            return self._refuse(
                f"{arg1} is internal; query the views: {', '.join(VIEWS)} "
                "(`fleetbox-db sql --schema` lists their columns)"
            )
        if action == sqlite3.SQLITE_FUNCTION:
            if (arg2 or "").lower() in _REFUSED_FUNCTIONS:
                return self._refuse(f"the function {arg2}() is refused: queries are read-only")
            return sqlite3.SQLITE_OK
        return self._refuse(_REFUSALS.get(action, "only a SELECT over the views is run"))

    def _refuse(self, reason: str) -> int:
        if self.refused is None:
            self.refused = reason
        return sqlite3.SQLITE_DENY

    def error(self, exc: Exception) -> Exception:
        """The typed error for a failed statement."""
        if self.timed_out:
            return QueryTimeoutError(
                f"the query ran past its {self.timeout:g} s time limit and was stopped; "
                "narrow it (WHERE, LIMIT) or raise --timeout"
            )
        if self.refused is not None:
            return QueryRefusedError(f"query refused: {self.refused}")
        if isinstance(exc, sqlite3.Error) and classify_error(exc) == "busy":
            return IndexBusyError(f"the index stayed locked while querying it ({exc}); retry")
        text = str(exc)
        if "one statement at a time" in text:
            text = "more than one statement; run one SELECT at a time"
        return QueryRefusedError(f"query failed: {text}")


_REFUSALS: Final = {
    sqlite3.SQLITE_ATTACH: "ATTACH is refused: only the index's views can be queried",
    sqlite3.SQLITE_DETACH: "DETACH is refused: only the index's views can be queried",
    sqlite3.SQLITE_PRAGMA: "PRAGMA is refused (`fleetbox-db sql --schema` lists the views)",
    sqlite3.SQLITE_TRANSACTION: "transactions are refused: each query runs on its own",
    sqlite3.SQLITE_SAVEPOINT: "savepoints are refused: each query runs on its own",
    sqlite3.SQLITE_INSERT: "writes are refused: the index is changed only by the Store",
    sqlite3.SQLITE_UPDATE: "writes are refused: the index is changed only by the Store",
    sqlite3.SQLITE_DELETE: "writes are refused: the index is changed only by the Store",
}
