"""check(): problems on disk and the index's drift from disk, found without changing either."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from index_lock import write_locked

from fleetbox_db import VM, Problem, Store, cluster_name
from fleetbox_db.config import encode_config

HOUR = 3600 * 1_000_000_000
CREATED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MAC = "02:00:00:00:00:01"


@pytest.fixture(scope="module")
def head_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty index at head: copying it saves every test the Alembic upgrade."""
    root = tmp_path_factory.mktemp("template")
    with Store.open(root) as store:
        store.list()
    return root / "index.db"


@pytest.fixture
def root(tmp_path: Path, head_index: Path) -> Path:
    path = tmp_path / "fleetbox"
    path.mkdir()
    shutil.copyfile(head_index, path / "index.db")
    return path


def go_write(path: Path, data: bytes) -> None:
    """In place, as Go's os.WriteFile: O_TRUNC, write, no rename."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def put(root: Path, name: str, ip: str = "", mac: str = "", *, cluster: str | None = None) -> Path:
    """A member config written an hour ago (so the racy guard plays no part)."""
    path = root / "clusters" / (cluster or cluster_name(name)) / name / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    go_write(path, encode_config(VM(name, mac=mac, created_at=CREATED, ip=ip)))
    when = os.stat(path).st_mtime_ns - HOUR
    os.utime(path, ns=(when, when))
    return path


def index_bytes(root: Path) -> dict[str, bytes | None]:
    """index.db and its WAL; an empty WAL (any reader in WAL mode makes one) holds nothing."""
    found: dict[str, bytes | None] = {}
    for suffix in ("", "-wal"):
        path = Path(f"{root / 'index.db'}{suffix}")
        found[suffix] = (path.read_bytes() or None) if path.exists() else None
    return found


def summary(problems: list[Problem]) -> set[tuple[str, tuple[str, ...], str]]:
    return {(p.kind, p.members, p.value) for p in problems}


def test_clean_store_has_no_problems(root: Path) -> None:
    put(root, "web-1", "10.0.0.2")
    put(root, "web-2", "10.0.0.3")
    (root / "clusters/db/db-1").mkdir(parents=True)  # configless is not a problem
    with Store.open(root) as store:
        store.list()
        assert store.check() == []


def test_disk_problems_name_members_and_values(root: Path) -> None:
    put(root, "web-1", "10.0.0.2", MAC)
    shutil.copytree(root / "clusters/web/web-1", root / "clusters/web/web-2")  # cp -r
    torn = put(root, "db-1", "10.0.0.5")
    go_write(torn, b'{"name": "db-1", "ip": "10.')
    put(root, "bar", "10.0.0.9", cluster="foo")
    with Store.open(root) as store:
        store.list()
        problems = store.check()
    assert summary(problems) == {
        ("conflict", ("web-1", "web-2"), "10.0.0.2"),
        ("conflict", ("web-1", "web-2"), MAC),
        ("unreadable", ("db-1",), str(torn)),
        ("stray", ("bar",), str(root / "clusters/foo/bar")),
    }
    messages = {p.kind: str(p) for p in problems}
    assert "web-1, web-2" in messages["conflict"]
    assert str(torn) in messages["unreadable"]
    assert "clusters/bar/" in messages["stray"]


def test_conflicts_count_addresses_as_addresses_and_macs_in_any_case(root: Path) -> None:
    put(root, "web-1", "10.0.0.2", MAC)
    put(root, "web-2", "10.0.0.3", MAC.upper())
    put(root, "web-3", "10.0.0.3")
    with Store.open(root) as store:
        store.list()
        assert summary(store.check()) == {
            ("conflict", ("web-1", "web-2"), MAC),
            ("conflict", ("web-2", "web-3"), "10.0.0.3"),
        }


def behind_the_back(root: Path) -> None:
    """Edits made while no fleetbox_db process is looking."""
    go_write(root / "clusters/web/web-1/config.json", encode_config(VM("web-1", ip="10.0.0.9")))
    go_write(root / "clusters/web/web-2/config.json", b"{")
    shutil.rmtree(root / "clusters/web/web-3")
    put(root, "web-4", "10.0.0.20")
    put(root, "bar", cluster="foo")


def test_drift_is_reported_before_any_list_and_nothing_changes(root: Path) -> None:
    for i in range(1, 4):
        put(root, f"web-{i}", f"10.0.0.{i + 1}")
    with Store.open(root) as store:
        store.list()
    behind_the_back(root)
    before = index_bytes(root)
    with Store.open(root) as store:
        problems = store.check()
        assert index_bytes(root) == before
        assert store.check() == problems  # asking again still changed nothing
    assert index_bytes(root) == before
    drift = {p.members: str(p) for p in problems if p.kind == "drift"}
    assert set(drift) == {("web-1",), ("web-2",), ("web-3",), ("web-4",), ("bar",)}
    assert "stale" in drift[("web-1",)]
    assert "removed" in drift[("web-3",)]
    assert "lacks" in drift[("web-4",)]
    assert {p.kind for p in problems if p.kind != "drift"} == {"unreadable", "stray"}
    with Store.open(root) as store:
        store.reconcile()
        after = store.check()
    assert [p for p in after if p.kind == "drift"] == []
    assert summary(after) == {p for p in summary(problems) if p[0] != "drift"}


def test_same_signature_rewrite_is_drift(root: Path) -> None:
    """check() reads every config afresh, so even a change the stat data hides is found."""
    path = put(root, "web-1", "10.0.0.2")
    with Store.open(root) as store:
        store.list()
        before = os.stat(path)
        go_write(path, encode_config(VM("web-1", created_at=CREATED, ip="10.0.0.3")))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        st = os.stat(path)
        with contextlib.closing(sqlite3.connect(root / "index.db", isolation_level=None)) as c:
            c.execute("UPDATE members SET ctime_ns = ?", (st.st_ctime_ns,))
        assert [(p.kind, p.members) for p in store.check()] == [("drift", ("web-1",))]


def test_check_takes_no_write_lock(root: Path) -> None:
    put(root, "web-1", "10.0.0.2")
    with Store.open(root) as store:
        store.list()
    behind_the_back_lite = root / "clusters/web/web-1/config.json"
    go_write(behind_the_back_lite, b"{")
    with Store.open(root, busy_timeout=0.2) as store, write_locked(root):
        found = {(p.kind, p.members) for p in store.check()}
    assert found == {("unreadable", ("web-1",)), ("drift", ("web-1",))}


def test_unreadable_member_keeps_its_address_and_is_no_drift_once_reconciled(root: Path) -> None:
    path = put(root, "web-1", "10.0.0.2")
    with Store.open(root) as store:
        store.list()
        go_write(path, b"not json")
        store.reconcile()
        assert summary(store.check()) == {("unreadable", ("web-1",), str(path))}
        assert store.free_ips("10.0.0.0/30") == []


def test_index_at_a_newer_revision_is_reported_and_disk_still_checked(root: Path) -> None:
    put(root, "bar", cluster="foo")
    with Store.open(root) as store:
        store.list()
    with contextlib.closing(sqlite3.connect(root / "index.db", isolation_level=None)) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'fleetbox_9999'")
    with Store.open(root) as store:
        problems = store.check()
    assert {p.kind for p in problems} == {"index", "stray"}


def test_check_without_an_index_creates_none(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    put(root, "web-1", "10.0.0.2")
    with Store.open(root) as store:
        assert store.check() == []
    assert not (root / "index.db").exists()


def test_member_dir_whose_name_is_not_utf8_checks_clean(tmp_path: Path) -> None:
    """Go's mkdir can make such a name; it is a member like any other, not a problem."""
    root = tmp_path / "fleetbox"
    name = os.fsdecode(b"web\xff-1")
    with Store.open(root) as store:
        store.ensure_dir(name)
        store.save(VM(name, ip="10.0.0.2"))
        assert os.path.isfile(os.fsencode(store.clusters_dir) + b"/web\xff/web\xff-1/config.json")
        assert store.check() == []
        store.delete(name)
        assert store.list() == []
        assert store.check() == []
