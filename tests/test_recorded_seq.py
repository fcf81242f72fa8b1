"""The recorded scan brought up to date from member_seq (issue 12): after any mix of writes
through the API, hand edits on disk, other connections and other processes, the refreshed
scan equals one loaded from scratch, and it is refreshed without reading every row.
Real SQLite files and real Stores only.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import config, config_path, go_write, later, put
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from internals import index_connection, reconciler

import fleetbox_db
from fleetbox_db import VM, Store
from fleetbox_db.disk.fallback import DiskAnswers
from fleetbox_db.disk.scan import scan
from fleetbox_db.index.recorded import RecordedScan
from fleetbox_db.rules.ipam import EVERY_ADDRESS

CREATED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NAMES = ("web-1", "web-2", "web-10", "db-1", "db-2", "zeta-1", "é-1")


def strict(scan: RecordedScan) -> tuple[Any, ...]:
    """A scan's content, with each error compared by its type too: an _AnyError equals any
    str, which == alone would not catch."""
    entries = [(e[0], e[1], e[2], type(e[3]).__name__, e[3] and str(e[3])) for e in scan.entries]
    return entries, scan.racy, scan.reservations, scan.seq


def check_refresh(store: Store) -> None:
    """The store's recorded scan, brought up to date, equals one loaded from scratch."""
    rec, conn = reconciler(store), index_connection(store)
    refreshed = rec._load(conn)
    assert strict(refreshed) == strict(RecordedScan.load(conn, rec.granularity_ns))
    if refreshed._by_key is not None:  # carried over from the scan before: the same rows
        assert sorted(refreshed._by_key) == sorted((e[0], e[1]) for e in refreshed.entries)
        assert all(refreshed._by_key[(e[0], e[1])] is e for e in refreshed.entries)


def check_digest(root: Path, settler: Store, step: Step) -> None:
    """Once *settler* (whose clock is an hour on) has settled every row and recorded the
    digest of its scan (index/settled.py), and disk was then maybe touched behind its back,
    a new Store trusts the digest exactly when its scan is exact and unchanged, and then
    gets what reading every row gives, no row racy."""
    settler.list()  # re-reads rows still racy
    settler.list()  # finds every row equal: records the digest
    settler.vms()  # saves the VM records (index/vmblob.py)
    _, index, cpus = step
    touched = cpus % 2 == 0 and touch_in_place(config_path(root, NAMES[index]))
    with Store.open(root) as fresh:
        rec, conn = reconciler(fresh), index_connection(fresh)
        found = scan(rec.clusters_dir)
        fast = RecordedScan.settled(conn, found.members, rec.granularity_ns)
        full = RecordedScan.load(conn, rec.granularity_ns)
        # Its first vms(), from the saved records or the rows, is what disk holds.
        assert fresh.vms() == DiskAnswers(rec.clusters_dir, found, later).vms()
    if fast is not None:
        assert strict(fast) == strict(full)
        assert not full.racy
    exact = not found.unreadable_clusters and all(m.error is None for m in found.members)
    assert (fast is not None) == (exact and not touched)


def touch_in_place(path: Path) -> bool:
    """Rewrite *path* with its own bytes and set its mtime back: only ctime moves. True
    when its signature changed (a rewrite within the clock's tick may not)."""
    if not path.is_file():
        return False
    before = path.stat()
    go_write(path, path.read_bytes())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    return (after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
        before.st_ctime_ns,
    )


def vm(name: str, cpus: int = 2) -> VM:
    return VM(name, cpus=cpus, created_at=CREATED)


# -- the property -----------------------------------------------------------------------

Step = tuple[str, int, int]
STEPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "create",
                "save",
                "delete",
                "hand-edit",
                "hand-remove",
                "configless",
                "stray",
                "unreadable",
                "allocate",
                "reconcile",
                "other-store",
                "list",
            ]
        ),
        st.integers(0, len(NAMES) - 1),
        st.integers(1, 64),
    ),
    max_size=25,
)


