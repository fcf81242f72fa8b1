"""A new index is created at head without Alembic (index/head.py replayed): the file it makes
must be the file `alembic upgrade head` makes, whatever head is. Real files only.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from fleetbox_db import Store
from fleetbox_db.index import head, schema
from fleetbox_db.index.models import Base

#: Every pragma that describes the file or its schema, beyond sqlite_master itself.
PRAGMAS = ("application_id", "user_version", "page_size", "auto_vacuum", "encoding")


def described(
    path: Path, with_rows: bool = True
) -> tuple[list[tuple[str, str, str, str | None]], dict[str, object]]:
    """sqlite_master's rows (type, name, table, SQL), revision, pragmas and every table's rows."""
    conn = sqlite3.connect(path)
    try:
        master = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        facts: dict[str, object] = {p: conn.execute(f"PRAGMA {p}").fetchone()[0] for p in PRAGMAS}
        facts["revision"] = schema.current_revision(conn)
        if with_rows:
            tables = [name for kind, name, _, _ in master if kind == "table"]
            facts["rows"] = {t: conn.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}
        facts["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    return master, facts


def test_snapshot_is_of_this_codes_head() -> None:
    assert head.REVISION == schema.HEAD, (
        "index/head.py is stale: regenerate it with "
        '`python -c "from fleetbox_db.index import schema; schema.write_snapshot()"`'
    )


def test_created_schema_equals_the_migrated_one(tmp_path: Path) -> None:
    migrated, created = tmp_path / "migrated.db", tmp_path / "created.db"
    schema.run_alembic(migrated, "upgrade", "head")
    assert schema.create_at_head(created)
    assert described(created) == described(migrated)
    assert described(created)[1]["revision"] == schema.HEAD


def test_created_schema_equals_the_models(tmp_path: Path) -> None:
    path = tmp_path / "created.db"
    assert schema.create_at_head(path)
    engine = schema.make_engine(path)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_a_file_with_any_schema_is_left_to_alembic(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    schema.run_alembic(path, "upgrade", "head")
    schema.run_alembic(path, "downgrade", "base")  # keeps an empty alembic_version table
    assert not schema.create_at_head(path)
    schema.upgrade_to_head(path)
    assert described(path)[1]["revision"] == schema.HEAD


def test_a_new_store_index_is_the_migrated_schema_and_imports_no_alembic(tmp_path: Path) -> None:
    code = (
        "import sys; from fleetbox_db import Store; s = Store.open(sys.argv[1]); s.list();"
        " s.close(); print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('alembic', 'sqlalchemy')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "root")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
    migrated = tmp_path / "migrated.db"
    schema.run_alembic(migrated, "upgrade", "head")
    # Rows aside: the list() has started the history since.
    assert described(tmp_path / "root" / "index.db", False) == described(migrated, False)


@pytest.mark.parametrize("stale", [pytest.param("fleetbox_0000", id="older-snapshot")])
def test_a_stale_snapshot_falls_back_to_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stale: str
) -> None:
    monkeypatch.setattr(head, "REVISION", stale)
    path = tmp_path / "index.db"
    assert not schema.create_at_head(path)
    schema.upgrade_to_head(path)
    assert described(path)[1]["revision"] == schema.HEAD
    with Store.open(tmp_path / "root") as store:
        assert store.list() == []
