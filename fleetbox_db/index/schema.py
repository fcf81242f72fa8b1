"""Which revision an index file is at, and the Alembic upgrade that brings it to head.

Classifying a file costs two one-row queries and imports nothing heavy; Alembic and
SQLAlchemy are imported only when an upgrade is actually needed, so an up-to-date index
never pays for them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from fleetbox_db.index.connection import DEFAULT_BUSY_TIMEOUT, connect

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Engine

APPLICATION_ID: Final = 0x46425844  # "FBXD", set by the first revision
#: How our revision ids are spelled: a naming convention only, never how a file is judged.
REVISION_PREFIX: Final = "fleetbox_"
KNOWN_REVISIONS: Final = ("fleetbox_0001", "fleetbox_0002", "fleetbox_0003", "fleetbox_0004")
HEAD: Final = KNOWN_REVISIONS[-1]
#: The tables of the head revision: an index at head missing one lost its schema.
HEAD_TABLES: Final = frozenset({"members", "fixtures", "reservations"})
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
