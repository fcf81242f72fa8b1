"""The change history (issue 17): what each change records, who made it, that an event lands
exactly when its change does, and that the history stays bounded. Real files, real SQLite,
real processes; hand edits are made the way the Go tool writes (tests/helpers.py).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import config, config_path, later, put

from fleetbox_db import (
    VM,
    Event,
    Fixture,
    FleetboxError,
    InvalidNameError,
    InvalidValueError,
    Store,
)
from fleetbox_db.index import schema

OURS = f"fleetbox_db (pid {os.getpid()})"


def kinds(events: list[Event]) -> list[tuple[str | None, str, str]]:
    """(name, kind, who) of each event, oldest first."""
    return [(e.name, e.kind, e.who) for e in events]


def after_start(store: Store, **filters: Any) -> list[Event]:
    """Every event but the first (history-started)."""
    events = store.history(limit=None, **filters)
    assert events[0].kind == "history-started"
    return events[1:]


def recorded_kinds(root: Path) -> list[str]:
    """The kinds of the events in the index file now, read without a Store (no reconcile)."""
    conn = sqlite3.connect(root / "index.db")
    try:
        return [r[0] for r in conn.execute("SELECT kind FROM history ORDER BY id")]
    finally:
        conn.close()


@pytest.fixture
def aged(root: Path) -> Store:
    """A Store whose clock runs an hour ahead, so hand edits put() makes are not racy."""
    store = Store.open(root, clock=later)
    store.list()
    return store


# -- what each change records -------------------------------------------------------------


def test_a_new_index_starts_one_history_however_many_members_it_finds(root: Path) -> None:
    for i in range(50):
        put(root, f"web-{i}", ip=f"10.0.0.{i + 2}")
    with Store.open(root, clock=later) as store:
        assert len(store.list()) == 50
        events = store.history()
    assert [e.kind for e in events] == ["history-started"]
    assert events[0].who == OURS
    assert events[0].detail is not None
    assert "new index" in events[0].detail


def test_our_writes_are_recorded_as_ours_with_their_fields(aged: Store) -> None:
    aged.create(VM("web-1", cpus=4, fixtures=[Fixture("/srv", "/mnt", "data")]), "10.0.0.0/24")
    vm = aged.load("web-1")
    vm.cpus = 8
    vm.ip = "10.0.0.9"
    aged.save(vm)
    aged.delete("web-1")
    events = after_start(aged)
    assert kinds(events) == [
        ("web-1", "ip-reserved", OURS),
        ("web-1", "created", OURS),
        ("web-1", "reservation-released", OURS),
        ("web-1", "changed", OURS),
        ("web-1", "removed", OURS),
    ]
    created, changed, removed = events[1], events[3], events[4]
    assert created.fields["ip"] == (None, "10.0.0.2")
    assert created.fields["cpus"] == (None, 4)
    assert created.fields["fixtures"] == (None, ["/srv:/mnt (data)"])
    assert created.cluster == "web"
    assert created.ip == "10.0.0.2"
    assert changed.fields == {"ip": ("10.0.0.2", "10.0.0.9"), "cpus": (4, 8)}
    assert removed.fields["ip"] == ("10.0.0.9", None)
    assert removed.ip == "10.0.0.9"
    assert all(a.id < b.id and a.at <= b.at for a, b in itertools.pairwise(events))


def test_hand_edits_are_recorded_as_disk_in_order(aged: Store, root: Path) -> None:
    put(root, "web-1", ip="10.0.0.2")
    aged.list()
    put(root, "web-2", ip="10.0.0.3")
    aged.list()
    put(root, "web-2", data=config("web-2", ip="10.0.0.2", cpus=6))  # takes web-1's address
    aged.list()
    put(root, "web-2", data=b'{"name": "web-2", "cpus": ')  # half written
    aged.list()
    put(root, "web-2", data=config("web-2", ip="10.0.0.3", cpus=6))
    aged.list()
    config_path(root, "web-1").unlink()  # configless
    aged.list()
    shutil.rmtree(config_path(root, "web-1").parent)
    aged.list()
    events = after_start(aged)
    assert kinds(events) == [
        ("web-1", "created", "disk"),
        ("web-2", "created", "disk"),
        ("web-2", "changed", "disk"),
        ("web-2", "conflict-appeared", "disk"),
        ("web-2", "became-unreadable", "disk"),
        ("web-2", "readable-again", "disk"),
        ("web-2", "conflict-cleared", "disk"),
        ("web-1", "changed", "disk"),
        ("web-1", "removed", "disk"),
    ]
    assert events[2].fields == {"ip": ("10.0.0.3", "10.0.0.2"), "cpus": (2, 6)}
    assert events[3].detail == "ip 10.0.0.2 claimed by web-1, web-2"
    assert events[4].fields == {"state": ("ok", "unreadable")}
    assert events[5].fields == {"state": ("unreadable", "ok"), "ip": ("10.0.0.2", "10.0.0.3")}
    assert events[6].detail == "ip 10.0.0.2 now claimed only by web-1"
    assert events[7].fields["state"] == ("ok", "configless")
    assert events[7].fields["ip"] == ("10.0.0.2", None)


def test_touch_chmod_and_a_respelled_config_are_no_event(aged: Store, root: Path) -> None:
    path = put(root, "web-1", ip="10.0.0.2")
    aged.list()
    os.chmod(path, 0o600)
    os.utime(path, ns=(1, 1))
    aged.list()
    data = json.loads(path.read_bytes())
    put(root, "web-1", data=json.dumps(data, indent=4).encode())  # same values, new bytes
    aged.reconcile(full=True)
    assert kinds(after_start(aged)) == [("web-1", "created", "disk")]


def test_filters(aged: Store, root: Path) -> None:
    put(root, "web-1", ip="10.0.0.2")
    put(root, "db-1", ip="10.0.0.3")
    aged.list()
    put(root, "web-1", ip="10.0.0.4")
    put(root, "db-1", ip="10.0.0.2")
    aged.list()
    assert kinds(aged.history("web-1")) == [
        ("web-1", "created", "disk"),
        ("web-1", "changed", "disk"),
    ]
    assert kinds(aged.history("web/web-1", kinds=["changed"])) == [("web-1", "changed", "disk")]
    assert aged.history("db/web-1") == []
    # Who had 10.0.0.2: web-1, until one reconcile (in Go's order) saw db-1 take it and
    # web-1 let go.
    had = [(e.name, e.kind) for e in aged.history(ip="10.0.0.2")]
    assert had == [("web-1", "created"), ("db-1", "changed"), ("web-1", "changed")]
    assert len(aged.history(limit=2)) == 2
    assert aged.history(limit=2) == aged.history(limit=None)[-2:]
    assert aged.history(since=timedelta(hours=1)) == aged.history()
    assert aged.history(since=datetime.now(UTC) + timedelta(hours=1)) == []
    with pytest.raises(InvalidValueError, match="unknown event kind 'made'"):
        aged.history(kinds=["made"])
    with pytest.raises(InvalidValueError):
        aged.history(ip="10.0.0.010")
    with pytest.raises(InvalidValueError):
        aged.history(since=datetime(2026, 1, 1))  # naive
    with pytest.raises(InvalidNameError):
        aged.history("..")


def test_history_is_bounded_and_trimmed_in_the_same_transaction(root: Path) -> None:
    with Store.open(root, clock=later, history_limit=5) as store:
        store.list()
        for i in range(12):
            put(root, "web-1", data=config("web-1", cpus=i + 1))
            store.list()
        events = store.history(limit=None)
        assert len(events) == 5
        assert [e.fields["cpus"][1] for e in events] == [8, 9, 10, 11, 12]
        conn = sqlite3.connect(root / "index.db")
        try:
            assert conn.execute("SELECT count(*) FROM history").fetchone() == (5,)
            assert conn.execute("SELECT count(*) FROM history_touched").fetchone() == (0,)
        finally:
            conn.close()
    with pytest.raises(InvalidValueError):
        Store.open(root, history_limit=0)


# -- a new history, with its reason ---------------------------------------------------------


def test_a_deleted_or_corrupt_index_starts_a_new_history_saying_why(root: Path) -> None:
    put(root, "web-1", ip="10.0.0.2")
    with Store.open(root, clock=later) as store:
        store.list()
    (root / "index.db").write_bytes(b"this is not an index" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{root / 'index.db'}{suffix}").unlink(missing_ok=True)
    with Store.open(root, clock=later) as store:
        assert store.list() == ["web-1"]
        events = store.history()
    assert [e.kind for e in events] == ["history-started"]
    assert events[0].detail is not None
    assert "unusable" in events[0].detail
    assert list(root.glob("index.db.corrupt-*"))


# -- readers without the lock, and several processes ----------------------------------------


def test_a_reader_without_the_lock_records_nothing_and_the_next_writer_records_once(
    aged: Store, root: Path
) -> None:
    put(root, "web-1", ip="10.0.0.2")
    aged.list()
    put(root, "web-1", ip="10.0.0.7")
    holder = sqlite3.connect(root / "index.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert [vm.ip for vm in aged.vms()] == ["10.0.0.7"]  # answered from a copy
        assert aged.list() == ["web-1"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert recorded_kinds(root) == ["history-started", "created"]  # not yet recorded
    with Store.open(root, clock=later) as other:
        other.list()
    assert recorded_kinds(root) == ["history-started", "created", "changed"]
    aged.list()
    assert kinds(after_start(aged)) == [
        ("web-1", "created", "disk"),
        ("web-1", "changed", "disk"),
    ]


READER = textwrap.dedent(
    """
    import sys, time
    from fleetbox_db import Store
    store = Store.open(sys.argv[1], clock=lambda: time.time_ns() + 3600 * 10**9)
    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        store.list()
        store.vms()
    """
)


def test_processes_reconciling_at_once_record_each_change_exactly_once(
    aged: Store, root: Path
) -> None:
    for i in range(20):
        put(root, f"web-{i}", ip=f"10.0.1.{i + 2}")
    aged.list()
    children = [subprocess.Popen([sys.executable, "-c", READER, str(root), "6"]) for _ in range(4)]
    try:
        for i in range(20):
            put(root, f"web-{i}", ip=f"10.0.2.{i + 2}")
    finally:
        for child in children:
            assert child.wait(timeout=60) == 0
    aged.list()
    changed = aged.history(kinds=["changed"], limit=None)
    assert sorted(e.name or "" for e in changed) == sorted(f"web-{i}" for i in range(20))
    assert {e.who for e in changed} == {"disk"}
    assert all(e.fields == {"ip": (f"10.0.1.{int(str(e.name)[4:]) + 2}", e.ip)} for e in changed)


# -- the schema ---------------------------------------------------------------------------


def test_upgrade_from_before_history_keeps_rows_and_starts_history(root: Path) -> None:
    put(root, "web-1", ip="10.0.0.2")
    with Store.open(root, clock=later) as store:
        store.list()
    index = root / "index.db"
    schema.run_alembic(index, "downgrade", "fleetbox_0005")  # history came in fleetbox_0006
    conn = sqlite3.connect(index)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "history" not in tables
        assert "api_vms" not in tables
        before = conn.execute("SELECT cluster, name, ip FROM members").fetchall()
    finally:
        conn.close()
    assert before == [("web", "web-1", "10.0.0.2")]
    with Store.open(root, clock=later) as store:
        assert store.migrate() == schema.HEAD
        events = store.history()
        assert [e.kind for e in events] == ["history-started"]
        assert events[0].who == "fleetbox_db (migration)"
        assert events[0].detail is not None
        assert "upgraded" in events[0].detail
        put(root, "web-1", ip="10.0.0.3")
        assert kinds(store.history()[1:]) == [("web-1", "changed", "disk")]
        assert store.query("SELECT cluster, name, ip FROM vms").rows == [
            ("web", "web-1", "10.0.0.3")
        ]


# -- the history tells the whole story --------------------------------------------------------


def fold(events: list[Event]) -> dict[tuple[str | None, str | None], dict[str, Any]]:
    """The members the events describe: each created one with its fields, changed as said."""
    members: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for e in events:
        key = (e.cluster, e.name)
        if e.kind == "created":
            members[key] = {f: new for f, (_, new) in e.fields.items()}
        elif e.kind == "removed":
            del members[key]
        elif e.kind in ("changed", "became-unreadable", "readable-again"):
            members[key].update({f: new for f, (_, new) in e.fields.items()})
    return members


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replaying_the_history_gives_the_index(root: Path, seed: int) -> None:
    """Random writes, hand edits, rm -rf and broken files: folding every event from the
    history's start gives exactly what the index holds (fields, state, who is there)."""
    rng = random.Random(seed)
    names = [f"{c}-{i}" for c in ("web", "db") for i in range(4)]
    with Store.open(root, clock=later) as store:
        store.list()
        for _ in range(120):
            name = rng.choice(names)
            path = config_path(root, name)
            step = rng.randrange(7)
            try:
                if step == 0:
                    store.create(VM(name, cpus=rng.randrange(1, 9)), "10.3.0.0/29")
                elif step == 1 and path.exists():
                    vm = store.load(name)
                    vm.cpus = rng.randrange(1, 9)
                    store.save(vm)
                elif step == 2 and path.parent.exists():
                    store.delete(name)
                elif step == 3:
                    ip = f"10.3.0.{rng.randrange(2, 7)}"
                    put(root, name, data=config(name, ip=ip, cpus=rng.randrange(1, 9)))
                elif step == 4 and path.exists():
                    put(root, name, data=b'{"name": ')
                elif step == 5 and path.parent.exists():
                    shutil.rmtree(path.parent)
                elif step == 6:
                    store.allocate_ip(name, "10.3.0.0/29")
            except FleetboxError:  # typed refusals are part of the game
                pass
            if rng.random() < 0.5:
                store.list()
        replayed = fold(store.history(limit=None))
        rows = store.query("SELECT cluster, name, state, ip, cpus, mac FROM vms").rows
    indexed = {
        (c, n): {
            "state": "ok" if s == "conflict" else s,
            "ip": ip,
            "cpus": cpus,
            "mac": mac or None,
        }
        for c, n, s, ip, cpus, mac in rows
    }
    assert {
        k: {f: v.get(f) for f in ("state", "ip", "cpus", "mac")} for k, v in replayed.items()
    } == indexed


