"""A large insert drops the members insert triggers and does their work itself
(index/bulk.py): the file it leaves must be the one the triggers would have left."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from helpers import CREATED, put
from internals import index_connection, index_file

from fleetbox_db import VM, Store
from fleetbox_db.index import bulk

MANY = bulk.BULK_ROWS + 44


def _put_members(root: Path, first: int, count: int) -> None:
    for i in range(first, first + count):
        put(root, f"web{i:04d}-1", ip=f"10.1.{i // 250}.{i % 250 + 2}")


def _state(store: Store) -> dict[str, object]:
    """Everything the triggers touch, as another reader of the file sees it."""
    conn = index_connection(store)
    return {
        "members": conn.execute(
            "SELECT id, cluster, name, seq, state, ip, digest FROM members ORDER BY id"
        ).fetchall(),
        "member_seq": conn.execute("SELECT value FROM member_seq").fetchall(),
        "events": conn.execute(
            "SELECT cluster, name, kind, fields, ip FROM history ORDER BY id"
        ).fetchall(),
        "touched": conn.execute("SELECT * FROM history_touched").fetchall(),
        "schema": sorted(
            conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
        ),
    }


def _build(root: Path) -> dict[str, object]:
    """A first build (history not recording), then a large insert while it records, then
    one member created row by row: the triggers must be back and counting."""
    _put_members(root, 0, MANY)
    with Store.open(root) as store:
        store.list()
        _put_members(root, MANY, MANY)
        store.list()
        store.create(VM("db00000-1", mac="52:54:00:00:00:01", ip="10.9.0.2", created_at=CREATED))
        return _state(store)


def test_bulk_insert_leaves_what_the_triggers_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk_state = _build(tmp_path / "bulk")
    monkeypatch.setattr(bulk, "BULK_ROWS", 10**9)  # every insert row by row, triggers on
    row_state = _build(tmp_path / "rows")

    assert bulk_state == row_state
    events = bulk_state["events"]
    assert isinstance(events, list)
    assert sum(1 for e in events if e[2] == "created") == MANY + 1  # the second batch, db-1


def _fail_inside(store: Store, keys: list[tuple[object, object]]) -> None:
    with index_file(store).write() as conn, bulk.insert_triggers_dropped(conn, keys) as first:
        assert first == 4
        raise RuntimeError("the insert failed")


def _insert_twice(conn: sqlite3.Connection) -> None:
    """A bulk insert that fails on its second row (the first is there already)."""
    with bulk.insert_triggers_dropped(conn, [("x", "x-1")] * MANY):
        conn.execute("INSERT INTO members (cluster, name) VALUES ('x', 'x-1')")
        conn.execute("INSERT INTO members (cluster, name) VALUES ('x', 'x-1')")


def test_a_rolled_back_bulk_insert_leaves_the_triggers(root: Path) -> None:
    _put_members(root, 0, 3)
    with Store.open(root) as store:
        store.list()
        conn = index_connection(store)
        schema = sorted(conn.execute("SELECT * FROM sqlite_master").fetchall())
        keys = [(f"c{i}", f"c{i}-1") for i in range(MANY)]
        with pytest.raises(RuntimeError, match="the insert failed"):
            _fail_inside(store, keys)
        assert sorted(conn.execute("SELECT * FROM sqlite_master").fetchall()) == schema
        assert conn.execute("SELECT value FROM member_seq").fetchone()[0] == 3


def test_a_failed_insert_never_reuses_a_number(root: Path) -> None:
    """Committed after a failure inside: the triggers are back, numbers skipped not reused."""
    _put_members(root, 0, 3)
    with Store.open(root) as store:
        store.list()
        with index_file(store).write() as conn:
            with pytest.raises(sqlite3.IntegrityError):
                _insert_twice(conn)
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            assert {"member_seq_insert", "history_member_insert"} <= names
        assert index_connection(store).execute("SELECT value FROM member_seq").fetchone()[0] == (
            3 + MANY
        )


def test_an_unknown_insert_trigger_keeps_the_row_by_row_insert(root: Path) -> None:
    _put_members(root, 0, 1)
    with Store.open(root) as store:
        store.list()
        conn = index_connection(store)
        conn.execute("CREATE TABLE counted (n INTEGER)")
        conn.execute("INSERT INTO counted VALUES (0)")
        conn.execute(
            "CREATE TRIGGER count_inserts AFTER INSERT ON members"
            " BEGIN UPDATE counted SET n = n + 1; END"
        )
        conn.commit()
        _put_members(root, 1, MANY)
        store.list()
        assert conn.execute("SELECT n FROM counted").fetchone()[0] == MANY
        assert conn.execute("SELECT value FROM member_seq").fetchone()[0] == MANY + 1
        seqs = [r[0] for r in conn.execute("SELECT seq FROM members ORDER BY seq")]
        assert seqs == list(range(1, MANY + 2))
