"""Read-only SQL over the public views (issue 17): answers, the stable views, and hostile SQL
refused or stopped with the index byte-for-byte unchanged (hashed before and after).
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import later, put
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetbox_db import (
    VM,
    Fixture,
    InvalidValueError,
    QueryRefusedError,
    QueryResult,
    QueryTimeoutError,
    Store,
)

#: The public views and their columns: part of the API (README), changed only by a revision.
VIEWS = {
    "vms": "cluster, name, state, mac, cpus, memory_mb, disk_mb, image, created_at, ip, "
    "fixtures, extra",
    "fixtures": "cluster, name, position, host_path, guest_path, label",
    "addresses": "kind, value, cluster, name, source",
    "reservations": "name, subnet, ip, owner_pid, created_at",
    "events": "id, at, at_ns, cluster, name, kind, who, fields, ip, detail",
    "problems": "kind, what, value, cluster, name",
}


def digest(root: Path) -> str:
    """The index as bytes: the file and its write-ahead log."""
    h = hashlib.sha256()
    for suffix in ("", "-wal"):
        path = Path(f"{root / 'index.db'}{suffix}")
        h.update(path.read_bytes() if path.exists() else b"-")
    return h.hexdigest()


@pytest.fixture
def fleet(root: Path) -> Store:
    store = Store.open(root, clock=later)
    store.create(VM("web-1", cpus=16, fixtures=[Fixture("/srv/a", "/mnt/a", "a")]), "10.0.0.0/24")
    store.create(VM("web-2", cpus=2), "10.0.0.0/24")
    store.create(VM("db-1", cpus=12), "10.0.0.0/24")
    store.allocate_ip("db-2", "10.0.0.0/24")
    put(root, "db-9", ip="10.0.0.2")  # a hand-made config taking web-1's address
    put(root, "db-8", data=b"{not json")
    store.list()
    return store


def test_the_views_and_their_columns_are_stable(fleet: Store) -> None:
    assert fleet.views().rows == [
        (view, columns, description)
        for (view, columns), (_, _, description) in zip(
            VIEWS.items(), fleet.views().rows, strict=True
        )
    ]
    for view, columns in VIEWS.items():
        assert ", ".join(fleet.query(f"SELECT * FROM {view} LIMIT 0").columns) == columns


def test_queries_answer_from_the_reconciled_index(fleet: Store, root: Path) -> None:
    result = fleet.query(
        "SELECT cluster, count(*), sum(cpus) FROM vms WHERE cpus > 8 AND fixtures = 0"
        " GROUP BY cluster ORDER BY cluster"
    )
    assert result == QueryResult(("cluster", "count(*)", "sum(cpus)"), [("db", 1, 12)])
    states = dict(fleet.query("SELECT name, state FROM vms").rows)
    assert states == {
        "web-1": "conflict",
        "web-2": "ok",
        "db-1": "ok",
        "db-9": "conflict",
        "db-8": "unreadable",
    }
    assert fleet.query("SELECT name, ip FROM reservations").rows == [("db-2", "10.0.0.5")]
    assert fleet.query("SELECT kind, what, value, name FROM problems ORDER BY kind, name").rows == [
        ("conflict", "ip", "10.0.0.2", "db-9"),
        ("conflict", "ip", "10.0.0.2", "web-1"),
        ("unreadable", "state", None, "db-8"),
    ]
    assert fleet.query("SELECT host_path FROM fixtures WHERE name = ?", ["web-1"]).rows == [
        ("/srv/a",)
    ]
    # A hand edit made just now is seen, and its event is already in the history.
    put(root, "web-2", ip="10.0.0.99")
    assert fleet.query("SELECT ip FROM vms WHERE name = :n", {"n": "web-2"}).rows == [
        ("10.0.0.99",)
    ]
    assert fleet.query(
        "SELECT kind, who, json_extract(fields, '$.ip[1]') FROM events"
        " WHERE name = 'web-2' ORDER BY id DESC LIMIT 1"
    ).rows == [("changed", "disk", "10.0.0.99")]


HOSTILE = [
    pytest.param("DELETE FROM vms", "query failed", id="delete-view"),
    pytest.param("DELETE FROM main.members", "writes are refused", id="delete-table"),
    pytest.param("UPDATE main.members SET cpus = 1", "writes are refused", id="update"),
    pytest.param("INSERT INTO main.history (at_ns, kind) VALUES (1, 'x')", "writes", id="insert"),
    pytest.param("DROP TABLE main.members", "query refused", id="drop"),
    pytest.param("CREATE TABLE t (x)", "query refused", id="create"),
    pytest.param("CREATE TEMP TABLE t (x)", "query refused", id="create-temp"),
    pytest.param("ALTER TABLE main.members ADD COLUMN x", "query refused", id="alter"),
    pytest.param("ATTACH DATABASE ':memory:' AS x", "ATTACH is refused", id="attach-memory"),
    pytest.param("ATTACH 'evil.db' AS evil", "ATTACH is refused", id="attach-file"),
    pytest.param("SELECT * FROM main.members", "members is internal", id="internal-table"),
    pytest.param("SELECT sql FROM sqlite_master", "sqlite_master is internal", id="schema"),
    pytest.param("PRAGMA journal_mode = DELETE", "PRAGMA is refused", id="pragma-write"),
    pytest.param("PRAGMA query_only = OFF", "PRAGMA is refused", id="pragma-query-only"),
    pytest.param("PRAGMA user_version", "PRAGMA is refused", id="pragma-read"),
    pytest.param("SELECT load_extension('/tmp/x.so')", "load_extension", id="load-extension"),
    pytest.param("SELECT 1; DELETE FROM main.members", "one statement", id="two-statements"),
    pytest.param("BEGIN IMMEDIATE", "transactions are refused", id="begin"),
    pytest.param("SAVEPOINT s", "savepoints are refused", id="savepoint"),
    pytest.param("VACUUM", "query refused", id="vacuum"),
    pytest.param("REINDEX", "query refused", id="reindex"),
    pytest.param("ANALYZE", "query refused", id="analyze"),
    pytest.param("SELECT zeroblob(2000000000)", "query failed", id="huge-value"),
    pytest.param("SELECT * FROM nowhere", "query failed", id="no-such-table"),
    pytest.param("SELEKT 1", "query failed", id="syntax"),
    pytest.param("", "no SQL given", id="empty"),
    pytest.param("SELECT '" + "x" * 200_000 + "'", "longer than", id="very-long"),
]


@pytest.mark.parametrize(("sql", "message"), HOSTILE)
def test_hostile_sql_is_refused_and_the_index_is_unchanged(
    fleet: Store, root: Path, sql: str, message: str
) -> None:
    fleet.query("SELECT 1")  # reconciled: nothing left to record
    before = digest(root)
    with pytest.raises(QueryRefusedError, match=message):
        fleet.query(sql)
    assert digest(root) == before
    assert not (root / "evil.db").exists()
    assert len(fleet.query("SELECT * FROM vms").rows) == 5


def test_a_runaway_recursive_cte_is_stopped_by_the_time_limit(fleet: Store, root: Path) -> None:
    fleet.query("SELECT 1")
    before = digest(root)
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match=r"0.5 s time limit"):
        fleet.query(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
            " SELECT count(*) FROM c",
            timeout=0.5,
        )
    assert time.monotonic() - started < 5
    assert digest(root) == before
    # A huge answer is stopped the same way while its rows are fetched.
    with pytest.raises(QueryTimeoutError):
        fleet.query("SELECT * FROM vms a, vms b, vms c, vms d, vms e, vms f, vms g", timeout=0.3)
    with pytest.raises(InvalidValueError):
        fleet.query("SELECT 1", timeout=0)


def test_an_answer_too_large_for_memory_is_refused(fleet: Store, root: Path) -> None:
    fleet.query("SELECT 1")
    before = digest(root)
    with pytest.raises(QueryRefusedError, match="larger than 256 MiB"):
        fleet.query(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100)"
            " SELECT zeroblob(5000000) FROM c",
            timeout=30,
        )
    assert digest(root) == before


def test_a_query_does_not_hold_the_index(fleet: Store, root: Path) -> None:
    """A writer is not kept waiting by a long read: WAL readers take no lock writers need."""
    with Store.open(root, busy_timeout=2) as writer:
        writer.list()
        before = time.monotonic()
        # The long query runs in a child, so both really overlap.
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from fleetbox_db import Store, QueryTimeoutError\n"
                "try:\n"
                "    Store.open(sys.argv[1]).query('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL"
                " SELECT x + 1 FROM c) SELECT count(*) FROM c', timeout=3)\n"
                "except QueryTimeoutError:\n"
                "    pass\n",
                str(root),
            ]
        )
        try:
            time.sleep(1.0)
            writer.create(VM("web-3"))
            assert time.monotonic() - before < 2.5
        finally:
            assert child.wait(timeout=30) == 0


_WORDS = st.sampled_from(
    [
        "SELECT", "INSERT", "INTO", "UPDATE", "DELETE", "DROP", "CREATE", "ATTACH", "DETACH",
        "PRAGMA", "VACUUM", "REPLACE", "WITH", "RECURSIVE", "FROM", "WHERE", "SET", "VALUES",
        "TABLE", "TEMP", "VIEW", "TRIGGER", "INDEX", "BEGIN", "COMMIT", "ROLLBACK", "AS", "*",
        ";", ",", "(", ")", "=", "1", "'x'", "vms", "events", "members", "main.members",
        "history", "sqlite_master", "load_extension('x')", "writable_schema", "query_only",
        "journal_mode", "DATABASE", "':memory:'", "x", "name", "cpus", "UNION", "ALL",
        "LIMIT", "randomblob(10)", "zeroblob(100000000)", "temp.vms", "OFF", "ON",
    ]
)  # fmt: skip


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(_WORDS, min_size=1, max_size=12).map(" ".join))
def test_generated_statements_are_answered_refused_or_stopped_never_written(
    fleet: Store, root: Path, sql: str
) -> None:
    fleet.query("SELECT 1")
    before = digest(root)
    with contextlib.suppress(QueryRefusedError, QueryTimeoutError):
        fleet.query(sql, timeout=0.5)
    assert digest(root) == before
    # Nothing the statement did outlives it: the views still answer on the next query.
    assert fleet.query("SELECT count(*) FROM vms").rows == [(5,)]
    conn = sqlite3.connect(root / "index.db")
    try:
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
    finally:
        conn.close()
