"""check(): problems on disk and the index's drift from disk, found without changing either."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

from helpers import CREATED, go_write, put
from index_lock import write_locked

from fleetbox_db import VM, Problem, Store
from fleetbox_db.rules.config import encode_config

MAC = "02:00:00:00:00:01"


def index_bytes(root: Path) -> dict[str, bytes | None]:
    """index.db and its WAL; an empty WAL (any reader in WAL mode makes one) holds nothing."""
    found: dict[str, bytes | None] = {}
    for suffix in ("", "-wal"):
        path = Path(f"{root / 'index.db'}{suffix}")
        found[suffix] = (path.read_bytes() or None) if path.exists() else None
    return found


def summary(problems: list[Problem]) -> set[tuple[str, tuple[str, ...], str]]:
    return {(p.kind, p.members, p.value) for p in problems}


def test_clean_store_has_no_problems(seeded_root: Path) -> None:
    put(seeded_root, "web-1", "10.0.0.2")
    put(seeded_root, "web-2", "10.0.0.3")
    (seeded_root / "clusters/db/db-1").mkdir(parents=True)  # configless is not a problem
    with Store.open(seeded_root) as store:
        store.list()
        assert store.check() == []


def test_disk_problems_name_members_and_values(seeded_root: Path) -> None:
    put(seeded_root, "web-1", "10.0.0.2", MAC)
    shutil.copytree(seeded_root / "clusters/web/web-1", seeded_root / "clusters/web/web-2")  # cp -r
    torn = put(seeded_root, "db-1", "10.0.0.5")
    go_write(torn, b'{"name": "db-1", "ip": "10.')
    put(seeded_root, "bar", "10.0.0.9", cluster="foo")
    with Store.open(seeded_root) as store:
        store.list()
        problems = store.check()
    assert summary(problems) == {
        ("conflict", ("web-1", "web-2"), "10.0.0.2"),
        ("conflict", ("web-1", "web-2"), MAC),
        ("unreadable", ("db-1",), str(torn)),
        ("stray", ("bar",), str(seeded_root / "clusters/foo/bar")),
    }
    messages = {p.kind: str(p) for p in problems}
    assert "web-1, web-2" in messages["conflict"]
    assert str(torn) in messages["unreadable"]
    assert "clusters/bar/" in messages["stray"]


def test_conflicts_count_addresses_as_addresses_and_macs_in_any_case(seeded_root: Path) -> None:
    put(seeded_root, "web-1", "10.0.0.2", MAC)
    put(seeded_root, "web-2", "10.0.0.3", MAC.upper())
    put(seeded_root, "web-3", "10.0.0.3")
    with Store.open(seeded_root) as store:
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


def test_drift_is_reported_before_any_list_and_nothing_changes(seeded_root: Path) -> None:
    for i in range(1, 4):
        put(seeded_root, f"web-{i}", f"10.0.0.{i + 1}")
    with Store.open(seeded_root) as store:
        store.list()
    behind_the_back(seeded_root)
    before = index_bytes(seeded_root)
    with Store.open(seeded_root) as store:
        problems = store.check()
        assert index_bytes(seeded_root) == before
        assert store.check() == problems  # asking again still changed nothing
    assert index_bytes(seeded_root) == before
    drift = {p.members: str(p) for p in problems if p.kind == "drift"}
    assert set(drift) == {("web-1",), ("web-2",), ("web-3",), ("web-4",), ("bar",)}
    assert "stale" in drift[("web-1",)]
    assert "removed" in drift[("web-3",)]
    assert "lacks" in drift[("web-4",)]
    assert {p.kind for p in problems if p.kind != "drift"} == {"unreadable", "stray"}
    with Store.open(seeded_root) as store:
        store.reconcile()
        after = store.check()
    assert [p for p in after if p.kind == "drift"] == []
    assert summary(after) == {p for p in summary(problems) if p[0] != "drift"}


def test_same_signature_rewrite_is_drift(seeded_root: Path) -> None:
    """check() reads every config afresh, so even a change the stat data hides is found."""
    path = put(seeded_root, "web-1", "10.0.0.2")
    with Store.open(seeded_root) as store:
        store.list()
        before = os.stat(path)
        go_write(path, encode_config(VM("web-1", created_at=CREATED, ip="10.0.0.3")))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        st = os.stat(path)
        with contextlib.closing(
            sqlite3.connect(seeded_root / "index.db", isolation_level=None)
        ) as c:
            c.execute("UPDATE members SET ctime_ns = ?", (st.st_ctime_ns,))
        assert [(p.kind, p.members) for p in store.check()] == [("drift", ("web-1",))]


def test_check_takes_no_write_lock(seeded_root: Path) -> None:
    put(seeded_root, "web-1", "10.0.0.2")
    with Store.open(seeded_root) as store:
        store.list()
    behind_the_back_lite = seeded_root / "clusters/web/web-1/config.json"
    go_write(behind_the_back_lite, b"{")
    with Store.open(seeded_root, busy_timeout=0.2) as store, write_locked(seeded_root):
        found = {(p.kind, p.members) for p in store.check()}
    assert found == {("unreadable", ("web-1",)), ("drift", ("web-1",))}


def test_unreadable_member_keeps_its_address_and_is_no_drift_once_reconciled(
    seeded_root: Path,
) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2")
    with Store.open(seeded_root) as store:
        store.list()
        go_write(path, b"not json")
        store.reconcile()
        assert summary(store.check()) == {("unreadable", ("web-1",), str(path))}
        assert store.free_ips("10.0.0.0/30") == []


def test_index_at_a_newer_revision_is_reported_and_disk_still_checked(seeded_root: Path) -> None:
    put(seeded_root, "bar", cluster="foo")
    with Store.open(seeded_root) as store:
        store.list()
    with contextlib.closing(
        sqlite3.connect(seeded_root / "index.db", isolation_level=None)
    ) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'fleetbox_9999'")
    with Store.open(seeded_root) as store:
        problems = store.check()
    assert {p.kind for p in problems} == {"index", "stray"}


def test_check_without_an_index_creates_none(root: Path) -> None:
    put(root, "web-1", "10.0.0.2")
    with Store.open(root) as store:
        assert store.check() == []
    assert not (root / "index.db").exists()


def test_member_dir_whose_name_is_not_utf8_checks_clean(root: Path) -> None:
    """Go's mkdir can make such a name; it is a member like any other, not a problem."""
    name = os.fsdecode(b"web\xff-1")
    with Store.open(root) as store:
        store.ensure_dir(name)
        store.save(VM(name, ip="10.0.0.2"))
        assert os.path.isfile(os.fsencode(store.clusters_dir) + b"/web\xff/web\xff-1/config.json")
        assert store.check() == []
        store.delete(name)
        assert store.list() == []
        assert store.check() == []