CREATOR = textwrap.dedent(
    """
    import sys
    from fleetbox_db import VM, Store
    store = Store.open(sys.argv[1])
    for i in range(15):
        store.create(VM(f"{sys.argv[2]}-{i}"), subnet="10.4.0.0/24")
    print(__import__("os").getpid())
    """
)


def test_writers_at_once_each_record_their_own_creates_once(aged: Store, root: Path) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CREATOR, str(root), prefix], stdout=subprocess.PIPE, text=True
        )
        for prefix in ("a", "b", "c")
    ]
    pids = {}
    for prefix, child in zip(("a", "b", "c"), children, strict=True):
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        pids[prefix] = int(out)
    created = aged.history(kinds=["created"], limit=None)
    assert sorted(e.name or "" for e in created) == sorted(
        f"{p}-{i}" for p in ("a", "b", "c") for i in range(15)
    )
    for e in created:
        assert e.who == f"fleetbox_db (pid {pids[str(e.name)[0]]})"
    reserved = aged.history(kinds=["ip-reserved"], limit=None)
    assert len({e.ip for e in reserved}) == len(reserved) == 45


RECONCILER = textwrap.dedent(
    """
    import sys, time
    from fleetbox_db import Store
    store = Store.open(sys.argv[1], clock=lambda: time.time_ns() + 3600 * 10**9)
    print("ready", flush=True)
    store.reconcile()
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.4])
def test_a_reconcile_killed_mid_way_records_all_or_nothing(
    aged: Store, root: Path, delay: float
) -> None:
    names = [f"web-{i}" for i in range(1500)]
    for name in names:
        put(root, name, data=config(name, cpus=1))
    aged.reconcile()
    for name in names:
        put(root, name, data=config(name, cpus=2))
    child = subprocess.Popen(
        [sys.executable, "-c", RECONCILER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    time.sleep(delay)
    child.kill()
    child.wait()
    child.stdout.close()
    landed = recorded_kinds(root).count("changed")
    print(f"killed after {delay} s: {landed} events had landed", file=sys.stderr)
    assert landed in (0, len(names))  # one transaction: all of it, or none of it
    aged.reconcile()
    changed = aged.history(kinds=["changed"], limit=None)
    assert sorted(e.name or "" for e in changed) == sorted(names)
    assert {e.fields["cpus"] for e in changed} == {(1, 2)}


# -- a members row changed by another program ------------------------------------------------


def edit_row_by_hand(root: Path, name: str) -> None:
    """What an operator's sqlite3 session does: an UPDATE of a member row, committed. Its
    trigger stages the row in history_touched, which only our transactions empty."""
    conn = sqlite3.connect(root / "index.db")
    try:
        with conn:
            conn.execute(
                "UPDATE members SET size = size + 1, digest = 'edited', ip = NULL,"
                " ip_int = NULL WHERE name = ?",
                (name,),
            )
        assert conn.execute("SELECT count(*) FROM history_touched").fetchone() == (1,)
    finally:
        conn.close()


def test_a_row_edited_by_hand_is_repaired_by_the_next_reader(root: Path) -> None:
    """The reader re-reads the config and writes its row; the staged row left by the edit
    made that upsert fail (its conflict action overrides the trigger's OR IGNORE) on every
    answer and every reconcile, until index.db was deleted."""
    put(root, "web-1", ip="10.0.0.2")
    put(root, "web-2", ip="10.0.0.3")
    with Store.open(root, clock=later) as store:
        store.list()
    edit_row_by_hand(root, "web-2")
    with Store.open(root) as store:
        assert store.who_has("10.0.0.3") == "web-2"
        store.save(VM("web-2", ip="10.0.0.3", cpus=4))
        assert store.reconcile().unreadable == []
    assert rows(root, "SELECT count(*) FROM history_touched") == [(0,)]


def test_a_row_edited_by_hand_is_repaired_in_a_copy_while_the_lock_is_held(root: Path) -> None:
    put(root, "web-1", ip="10.0.0.2")
    put(root, "web-2", ip="10.0.0.3")
    with Store.open(root, clock=later) as store:
        store.list()
    edit_row_by_hand(root, "web-2")
    holder = sqlite3.connect(root / "index.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Store.open(root) as store:
            assert store.who_has("10.0.0.3") == "web-2"  # answered from a repaired copy
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def rows(root: Path, query: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(root / "index.db")
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()
