"""Alembic environment: runs on the connection fleetbox_db hands over, or on alembic.ini's URL.

The library passes its own connection through ``config.attributes["connection"]``; that
connection already begins every transaction with ``BEGIN IMMEDIATE``, so each revision
commits whole or not at all. From the command line, ``-x root=PATH`` targets a store.
"""

from __future__ import annotations

from pathlib import Path

from alembic import context
from sqlalchemy.engine import Connection

from fleetbox_db.index.models import Base
from fleetbox_db.index.schema import make_engine

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        transactional_ddl=True,
        transaction_per_migration=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    root = context.get_x_argument(as_dictionary=True).get("root")
    if root is not None:
        path = Path(root) / "index.db"
    else:
        url = config.get_main_option("sqlalchemy.url") or "sqlite:///dev-index.db"
        path = Path(url.removeprefix("sqlite:///"))
    engine = make_engine(path)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("fleetbox_db migrations run online only (SQLite DDL is cheap).")
run_migrations_online()