def run_step(store: Store, other: Store, root: Path, step: Step) -> None:
    kind, index, cpus = step
    name = NAMES[index]
    path = config_path(root, name)
    if kind == "create" and not path.parent.exists():
        store.create(vm(name, cpus))
    elif kind == "save" and path.is_file():
        store.save(vm(name, cpus))
    elif kind == "delete" and path.parent.exists():
        store.delete(name)
    elif kind == "hand-edit":
        age = None if cpus % 2 else 3600 * 10**9  # racy or settled
        put(root, name, data=config(name, cpus=cpus), age_ns=age)
    elif kind == "hand-remove":
        shutil.rmtree(path.parent, ignore_errors=True)
    elif kind == "configless":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
    elif kind == "stray":
        put(root, name, cluster="elsewhere")
    elif kind == "unreadable":
        path.parent.mkdir(parents=True, exist_ok=True)
        go_write(path, b'{"name": "' + name.encode() + b'", "cpus": "many"}')
    elif kind == "allocate":
        store.allocate_ip(name, "10.9.0.0/24")
    elif kind == "reconcile":
        store.reconcile()
    elif kind == "other-store":
        other.list()  # another connection applies what it finds on disk, and commits
    else:
        store.list()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=STEPS)
def test_refreshed_scan_equals_a_full_load_after_any_steps(
    head_index: Path, steps: list[Step]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fleetbox"
        root.mkdir()
        shutil.copyfile(head_index, root / "index.db")
        with Store.open(root) as store, Store.open(root, clock=later) as other:
            store.list()
            for step in steps:
                try:
                    run_step(store, other, root, step)
                except Exception as exc:  # a refused operation (exists, conflict) is fine
                    if not type(exc).__module__.startswith("fleetbox_db"):
                        raise
                check_refresh(store)
                check_refresh(other)
                check_digest(root, other, step)


# -- it is incremental ------------------------------------------------------------------


@contextmanager
def two_stores(seeded_root: Path, members: int) -> Iterator[tuple[Store, Store]]:
    for i in range(members):
        put(seeded_root, f"web-{i}")
    with Store.open(seeded_root, clock=later) as store, Store.open(seeded_root) as other:
        assert len(store.list()) == members
        other.list()  # each has loaded its scan once: from here on, only refreshes
        yield store, other


def test_another_connections_writes_are_merged_without_reading_every_row(
    seeded_root: Path, full_loads: list[int]
) -> None:
    with two_stores(seeded_root, 20) as (store, other):
        full_loads.clear()
        other.save(vm("web-3", cpus=9))
        other.delete("web-7")
        other.create(vm("web-15a-1"))
        other.allocate_ip("web-30", "10.9.0.0/24")
        store.list()
        assert full_loads == []  # merged, not reloaded
        check_refresh(store)
        assert reconciler(store)._recorded is not None
        assert [r.name for r in reconciler(store)._recorded.reservations] == ["web-30"]


def test_own_writes_are_merged_without_reading_every_row(
    seeded_root: Path, full_loads: list[int]
) -> None:
    with two_stores(seeded_root, 20) as (store, _):
        full_loads.clear()
        store.save(vm("web-3", cpus=9))
        store.delete("web-7")
        store.list()
        assert full_loads == []
        check_refresh(store)


def test_a_second_process_committing_between_loads_is_seen(
    seeded_root: Path, full_loads: list[int]
) -> None:
    with two_stores(seeded_root, 20) as (store, _):
        full_loads.clear()
        script = textwrap.dedent(
            f"""
            from datetime import UTC, datetime
            from fleetbox_db import VM, Store
            with Store.open({str(seeded_root)!r}) as store:
                store.save(VM("web-4", cpus=7, created_at=datetime(2024, 5, 1, tzinfo=UTC)))
                store.delete("web-5")
                store.create(VM("web-99", created_at=datetime(2024, 5, 1, tzinfo=UTC)))
            """
        )
        subprocess.run([sys.executable, "-c", script], check=True)
        names = store.list()
        assert "web-5" not in names
        assert "web-99" in names
        assert full_loads == []
        check_refresh(store)


def set_kept_removals(store: Store, kept: int) -> None:
    conn = index_connection(store)
    conn.execute("UPDATE member_seq SET kept_removals = ?", (kept,))


@pytest.mark.parametrize(
    ("change", "loads"),
    [
        pytest.param(lambda s: None, 0, id="nothing"),
        pytest.param(lambda s: s.delete("web-1"), 0, id="one-removal"),
        pytest.param(lambda s: [s.delete(f"web-{i}") for i in range(3)], 1, id="trimmed"),
    ],
)
def test_removals_trimmed_past_the_scan_mean_a_full_load(
    seeded_root: Path, full_loads: list[int], change: Callable[[Store], object], loads: int
) -> None:
    with two_stores(seeded_root, 10) as (store, other):
        set_kept_removals(other, 2)
        store.list()
        full_loads.clear()
        change(other)
        store.list()
        assert len(full_loads) == loads
        check_refresh(store)


def test_a_raw_name_means_a_full_load(seeded_root: Path, full_loads: list[int]) -> None:
    with two_stores(seeded_root, 5) as (store, other):
        raw = seeded_root / "clusters" / "web" / "web-\udce9"
        raw.mkdir()
        go_write(raw / "config.json", config("web-1"))
        other.list()
        full_loads.clear()
        store.list()
        assert full_loads == [1]
        check_refresh(store)
        other.save(vm("web-2", cpus=5))
        full_loads.clear()
        store.list()
        assert full_loads == [1]  # the scan holds a raw name: never merged
        check_refresh(store)


def test_a_hand_edited_key_counts_as_a_removal(seeded_root: Path) -> None:
    with two_stores(seeded_root, 5) as (store, _):
        store.list()
        conn = sqlite3.connect(seeded_root / "index.db")
        with conn:
            conn.execute("UPDATE members SET name = 'web-9' WHERE name = 'web-1'")
        conn.close()
        check_refresh(store)


def test_the_update_trigger_names_every_column_but_seq(store: Store) -> None:
    """A column added to members must be added to member_seq_update, or its changes go
    unseen by every reader (fleetbox_0007's docstring)."""
    store.list()
    conn = index_connection(store)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(members)")} - {"seq"}
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'member_seq_update'").fetchone()[
        0
    ]
    named = sql.split("UPDATE OF", 1)[1].split(" ON members", 1)[0]
    assert {c.strip() for c in named.split(",")} == columns


