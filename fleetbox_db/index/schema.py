"""Which revision an index file is at, and the upgrade that brings it to head.

Classifying a file costs two one-row queries and imports nothing heavy; Alembic and
SQLAlchemy are imported only when an upgrade is actually needed, so an up-to-date index
never pays for them. A new (empty) index is created at head by replaying the schema that
Alembic's migrations leave (index/head.py, generated from a migrated file by
write_snapshot()), without importing Alembic at all: its import and run cost as much as reading
10,000 configs. tests/test_head_schema.py proves the two give the same schema.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from fleetbox_db.index import head
from fleetbox_db.index.connection import (
    DEFAULT_BUSY_TIMEOUT,
    begin_immediate,
    connect,
    enable_wal,
)

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Engine

APPLICATION_ID: Final = 0x46425844  # "FBXD", set by the first revision
#: How our revision ids are spelled: a naming convention only, never how a file is judged.
REVISION_PREFIX: Final = "fleetbox_"
KNOWN_REVISIONS: Final = (
    "fleetbox_0001",
    "fleetbox_0002",
    "fleetbox_0003",
    "fleetbox_0004",
    "fleetbox_0005",
    "fleetbox_0006",
    "fleetbox_0007",
    "fleetbox_0008",
    "fleetbox_0009",
    "fleetbox_0010",
    "fleetbox_0011",
)
HEAD: Final = KNOWN_REVISIONS[-1]
#: The tables of the head revision: an index at head missing one lost its schema.
HEAD_TABLES: Final = frozenset(
    {
        "members",
        "fixtures",
        "reservations",
        "history",
        "history_meta",
        "history_touched",
        "member_seq",
        "member_removals",
        "vm_records",
    }
)
#: Alembic's table and the automatic index SQLite gives its primary key.
_VERSION_TABLE: Final = frozenset({"alembic_version", "sqlite_autoindex_alembic_version_1"})

Status = Literal["current", "older", "newer", "empty", "foreign"]


def classify(conn: sqlite3.Connection) -> Status:
    """Say what an open index file holds; sqlite3.DatabaseError if it is not SQLite at all."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id == 0:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master LIMIT 3")}
        if not names:
            return "empty"
        # `alembic downgrade base` leaves an empty version table (and resets the id): an
        # index with nothing in it, not someone else's file to move aside.
        if names <= _VERSION_TABLE and current_revision(conn) is None:
            return "empty"
        return "foreign"
    if app_id != APPLICATION_ID:
        return "foreign"
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return "foreign"
        raise  # a full disk or an I/O error says nothing about whose file this is
    if row is None or not isinstance(row[0], str):
        return "foreign"
    version: str = row[0]
    if version == HEAD:
        marks = ", ".join("?" * len(HEAD_TABLES))
        present = conn.execute(
            f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({marks})",
            tuple(HEAD_TABLES),
        ).fetchone()[0]
        return "current" if present == len(HEAD_TABLES) else "foreign"
    # Our application id makes the file ours, whatever its revision is called: one this code
    # does not know is a later release's (SPEC §6: never moved aside, never downgraded).
    return "older" if version in KNOWN_REVISIONS else "newer"


def current_revision(conn: sqlite3.Connection) -> str | None:
    """The alembic_version of an index, or None before the first revision."""
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError as exc:
        # Only a missing table means "before the first revision": a full disk or an I/O
        # error failing the read must not pass for an empty index.
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else str(row[0])


def migrations_dir() -> Path:
    """migrations/ shipped inside the wheel, else the checkout's top-level one (editable)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(f"fleetbox_db migrations not found next to {package}")


def make_engine(
    path: Path, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, *, wal: bool = True
) -> Engine:
    """A SQLAlchemy engine whose transactions start with BEGIN IMMEDIATE.

    pysqlite's own transaction handling delays BEGIN until the first DML statement, so DDL
    would run outside any transaction and a failing revision would be half applied.
    """
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool

    engine = create_engine(
        "sqlite://", creator=lambda: connect(path, busy_timeout, wal=wal), poolclass=NullPool
    )

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config(connection: Any = None) -> Config:
    """The Alembic config, built in code: alembic.ini is for developers only."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def run_alembic(
    path: Path,
    command: str,
    revision: str,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    *,
    wal: bool = True,
) -> None:
    """Run ``alembic upgrade/downgrade <revision>`` on the index at *path*.

    The caller holds <root>/index.lock; each revision commits on its own, so a failing one
    leaves the index at the previous revision.
    """
    from alembic import command as commands

    engine = make_engine(path, busy_timeout, wal=wal)
    try:
        with engine.connect() as connection:
            getattr(commands, command)(alembic_config(connection), revision)
    finally:
        engine.dispose()