@pytest.mark.parametrize("kind", ["configless", "unreadable", "stray", "hand-remove"])
def test_rows_without_a_signature_are_merged_as_a_full_load_shows_them(
    seeded_root: Path, full_loads: list[int], kind: str
) -> None:
    with two_stores(seeded_root, 5) as (store, other):
        run_step(store, other, seeded_root, (kind, 0, 1))
        run_step(store, other, seeded_root, (kind, 3, 1))
        other.list()
        full_loads.clear()
        check_refresh(store)
        assert full_loads == [1]  # check_refresh's own load only


def test_answers_after_own_writes_are_not_served_from_the_scan_before_them(
    seeded_root: Path,
) -> None:
    """After this connection writes, the reconciler's version token is unknown (None) until
    its scan is refreshed: a cache keyed by the token before the write would answer stale."""
    with two_stores(seeded_root, 3) as (store, _):
        assert [v.cpus for v in store.vms()] == [2, 2, 2]
        assert [v.cpus for v in store.vms()] == [2, 2, 2]
        put(seeded_root, "web-1", data=config("web-1", cpus=16))
        assert [v.cpus for v in store.vms()] == [2, 16, 2]
        store.save(vm("web-2", cpus=9))
        assert [v.cpus for v in store.vms()] == [2, 16, 9]
        assert reconciler(store).version is not None


def cpus(store: Store) -> dict[str, int]:
    return {v.name: v.cpus for v in store.vms()}


def outrun_next_plan(store: Store, other: Store) -> list[object]:
    """Make *other* commit once between *store*'s next lock-free plan and its write lock,
    so that the write plans again, loading the recorded scan inside its transaction."""
    rec = reconciler(store)
    real_plan = rec.plan
    outrun: list[object] = []

    def plan(
        conn: sqlite3.Connection,
        scan: Any,
        full: bool = False,
        leases: Any = EVERY_ADDRESS,
        contents: bool = True,
    ) -> Any:
        found = real_plan(conn, scan, full, leases, contents)
        if not conn.in_transaction and not outrun:
            outrun.append(other.save(vm("web-9", cpus=5)))
        return found

    rec.plan = plan  # type: ignore[method-assign]
    return outrun


def test_a_scan_loaded_inside_a_committed_write_is_refreshed_not_reloaded(
    seeded_root: Path, full_loads: list[int]
) -> None:
    """A reader that records what it found loads the scan under the write lock when another
    process committed since its plan; once that transaction commits, the scan is the file's
    and the next answer merges later changes instead of reading every row again."""
    with two_stores(seeded_root, 20) as (store, other):
        outrun = outrun_next_plan(store, other)
        put(seeded_root, "web-1", data=config("web-1", cpus=16))
        full_loads.clear()
        assert cpus(store)["web-1"] == 16
        assert outrun
        other.save(vm("web-3", cpus=9))
        assert (cpus(store)["web-1"], cpus(store)["web-3"]) == (16, 9)
        assert full_loads == []
        check_refresh(store)


def test_a_scan_loaded_inside_a_rolled_back_write_is_read_again(
    seeded_root: Path, full_loads: list[int]
) -> None:
    with two_stores(seeded_root, 20) as (store, other):
        outrun = outrun_next_plan(store, other)
        put(seeded_root, "web-1", data=config("web-1", cpus=16))
        with pytest.raises(fleetbox_db.FleetboxError):
            store.create(vm("web-2"))  # taken: the write rolls back
        assert outrun
        full_loads.clear()
        assert cpus(store)["web-1"] == 16
        assert full_loads == [1]
        check_refresh(store)


def test_reservations_are_read_again_only_when_a_trigger_moved_their_count(
    seeded_root: Path,
) -> None:
    """Members changed by another connection: the reservations the scan holds are carried
    over (not read again); reservations changed, even by hand in a sqlite3 shell (insert,
    update, delete), are read again."""
    with two_stores(seeded_root, 5) as (store, other):
        other.allocate_ip("web-30", "10.9.0.0/24")
        store.list()
        before = reconciler(store)._load(index_connection(store)).reservations
        other.save(vm("web-3", cpus=9))  # a member change only
        after = reconciler(store)._load(index_connection(store))
        assert after.reservations is before
        hand = sqlite3.connect(seeded_root / "index.db", isolation_level=None)
        try:
            for edit in (
                "UPDATE reservations SET name = 'web-31' WHERE name = 'web-30'",
                "INSERT INTO reservations (name, subnet, ip_int, owner_pid, owner_boot,"
                " owner_start, created_ns) VALUES ('web-32', '10.9.0.0/24', 9, 0, '', 0, 0)",
                "DELETE FROM reservations WHERE name = 'web-32'",
            ):
                seen = reconciler(store)._load(index_connection(store)).reservations
                hand.execute(edit)
                check_refresh(store)
                assert reconciler(store)._load(index_connection(store)).reservations is not seen
        finally:
            hand.close()
        assert [r.name for r in reconciler(store)._load(index_connection(store)).reservations] == [
            "web-31"
        ]