def upgrade_to_head(
    path: Path, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, *, wal: bool = True
) -> None:
    """Bring the index at *path* to head: created from the snapshot when it holds nothing,
    else upgraded by Alembic. The caller holds <root>/index.lock. wal=False leaves the file
    in rollback-journal mode (a new file built aside, whole in one file when renamed)."""
    if not create_at_head(path, busy_timeout, wal=wal):
        run_alembic(path, "upgrade", "head", busy_timeout, wal=wal)


def create_at_head(
    path: Path, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, *, wal: bool = True
) -> bool:
    """Create the head schema in the empty database at *path*, in one transaction.

    False (nothing done) when the file holds any schema (an index downgraded to base keeps
    Alembic's table) or the snapshot is not of this code's head (a revision was added and
    index/head.py not regenerated): Alembic then does the work, only slower.
    """
    if head.REVISION != HEAD:
        return False
    conn = connect(path, busy_timeout, wal=False)
    try:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            return False
        for pragma, value in head.FILE_PRAGMAS:  # before the first table: they shape the file
            conn.execute(f"PRAGMA {pragma} = {value!r}")
        begin_immediate(conn, busy_timeout, wait=True)
        try:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                conn.execute("ROLLBACK")
                return False
            for statement in head.STATEMENTS:
                conn.execute(statement)
            for insert, values in head.ROWS:
                conn.execute(insert, values)
            conn.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (head.REVISION,))
            for pragma, value in head.PRAGMAS:
                conn.execute(f"PRAGMA {pragma} = {int(value)}")
            conn.execute("COMMIT")
            if wal:
                enable_wal(conn, busy_timeout)  # as the engine Alembic runs on leaves it
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return True


#: Read off a migrated file: those set before any table, then those set in the transaction.
_FILE_PRAGMAS: Final = ("page_size", "auto_vacuum", "encoding")
_PRAGMAS: Final = ("application_id", "user_version")


def snapshot_source() -> str:
    """index/head.py's text: the schema `alembic upgrade head` leaves in a new file."""
    import tempfile  # here: a tool for developers, and shutil with it costs every command

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.db"
        run_alembic(path, "upgrade", "head")
        conn = connect(path, wal=False)
        try:
            revision = current_revision(conn)
            rows = conn.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
            ).fetchall()
            file_pragmas = [(p, conn.execute(f"PRAGMA {p}").fetchone()[0]) for p in _FILE_PRAGMAS]
            pragmas = [(p, conn.execute(f"PRAGMA {p}").fetchone()[0]) for p in _PRAGMAS]
            data = _rows_migrations_insert(conn)
        finally:
            conn.close()
    statements = "".join(_literal(sql) for (sql,) in rows)
    return _HEAD_TEMPLATE.format(
        revision=repr(revision),
        file_pragmas=repr(tuple(file_pragmas)),
        pragmas=repr(tuple(pragmas)),
        statements=statements,
        rows="".join(f"    {row!r},\n" for row in data),
    )


def _rows_migrations_insert(conn: sqlite3.Connection) -> list[tuple[str, tuple[object, ...]]]:
    """(INSERT statement, values) of every row a new file's migrations leave (history_meta's
    settings, say); alembic_version's is written by create_at_head itself."""
    tables = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " AND name != 'alembic_version' ORDER BY rowid"
    ).fetchall()
    found: list[tuple[str, tuple[object, ...]]] = []
    for (table,) in tables:
        for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid'):
            marks = ", ".join("?" * len(row))
            found.append((f'INSERT INTO "{table}" VALUES ({marks})', tuple(row)))
    return found


def _literal(sql: str) -> str:
    lines = "".join(f"        {line!r}\n" for line in sql.splitlines(keepends=True))
    return f"    (\n{lines}    ),\n"


_HEAD_TEMPLATE: Final = '''# ruff: noqa: E501
"""The schema of a new index at head, as Alembic's migrations leave it. GENERATED: do not edit.

Regenerate after adding a revision:
    python -c "from fleetbox_db.index import schema; schema.write_snapshot()"
    ruff format fleetbox_db/index/head.py
(tests/test_head_schema.py fails until it is; until then new indexes go through Alembic).
"""

from typing import Final

REVISION: Final = {revision}
#: Pragmas of the file itself, set before the first table.
FILE_PRAGMAS: Final = {file_pragmas}
PRAGMAS: Final = {pragmas}
#: sqlite_master's SQL in creation order (automatic indexes are made by their tables).
STATEMENTS: Final = (
{statements})
#: The rows the migrations insert into a new file, as (statement, values).
ROWS: Final[tuple[tuple[str, tuple[object, ...]], ...]] = (
{rows})
'''


def write_snapshot() -> Path:  # pragma: no cover - the developer's regeneration step
    """Regenerate index/head.py from this checkout's migrations (then run ruff format)."""
    target = Path(__file__).with_name("head.py")
    target.write_text(snapshot_source())
    return target