def test_reservations_inserted_or_deleted_are_caught_up_from_their_ids(
    seeded_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An allocator and a create loop beside a reader: when inserts past the last id known
    and deletes account for every change the count saw, only the ids and the new rows are
    read (beside hundreds of leases, reading them all was a fifth of a contended who_has).
    Any other change (an id reused after a delete, an update) reads them all, and every
    refresh equals a full load."""
    from fleetbox_db.index import reservations

    reads: list[int] = []
    real = reservations.every

    def counted(conn: sqlite3.Connection, after: int = 0) -> Any:
        reads.append(after)
        return real(conn, after)

    monkeypatch.setattr(reservations, "every", counted)
    with two_stores(seeded_root, 5) as (store, other):
        other.allocate_ip("web-30", "10.9.0.0/24")
        store.list()
        known = reconciler(store)._load(index_connection(store)).reservations
        last = known[-1].id
        other.allocate_ip("web-31", "10.9.0.0/24")
        other.allocate_ip("web-32", "10.9.0.0/24")
        reads.clear()
        check_refresh(store)  # a refresh, then a full load to compare with
        assert reads == [last, 0]  # the refresh read the new rows alone
        assert [r.name for r in reconciler(store)._recorded.reservations] == [
            "web-30", "web-31", "web-32",
        ]  # fmt: skip
        hand = sqlite3.connect(seeded_root / "index.db", isolation_level=None)
        insert = (
            "INSERT INTO reservations (name, subnet, ip_int, owner_pid, owner_boot,"
            " owner_start, created_ns) VALUES ('{}', '10.9.0.0/24', {}, 0, '', 0, 0)"
        )
        top = "(SELECT max(id) FROM reservations)"
        try:
            for edits, whole in (
                # A delete and an insert past the last id: caught up from the ids.
                ([insert.format("web-33", 9), "DELETE FROM reservations WHERE name = 'web-30'"],
                 False),
                # The newest row deleted and its id handed out again: the ids show neither
                # change, so all are read.
                ([f"DELETE FROM reservations WHERE id = {top}", insert.format("web-34", 10)],
                 True),
                (["UPDATE reservations SET name = 'web-35' WHERE name = 'web-34'"], True),
                (["DELETE FROM reservations WHERE name = 'web-31'"], False),
            ):  # fmt: skip
                last = reconciler(store)._recorded.reservations[-1].id
                for edit in edits:
                    hand.execute(edit)
                reads.clear()
                check_refresh(store)
                # Then check_refresh's own full load.
                assert reads == ([last, 0, 0] if whole else [last, 0])
        finally:
            hand.close()
        assert [r.name for r in reconciler(store)._recorded.reservations] == [
            "web-32", "web-35",
        ]  # fmt: skip


_RESERVATION_EDITS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.integers(1, 250)),
        st.tuples(st.just("delete"), st.integers(0, 20)),
        st.tuples(st.just("delete-newest"), st.just(0)),
        st.tuples(st.just("update"), st.integers(0, 20)),
        st.tuples(st.just("insert-at"), st.integers(1, 40)),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.lists(st.integers(1, 250), unique=True, max_size=12), edits=_RESERVATION_EDITS)
def test_caught_up_reservations_are_every_row_or_none(
    tmp_path_factory: pytest.TempPathFactory, first: list[int], edits: list[tuple[str, int]]
) -> None:
    """Whatever mix of inserts (also at an id given by hand), deletes and updates moved the
    count, caught_up() gives exactly what a read of every row gives, or None."""
    from fleetbox_db.index import reservations

    conn = sqlite3.connect(tmp_path_factory.mktemp("res") / "t.db", isolation_level=None)
    conn.executescript(
        "CREATE TABLE reservations (id INTEGER PRIMARY KEY, name TEXT, subnet TEXT,"
        " ip_int INTEGER UNIQUE, owner_pid INTEGER, owner_boot TEXT, owner_start INTEGER)"
    )
    add = "INSERT OR IGNORE INTO reservations (name, subnet, ip_int, owner_pid, owner_boot,"
    add += " owner_start) VALUES (?, '10.0.0.0/24', ?, 1, '', 0)"
    for ip in first:
        conn.execute(add, (f"m-{ip}", ip))
    known = reservations.every(conn)
    changes = 0
    for kind, n in edits:
        if kind == "insert":
            done = conn.execute(add, (f"n-{n}", n)).rowcount
        elif kind == "insert-at":
            done = conn.execute(
                "INSERT OR IGNORE INTO reservations VALUES (?, 'x', '10.0.0.0/24', ?, 1, '', 0)",
                (n, 1000 + n),
            ).rowcount
        elif kind == "delete":
            done = conn.execute(
                "DELETE FROM reservations WHERE id = (SELECT id FROM reservations"
                " ORDER BY id LIMIT 1 OFFSET ?)",
                (n,),
            ).rowcount
        elif kind == "delete-newest":
            done = conn.execute(
                "DELETE FROM reservations WHERE id = (SELECT max(id) FROM reservations)"
            ).rowcount
        else:
            done = conn.execute(
                "UPDATE reservations SET name = name || '!' WHERE id = (SELECT id FROM"
                " reservations ORDER BY id LIMIT 1 OFFSET ?)",
                (n,),
            ).rowcount
        changes += done  # what the triggers count: one per row inserted, updated, deleted
    got = reservations.caught_up(conn, known, changes)
    if got is not None:
        assert got == reservations.every(conn)
    conn.close()


@pytest.mark.parametrize(
    "ask",
    [lambda s: s.list(), lambda s: s.vms(), lambda s: s.members("web")],
    ids=["list", "vms", "members"],
)
def test_answers_without_addresses_leave_the_reservations_for_those_with(
    seeded_root: Path, monkeypatch: pytest.MonkeyPatch, ask: Callable[[Store], object]
) -> None:
    """list, vms and members refresh the member rows after another process's commits but
    not the reservations (beside an allocator and a create loop they changed before nearly
    every answer); the next answer about addresses reads those of its addresses first, and
    every refresh that needs them all equals a full load."""
    from fleetbox_db.index import reservations
    from fleetbox_db.rules.ipam import Addresses

    reads: list[tuple[int, Addresses]] = []
    real = reservations.every

    def counted(conn: sqlite3.Connection, after: int = 0, within: Any = EVERY_ADDRESS) -> Any:
        reads.append((after, within))
        return real(conn, after, within)

    with two_stores(seeded_root, 5) as (store, other):
        other.allocate_ip("web-30", "10.9.0.0/24")
        monkeypatch.setattr(reservations, "every", counted)
        ask(store)
        assert reads == []
        assert reconciler(store)._recorded is not None
        assert not reconciler(store)._recorded.reservations_current
        assert store.who_has("10.9.0.2") == "web-30"
        one = Addresses((10 << 24) + (9 << 16) + 2, (10 << 24) + (9 << 16) + 2)
        assert reads == [(0, one)]  # its address's rows, read before the answer
        assert reconciler(store)._recorded.reservations_of(one) is not None
        check_refresh(store)
        other.allocate_ip("web-31", "10.9.0.0/24")
        ask(store)
        check_refresh(store)  # the reservations brought current, equal to a full load


def test_an_answer_about_a_few_addresses_reads_only_their_reservations(
    seeded_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside an allocator and a create loop (whose reservation is released in the same
    transaction, so its id is handed out again and the count cannot be caught up from the
    ids), who_has and free_ips read the reservations of their addresses alone, by the
    ip_int index, not every row (beside 540 of them, 0.67 ms, a twentieth of a contended
    who_has); what they answer is what a new Store answers."""
    from fleetbox_db.index import reservations

    full: list[int] = []
    real = reservations.every

    def counted(conn: sqlite3.Connection, after: int = 0, within: Any = EVERY_ADDRESS) -> Any:
        if within == EVERY_ADDRESS and conn is index_connection(store):
            full.append(after)
        return real(conn, after, within)

    with two_stores(seeded_root, 3) as (store, other):
        for i in range(30):
            other.allocate_ip(f"alloc-{i}", "10.9.0.0/24")
        assert store.who_has("10.9.0.2") == "alloc-0"
        monkeypatch.setattr(reservations, "every", counted)
        for i in range(3):
            made = other.create(vm(f"churn-{i}-1"), subnet="10.9.0.0/24")
            other.delete(made.name)
            other.allocate_ip(f"alloc-{30 + i}", "10.9.0.0/24")
            answers = (store.who_has("10.9.0.33"), store.free_ips("10.9.0.0/24", limit=3))
            with Store.open(seeded_root) as fresh:
                assert answers == (
                    fresh.who_has("10.9.0.33"),
                    fresh.free_ips("10.9.0.0/24", limit=3),
                )
        assert full == []
        assert answers[0] == "alloc-31"
        check_refresh(store)  # and all of them, when asked, equal a full load


_WITHIN = st.sampled_from([(2, 2), (5, 5), (0, 15), (4, 11), (9, 200), (0, 2**32 - 1)])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.one_of(
            st.tuples(st.just("allocate"), st.integers(0, 12)),
            st.tuples(st.just("create"), st.integers(0, 12)),
            st.tuples(st.just("hand-insert-at"), st.integers(1, 40)),
            st.tuples(st.just("hand-delete"), st.integers(0, 8)),
            st.tuples(st.just("hand-update"), st.integers(0, 8)),
            st.tuples(st.just("lease"), st.integers(2, 14)),
        ),
        max_size=8,
    ),
    asked=st.lists(_WITHIN, min_size=1, max_size=4),
)
def test_lease_drift_of_a_few_addresses_equals_one_from_every_row(
    edits: list[tuple[str, int]], asked: list[tuple[int, int]]
) -> None:
    """Whatever moved the reservations (allocations, creates releasing theirs, rows
    inserted at an id, deleted or updated by hand, leases without rows), the lease drift
    of any addresses an answer asks about, from the recorded scan, equals the drift from
    every row read now; and the scan brought current for all of them equals a full load."""
    from internals import drop_lease_locks

    from fleetbox_db.disk import leases
    from fleetbox_db.index import reservations
    from fleetbox_db.index.plan import lease_drift
    from fleetbox_db.rules.ipam import Addresses

    top = Path(tempfile.mkdtemp())
    try:
        root = top / "fleetbox"
        put(root, "web-1", "10.0.0.3")
        net = 10 << 24
        with Store.open(root, clock=later) as store, Store.open(root, clock=later) as other:
            other.allocate_ip("first-1", "10.0.0.0/24")
            store.free_ips("10.0.0.0/28")  # the recorded scan holds every reservation
            rec, conn = reconciler(store), index_connection(store)
            found = scan(rec.clusters_dir)

            def ask(step: int) -> None:
                first, last = asked[step % len(asked)]
                within = Addresses(net + first, net + last) if last < 2**32 - 1 else EVERY_ADDRESS
                rec.forget_scan()
                rec._load(conn, within)
                live = leases.leases(root / "leases", within)
                expected = lease_drift(reservations.every(conn), live, within)
                assert rec._drift(rec._recorded, found, within) == expected

            hand = sqlite3.connect(root / "index.db", isolation_level=None)
            try:
                ask(0)
                for step, (kind, n) in enumerate(edits, 1):
                    nth = "(SELECT id FROM reservations ORDER BY id LIMIT 1 OFFSET ?)"
                    if kind == "allocate":
                        other.allocate_ip(f"a-{n}", "10.0.0.0/24")
                    elif kind == "create":
                        other.create(vm(f"c{n}x{step}-1"), subnet="10.0.0.0/24")
                    elif kind == "hand-insert-at":
                        hand.execute(
                            "INSERT OR IGNORE INTO reservations VALUES"
                            " (?, ?, '10.0.0.0/24', ?, 0, '', 0, 0)",
                            (n, f"h-{n}", net + 100 + n),
                        )
                    elif kind == "hand-delete":
                        hand.execute(f"DELETE FROM reservations WHERE id = {nth}", (n,))
                    elif kind == "hand-update":
                        hand.execute(
                            f"UPDATE reservations SET ip_int = ip_int + 1000 WHERE id = {nth}",
                            (n,),
                        )
                    else:
                        leases.take(root / "leases", net + n, f"l-{n}", "10.0.0.0/24")
                    ask(step)
            finally:
                hand.close()
            check_refresh(store)
    finally:
        drop_lease_locks()
        shutil.rmtree(top)
