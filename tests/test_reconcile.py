"""Reconcile on real trees edited behind the library's back; real SQLite, real processes.

The index is only a memory of what disk said, so every test here edits disk the way the Go
tool or a user does (in-place writes, rm -rf, cp -r, torn writes) and checks that the next
answer reflects it - and that nothing is read, locked or written when nothing changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import internals
import pytest
from helpers import CREATED, HOUR, SECOND, config, config_path, go_write, later, put
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from index_lock import write_locked
from internals import index_connection, index_file, swap_reconciler

import fleetbox_db
from fleetbox_db import VM, Conflict, Store, cluster_name
from fleetbox_db.disk.observe import Observation
from fleetbox_db.disk.scan import MemberDir, scan
from fleetbox_db.index.reconcile import Reconciler
from fleetbox_db.rules.config import encode_config

REPO = Path(fleetbox_db.__file__).resolve().parent.parent
MEMBER_COLUMNS = (
    "cluster, name, state, ino, size, mtime_ns, ctime_ns, digest, config_name, mac, mac_key,"
    " cpus, memory_mb, disk_mb, image, created_at, ip, ip_int, extra"
)
CONFIG_COLUMNS_FROM = MEMBER_COLUMNS.split(", ").index("config_name")


# -- the index read with a separate connection, and the reconciler's reads counted ---------


def index_rows(root: Path) -> dict[str, Any]:
    """Every member row (without id and verified_ns), fixtures by member, reservations."""
    uri = f"file:{root / 'index.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        members = conn.execute(
            f"SELECT {MEMBER_COLUMNS} FROM members ORDER BY cluster, name"
        ).fetchall()
        fixtures = conn.execute(
            "SELECT m.cluster, m.name, f.position, f.host_path, f.guest_path, f.label, f.extra"
            " FROM fixtures f JOIN members m ON m.id = f.member_id ORDER BY 1, 2, 3"
        ).fetchall()
        reservations = conn.execute(
            "SELECT name, subnet, ip_int FROM reservations ORDER BY name, subnet"
        ).fetchall()
    return {"members": members, "fixtures": fixtures, "reservations": reservations}


def states(root: Path) -> dict[str, str]:
    return {f"{r[0]}/{r[1]}": r[2] for r in index_rows(root)["members"]}


def row_of(root: Path, name: str, cluster: str | None = None) -> dict[str, Any]:
    uri = f"file:{root / 'index.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT * FROM members WHERE cluster = ? AND name = ?",
            (cluster_name(name) if cluster is None else cluster, name),
        ).fetchone()
    assert row is not None, name
    return dict(row)


def file_state(root: Path) -> dict[str, tuple[int, int] | None]:
    """(mtime_ns, size) of index.db and its WAL: unchanged means nothing was written."""
    found: dict[str, tuple[int, int] | None] = {}
    for suffix in ("", "-wal"):
        try:
            st = os.stat(f"{root / 'index.db'}{suffix}")
        except FileNotFoundError:
            found[suffix] = None
        else:
            found[suffix] = (st.st_mtime_ns, st.st_size)
    return found


class CountingReconciler(Reconciler):
    """The real Reconciler, counting config reads (not a mock: every read still happens)."""

    reads: list[str]

    def observe(self, member: MemberDir, wait: bool = True, again: bool = False) -> Observation:
        self.reads.append(member.name)
        return super().observe(member, wait, again)


def counting(store: Store) -> CountingReconciler:
    counter = swap_reconciler(store, CountingReconciler)
    counter.reads = []
    return counter


def fell_back(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- behind the library's back ---------------------------------------------------------------


def test_in_place_rewrite_like_go_is_seen(seeded_root: Path) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2")
    with Store.open(seeded_root, clock=later) as store:
        assert [vm.ip for vm in store.vms()] == ["10.0.0.2"]
        ino = os.stat(path).st_ino
        go_write(path, config("web-1", "10.0.0.12", cpus=16))
        assert os.stat(path).st_ino == ino  # in place: no rename
        assert [(vm.ip, vm.cpus) for vm in store.vms()] == [("10.0.0.12", 16)]
        assert store.free_ips("10.0.0.0/24", limit=1) == ["10.0.0.2"]


def test_same_size_rewrite_with_mtime_restored_is_seen_through_ctime(seeded_root: Path) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2")
    # granularity 0 switches the racy guard off: only the signature can reveal the change.
    with Store.open(seeded_root, granularity_ns=0) as store:
        assert [vm.ip for vm in store.vms()] == ["10.0.0.2"]
        before = os.stat(path)
        go_write(path, config("web-1", "10.0.0.3"))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(path)
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
            before.st_ino,
            before.st_size,
            before.st_mtime_ns,
        )
        assert [vm.ip for vm in store.vms()] == ["10.0.0.3"]
        assert store.reconcile().updated == []  # already taken in by vms()


def test_rm_rf_of_a_member_frees_its_address(seeded_root: Path) -> None:
    put(seeded_root, "web-1", "10.0.0.2")
    put(seeded_root, "web-2", "10.0.0.3")
    with Store.open(seeded_root, clock=later) as store:
        assert store.list() == ["web-1", "web-2"]
        assert store.free_ips("10.0.0.0/24", limit=1) == ["10.0.0.4"]
        shutil.rmtree(seeded_root / "clusters/web/web-1")
        assert store.members("web") == ["web-2"]
        assert store.free_ips("10.0.0.0/24", limit=1) == ["10.0.0.2"]
        assert store.who_has("10.0.0.2") is None
        assert [vm.name for vm in store.vms()] == ["web-2"]
        assert store.list() == ["web-2"]
    assert list(states(seeded_root)) == ["web/web-2"]


def test_rm_rf_of_a_whole_cluster(seeded_root: Path) -> None:
    put(seeded_root, "web-1", "10.0.0.2")
    put(seeded_root, "web-2", "10.0.0.3")
    put(seeded_root, "db-1", "10.0.0.4")
    with Store.open(seeded_root, clock=later) as store:
        assert store.list() == ["db-1", "web-1", "web-2"]
        shutil.rmtree(seeded_root / "clusters/web")
        report = store.reconcile()
        assert sorted(report.removed) == ["web-1", "web-2"]
        assert store.list() == ["db-1"]
        assert store.members("web") == []
        assert store.free_ips("10.0.0.0/24", limit=2) == ["10.0.0.2", "10.0.0.3"]


def test_copied_member_dir_is_a_recorded_conflict(seeded_root: Path) -> None:
    mac = "02:00:00:00:00:01"
    put(seeded_root, "web-1", "10.0.0.2", mac)
    with Store.open(seeded_root, clock=later) as store:
        store.list()
        shutil.copytree(seeded_root / "clusters/web/web-1", seeded_root / "clusters/web/web-2")
        assert store.list() == ["web-1", "web-2"]
        report = store.reconcile()
        assert report.conflicts == [
            Conflict("ip", "10.0.0.2", ("web-1", "web-2")),
            Conflict("mac", mac, ("web-1", "web-2")),
        ]
        # Neither copy's address is free, and check() says the same from disk alone.
        assert store.free_ips("10.0.0.0/29") == [f"10.0.0.{i}" for i in range(3, 7)]
        found = {(p.kind, p.value, p.members) for p in store.check()}
        assert found == {
            ("conflict", "10.0.0.2", ("web-1", "web-2")),
            ("conflict", mac, ("web-1", "web-2")),
        }
        shutil.rmtree(seeded_root / "clusters/web/web-2")
        assert store.reconcile().conflicts == []
        assert store.check() == []


def test_torn_write_keeps_the_last_good_row_holding_its_address(seeded_root: Path) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2")
    put(seeded_root, "web-2", "10.0.0.3")
    with Store.open(seeded_root, clock=later) as store:
        assert [vm.name for vm in store.vms()] == ["web-1", "web-2"]
        good = path.read_bytes()
        go_write(path, good[: len(good) // 2])  # Go died halfway through its write
        assert [vm.name for vm in store.vms()] == ["web-2"]
        assert states(seeded_root)["web/web-1"] == "unreadable"
        assert row_of(seeded_root, "web-1")["ip"] == "10.0.0.2"
        assert store.free_ips("10.0.0.0/29") == ["10.0.0.4", "10.0.0.5", "10.0.0.6"]
        assert store.who_has("10.0.0.2") == "web-1"
        assert store.list() == ["web-1", "web-2"]  # still a member
        assert store.reconcile().unreadable == ["web-1"]
        go_write(path, good)
        assert [vm.name for vm in store.vms()] == ["web-1", "web-2"]
        assert states(seeded_root)["web/web-1"] == "ok"
        assert store.reconcile().unreadable == []


def test_torn_write_of_a_config_never_read_holds_nothing(seeded_root: Path) -> None:
    path = put(seeded_root, "web-1", data=b'{"name": "web-1", "ip": "10.0')
    with Store.open(seeded_root, clock=later) as store:
        assert store.list() == ["web-1"]
        assert store.vms() == []
        assert states(seeded_root) == {"web/web-1": "unreadable"}
        assert store.free_ips("10.0.0.0/30") == ["10.0.0.2"]
        go_write(path, config("web-1", "10.0.0.2"))
        assert store.free_ips("10.0.0.0/30") == []


def test_stray_dir_is_listed_marked_and_reported(seeded_root: Path) -> None:
    put(seeded_root, "bar", "10.0.0.9", cluster="foo")
    put(seeded_root, "web-1", "10.0.0.2")
    with Store.open(seeded_root, clock=later) as store:
        assert store.list() == ["bar", "web-1"]  # cluster foo sorts before web
        assert store.members("foo") == ["bar"]
        assert [vm.name for vm in store.vms()] == ["web-1"]  # bar is not where Go looks
        assert states(seeded_root) == {"foo/bar": "stray", "web/web-1": "ok"}
        assert store.who_has("10.0.0.9") == "bar"  # its address is still not free
        problems = store.check()
        assert [(p.kind, p.members) for p in problems] == [("stray", ("bar",))]
        assert "clusters/bar/" in problems[0].message


def test_configless_dirs_are_members_without_records(seeded_root: Path) -> None:
    (seeded_root / "clusters/web/web-1").mkdir(parents=True)
    (seeded_root / "clusters/web/web-2").mkdir(parents=True)
    with Store.open(seeded_root, clock=later) as store:
        assert store.list() == ["web-1", "web-2"]
        assert store.members("web") == ["web-1", "web-2"]
        assert store.vms() == []
        assert store.check() == []
        assert states(seeded_root) == {"web/web-1": "configless", "web/web-2": "configless"}
        put(seeded_root, "web-2", "10.0.0.2")
        assert [vm.name for vm in store.vms()] == ["web-2"]
        assert states(seeded_root)["web/web-2"] == "ok"
        # A config removed behind our back: the member stays, its address is freed.
        os.unlink(config_path(seeded_root, "web-2"))
        assert store.vms() == []
        assert states(seeded_root)["web/web-2"] == "configless"
        assert row_of(seeded_root, "web-2")["ip"] is None
        assert store.free_ips("10.0.0.0/30") == ["10.0.0.2"]


def test_member_replaced_by_a_symlink_is_removed_and_then_quiet(
    seeded_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    put(seeded_root, "web-1", "10.0.0.2")
    put(seeded_root, "web-9", cluster="elsewhere")
    with Store.open(seeded_root, busy_timeout=0.2, clock=later) as store:
        assert store.list() == ["web-9", "web-1"]
        shutil.rmtree(seeded_root / "clusters/web/web-1")
        (seeded_root / "clusters/web/web-1").symlink_to(seeded_root / "clusters/elsewhere/web-9")
        assert store.list() == ["web-9"]  # Go does not list a symlink either
        assert "web/web-1" not in states(seeded_root)
        with write_locked(seeded_root):
            assert store.list() == ["web-9"]
    assert fell_back(caplog) == []


# -- the no-change path: no parse, no lock, no write ---------------------------------------


def test_unchanged_store_takes_no_write_lock_and_writes_nothing(
    seeded_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(1, 6):
        put(seeded_root, f"web-{i}", f"10.0.0.{i + 1}")
    (seeded_root / "clusters/db/db-1").mkdir(parents=True)  # configless
    put(seeded_root, "bar", cluster="foo")  # stray
    with Store.open(seeded_root, clock=later) as store:
        store.list()
    before = file_state(seeded_root)
    # A fresh process-like store: its snapshot comes from the index file, not from memory.
    with Store.open(seeded_root, busy_timeout=0.2, clock=later) as store:
        counter = counting(store)
        with write_locked(seeded_root):
            for _ in range(10):
                assert store.list() == ["db-1", "bar", *(f"web-{i}" for i in range(1, 6))]
            assert len(store.vms()) == 5
            assert store.members("web") == [f"web-{i}" for i in range(1, 6)]
            assert store.free_ips("10.0.0.0/24", limit=1) == ["10.0.0.7"]
        assert counter.reads == []
    assert fell_back(caplog) == []
    assert file_state(seeded_root) == before


RAW = os.fsdecode  # a name as the scan returns it: undecodable bytes as surrogate escapes


def test_names_that_are_not_utf8_are_indexed_in_go_order(seeded_root: Path) -> None:
    """Go's mkdir makes names that are not UTF-8; they hold addresses like any member."""
    put(seeded_root, "web-1", "10.0.0.2", "02:00:00:00:00:01")
    put(seeded_root, RAW(b"web\xff-1"), "10.0.0.3", "02:00:00:00:00:02")
    put(seeded_root, RAW(b"caf\xe9-1"), "10.0.0.4")  # Latin-1, not UTF-8
    put(seeded_root, "caf\u00e9-1", "10.0.0.4")  # the UTF-8 spelling: another member, same IP
    put(seeded_root, RAW(b"x\x80"), "10.0.0.5", cluster="web")  # stray
    go_order = sorted(
        [RAW(b"web\xff-1"), "web-1", RAW(b"caf\xe9-1"), "caf\u00e9-1", RAW(b"x\x80")],
        key=lambda n: os.fsencode(f"{cluster_name(n)}/{n}" if n[0] != "x" else f"web/{n}"),
    )
    with Store.open(seeded_root, clock=later) as store:
        assert store.list() == go_order
        ok = [n for n in go_order if n[0] != "x"]
        assert [vm.ip for vm in store.vms()] == [
            {"web-1": "10.0.0.2", RAW(b"web\xff-1"): "10.0.0.3"}.get(n, "10.0.0.4") for n in ok
        ]
        assert store.who_has("10.0.0.3") == RAW(b"web\xff-1")
        assert store.who_has("02:00:00:00:00:02") == RAW(b"web\xff-1")
        assert store.members(RAW(b"web\xff")) == [RAW(b"web\xff-1")]
        assert store.free_ips("10.0.0.0/29") == ["10.0.0.6"]
        conflicts = store.reconcile().conflicts
        # Clusters compare as bytes: caf\xc3\xa9 (UTF-8) sorts before caf\xe9.
        assert conflicts == [Conflict("ip", "10.0.0.4", ("caf\u00e9-1", RAW(b"caf\xe9-1")))]
        incremental = index_rows(seeded_root)
        assert store.reconcile(full=True).changed is False
        assert index_rows(seeded_root) == incremental
    with Store.open(seeded_root, busy_timeout=0.2, clock=later) as store:
        counter = counting(store)
        with write_locked(seeded_root):
            assert store.list() == go_order  # the index alone answers: no read, no write
        assert counter.reads == []
        shutil.rmtree(os.fsencode(seeded_root / "clusters") + b"/web\xff")
        assert store.free_ips("10.0.0.0/29") == ["10.0.0.3", "10.0.0.6"]
        assert RAW(b"web\xff-1") not in store.list()


@pytest.mark.parametrize(
    "disturb",
    [
        pytest.param(lambda p: p.chmod(0o600), id="chmod-changes-ctime-only"),
        pytest.param(lambda p: os.utime(p, ns=(0, 0)), id="touch-same-bytes"),
        pytest.param(lambda p: (p.unlink(), p.mkdir()), id="config-json-is-a-directory"),
        pytest.param(
            lambda p: os.rename(p.parent, p.parent.parent / os.fsdecode(b"caf\xe9")),
            id="undecodable-member-name",
        ),
    ],
)
def test_a_disturbance_costs_one_reconcile_then_none(
    seeded_root: Path, caplog: pytest.LogCaptureFixture, disturb: Any
) -> None:
    """Whatever the scan shows must be remembered, or every list() would look changed."""
    path = put(seeded_root, "web-1", "10.0.0.2")
    put(seeded_root, "web-2", "10.0.0.3")
    with Store.open(seeded_root, busy_timeout=0.2, clock=later) as store:
        counter = counting(store)
        store.list()
        disturb(path)
        first = store.list()
        counter.reads.clear()
        before = file_state(seeded_root)
        with write_locked(seeded_root):
            assert store.list() == first
            store.vms()
        assert counter.reads == []
        assert file_state(seeded_root) == before
    assert fell_back(caplog) == []


def test_list_parses_nothing_when_nothing_changed(seeded_root: Path) -> None:
    for i in range(1, 4):
        put(seeded_root, f"web-{i}", f"10.0.0.{i + 1}")
    with Store.open(seeded_root, clock=later) as store:
        counter = counting(store)
        store.list()
        assert sorted(counter.reads) == ["web-1", "web-2", "web-3"]
        counter.reads.clear()
        for _ in range(5):
            store.list()
            store.vms()
        assert counter.reads == []
        go_write(config_path(seeded_root, "web-2"), config("web-2", "10.0.0.9"))
        store.list()
        assert counter.reads == ["web-2"]  # only what changed is read


# -- the racy-timestamp guard, with injected time ---------------------------------------


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def forge_coarse_ctime(root: Path, name: str) -> None:
    """Record the file's current ctime in the index, as if both writes shared one ctime tick.

    Linux stamps ctime on every write, so a real same-tick rewrite cannot be staged on it;
    on a filesystem with coarse timestamps the whole signature stays the same.
    """
    st = os.stat(config_path(root, name))
    with contextlib.closing(sqlite3.connect(root / "index.db", isolation_level=None)) as conn:
        # The first read then happened inside that same tick, after its timestamp.
        conn.execute(
            "UPDATE members SET ctime_ns = ?1, verified_ns = max(verified_ns, ?1 + 1)"
            " WHERE name = ?2",
            (st.st_ctime_ns, name),
        )


@pytest.mark.parametrize(
    ("granularity_ns", "seen"),
    [
        pytest.param(SECOND, "10.0.0.3", id="guard-on-sees-the-rewrite"),
        # Proves the test can fail: without the guard, the same signature hides the change.
        pytest.param(0, "10.0.0.2", id="guard-off-misses-it"),
    ],
)
def test_rewrite_within_one_tick_is_seen_only_thanks_to_the_racy_guard(
    seeded_root: Path, granularity_ns: int, seen: str
) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2", age_ns=None)
    mtime = os.stat(path).st_mtime_ns
    clock = Clock(mtime + 1000)  # read a microsecond after the write: inside the tick
    with Store.open(seeded_root, clock=clock, granularity_ns=granularity_ns) as store:
        assert [vm.ip for vm in store.vms()] == ["10.0.0.2"]
        # Go rewrites it in the same tick: same inode, same size, same mtime.
        before = os.stat(path)
        go_write(path, config("web-1", "10.0.0.3"))
        os.utime(path, ns=(before.st_atime_ns, mtime))
        forge_coarse_ctime(seeded_root, "web-1")
        row, now = row_of(seeded_root, "web-1"), os.stat(path)
        recorded = (row["ino"], row["size"], row["mtime_ns"], row["ctime_ns"])
        assert recorded == (now.st_ino, now.st_size, now.st_mtime_ns, now.st_ctime_ns)
        clock.now = now.st_ctime_ns + 1000  # just after the rewrite: inside its tick
        assert [vm.ip for vm in store.vms()] == [seen]
        assert store.who_has(seen) == "web-1"


def test_racy_row_is_reread_until_settled_then_left_alone(seeded_root: Path) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2", age_ns=None)
    st = os.stat(path)
    mtime = max(st.st_mtime_ns, st.st_ctime_ns)  # the racy guard counts from the later one
    clock = Clock(mtime + 1)
    with Store.open(seeded_root, clock=clock, granularity_ns=SECOND) as store:
        counter = counting(store)
        store.list()
        assert counter.reads == ["web-1"]
        assert row_of(seeded_root, "web-1")["verified_ns"] == mtime + 1
        before = file_state(seeded_root)
        # Inside the window: web-1 (and only web-1) is re-read each time, nothing written.
        for step in range(3):
            counter.reads.clear()
            clock.now = mtime + SECOND - 1 - step
            store.list()
            assert counter.reads == ["web-1"]
        assert file_state(seeded_root) == before
        assert row_of(seeded_root, "web-1")["verified_ns"] == mtime + 1
        # One read a full tick after mtime settles it ...
        counter.reads.clear()
        clock.now = mtime + SECOND
        store.list()
        assert counter.reads == ["web-1"]
        assert row_of(seeded_root, "web-1")["verified_ns"] == mtime + SECOND
        # ... and from then on nothing is read, whatever the clock says.
        counter.reads.clear()
        for later in (mtime + SECOND + 1, mtime + HOUR):
            clock.now = later
            store.list()
            store.vms()
        assert counter.reads == []


@pytest.mark.parametrize(
    ("read_at", "racy"),
    [
        pytest.param(SECOND - 1, True, id="one-ns-inside-the-tick"),
        pytest.param(SECOND, False, id="exactly-one-tick-later"),
        pytest.param(-HOUR, True, id="mtime-in-the-future"),
    ],
)
def test_racy_boundary(seeded_root: Path, read_at: int, racy: bool) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2", age_ns=None)
    mtime = os.stat(path).st_mtime_ns
    with Store.open(seeded_root, clock=Clock(mtime + read_at), granularity_ns=SECOND) as store:
        counter = counting(store)
        store.list()
        counter.reads.clear()
        store.list()
        assert counter.reads == (["web-1"] if racy else [])


def test_racy_reread_with_unchanged_bytes_takes_no_write_lock(
    seeded_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2", age_ns=None)
    mtime = os.stat(path).st_mtime_ns
    with Store.open(
        seeded_root, clock=Clock(mtime + 1), granularity_ns=SECOND, busy_timeout=0.2
    ) as s:
        s.list()
        with write_locked(seeded_root):
            assert s.list() == ["web-1"]
    assert fell_back(caplog) == []


# -- full=True equals incremental ----------------------------------------------------------

NAMES = ("web-1", "web-2", "db-1")
IPS = ("10.0.0.2", "10.0.0.3", "")
MACS = ("02:00:00:00:00:01", "02:00:00:00:00:02", "")

edits = st.one_of(
    st.tuples(
        st.just("write"),
        st.sampled_from(NAMES),
        st.sampled_from(IPS),
        st.sampled_from(MACS),
        st.integers(1, 12),
    ),
    st.tuples(st.just("torn"), st.sampled_from(NAMES)),
    st.tuples(st.just("rm"), st.sampled_from(NAMES)),
    st.tuples(st.just("rmcluster"), st.sampled_from(NAMES)),
    st.tuples(st.just("rmconfig"), st.sampled_from(NAMES)),
    st.tuples(st.just("mkdir"), st.sampled_from(NAMES)),
    st.tuples(st.just("touch"), st.sampled_from(NAMES)),
    st.tuples(st.just("dirconfig"), st.sampled_from(NAMES)),
    st.tuples(st.just("sametick"), st.sampled_from(NAMES), st.sampled_from(IPS[:2])),
    st.tuples(st.just("stray"), st.sampled_from(NAMES), st.sampled_from(IPS)),
    st.tuples(st.just("cp"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("list")),
    st.tuples(st.just("reconcile")),
)


def apply_edit(root: Path, store: Store, edit: tuple[Any, ...]) -> None:
    kind, *args = edit
    member = (root / "clusters" / cluster_name(args[0]) / args[0]) if args else root
    if kind == "write":
        name, ip, mac, cpus = args
        member.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            (member / "config.json").rmdir()  # a "dirconfig" earlier
        go_write(
            member / "config.json", encode_config(VM(name, mac, cpus, 1, 1, "i", CREATED, ip=ip))
        )
    elif kind == "torn" and (member / "config.json").is_file():
        data = (member / "config.json").read_bytes()
        go_write(member / "config.json", data[: len(data) // 2])
    elif kind == "rm":
        shutil.rmtree(member, ignore_errors=True)
    elif kind == "rmcluster":
        shutil.rmtree(member.parent, ignore_errors=True)
    elif kind == "rmconfig":
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            (member / "config.json").unlink()
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            (member / "config.json").rmdir()
    elif kind == "mkdir":
        member.mkdir(parents=True, exist_ok=True)
    elif kind == "touch" and (member / "config.json").exists():
        os.utime(member / "config.json", ns=(0, 0))
    elif kind == "dirconfig" and member.is_dir():
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            (member / "config.json").unlink()
        (member / "config.json").mkdir(exist_ok=True)
    elif kind == "sametick" and (member / "config.json").is_file():
        before = os.stat(member / "config.json")
        go_write(member / "config.json", config(args[0], args[1]))
        os.utime(member / "config.json", ns=(before.st_atime_ns, before.st_mtime_ns))
    elif kind == "stray":
        stray = root / "clusters/zz" / args[0]
        stray.mkdir(parents=True, exist_ok=True)
        go_write(stray / "config.json", config(args[0], args[1]))
    elif kind == "cp" and member.is_dir() and args[0] != args[1]:
        target = root / "clusters" / cluster_name(args[1]) / args[1]
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(member, target)
    elif kind == "list":
        store.list()
    elif kind == "reconcile":
        store.reconcile()


def without_last_good(rows: dict[str, Any]) -> dict[str, Any]:
    """A fresh index never saw an unreadable member's last good config: drop it to compare."""
    unreadable = {(r[0], r[1]) for r in rows["members"] if r[2] == "unreadable"}
    members = [
        r[:CONFIG_COLUMNS_FROM] if (r[0], r[1]) in unreadable else r for r in rows["members"]
    ]
    fixtures = [f for f in rows["fixtures"] if (f[0], f[1]) not in unreadable]
    return {**rows, "members": members, "fixtures": fixtures}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(edits, max_size=14))
def test_full_reconcile_gives_the_same_index_as_incremental(
    head_index: Path, sequence: list[tuple[Any, ...]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copyfile(head_index, root / "index.db")
        with Store.open(root, clock=later) as store:
            for edit in sequence:
                apply_edit(root, store, edit)
            store.list()
            incremental = index_rows(root)
            report = store.reconcile(full=True)
            assert (report.added, report.updated, report.removed) == ([], [], [])
            assert index_rows(root) == incremental
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{root / 'index.db'}{suffix}")
        shutil.copyfile(head_index, root / "index.db")
        with Store.open(root, clock=later) as store:
            store.reconcile(full=True)
            rebuilt = index_rows(root)
        assert without_last_good(rebuilt) == without_last_good(incremental)


# -- the report ------------------------------------------------------------------------------


def test_report_names_what_changed(seeded_root: Path) -> None:
    put(seeded_root, "web-1", "10.0.0.2")
    put(seeded_root, "web-2", "10.0.0.3")
    put(seeded_root, "db-1", "10.0.0.4")
    with Store.open(seeded_root, clock=later) as store:
        first = store.reconcile()
        assert sorted(first.added) == ["db-1", "web-1", "web-2"]
        assert (first.updated, first.removed, first.unreadable, first.conflicts) == ([],) * 4
        assert store.reconcile() == fleetbox_db.ReconcileReport()
        go_write(config_path(seeded_root, "web-1"), config("web-1", "10.0.0.9"))
        go_write(config_path(seeded_root, "web-2"), b'{"name": ')
        shutil.rmtree(seeded_root / "clusters/db")
        put(seeded_root, "web-3", "10.0.0.9")
        report = store.reconcile()
        assert report.added == ["web-3"]
        assert sorted(report.updated) == ["web-1", "web-2"]
        assert report.removed == ["db-1"]
        assert report.unreadable == ["web-2"]
        assert report.conflicts == [Conflict("ip", "10.0.0.9", ("web-1", "web-3"))]
        assert report.released == []
        # unreadable and conflicts list every one, not just those that changed now
        again = store.reconcile()
        assert (again.added, again.updated, again.removed) == ([], [], [])
        assert again.unreadable == ["web-2"]
        assert again.conflicts == report.conflicts


def test_full_reconcile_rereads_everything_and_reports_no_change(seeded_root: Path) -> None:
    for name in NAMES:
        put(seeded_root, name)
    with Store.open(seeded_root, clock=later) as store:
        store.list()
        counter = counting(store)
        report = store.reconcile(full=True)
        assert sorted(counter.reads) == sorted(NAMES)
        assert (report.added, report.updated, report.removed) == ([], [], [])


def test_reservation_of_a_dead_process_is_released(seeded_root: Path) -> None:
    code = (
        "import sys; from fleetbox_db import Store\n"
        "print(Store.open(sys.argv[1]).allocate_ip('web-7', '10.0.0.0/24'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(seeded_root)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "10.0.0.2"
    with Store.open(seeded_root, clock=later) as store:
        assert index_rows(seeded_root)["reservations"] == [("web-7", "10.0.0.0/24", 0x0A000002)]
        dry = store.reconcile(dry_run=True)
        assert dry.released == ["web-7"]
        assert index_rows(seeded_root)["reservations"] != []
        assert store.reconcile().released == ["web-7"]
        assert index_rows(seeded_root)["reservations"] == []
        assert store.free_ips("10.0.0.0/24", limit=1) == ["10.0.0.2"]


def dry_run_case(root: Path, store: Store) -> None:
    put(root, "web-1", "10.0.0.2")
    put(root, "web-2", "10.0.0.3")
    put(root, "db-1", "10.0.0.4")
    store.list()
    go_write(config_path(root, "web-1"), config("web-1", "10.0.0.22"))
    shutil.rmtree(root / "clusters/db")
    put(root, "web-3", "10.0.0.5")


def test_dry_run_changes_nothing_and_reports_what_a_real_run_does(seeded_root: Path) -> None:
    with Store.open(seeded_root, clock=later) as store:
        dry_run_case(seeded_root, store)
        before, files = index_rows(seeded_root), file_state(seeded_root)
        dry = store.reconcile(dry_run=True)
        assert index_rows(seeded_root) == before
        assert file_state(seeded_root) == files
        assert store.reconcile(dry_run=True) == dry  # still nothing applied
        real = store.reconcile()
        assert real == dry
        assert (dry.added, dry.updated, dry.removed) == (["web-3"], ["web-1"], ["db-1"])


def test_dry_run_reports_new_unreadable_and_conflicts(seeded_root: Path) -> None:
    with Store.open(seeded_root, clock=later) as store:
        dry_run_case(seeded_root, store)
        go_write(config_path(seeded_root, "web-2"), b"{")
        put(seeded_root, "web-4", "10.0.0.5")  # same address as web-3
        dry = store.reconcile(dry_run=True)
        real = store.reconcile()
        assert (real.unreadable, real.conflicts) == (
            ["web-2"],
            [Conflict("ip", "10.0.0.5", ("web-3", "web-4"))],
        )
        assert dry == real


def test_apply_dry_run_itself_previews_unreadable_and_conflicts(seeded_root: Path) -> None:
    """The reconciler computes the preview; the store-level bug above only discards it."""
    with Store.open(seeded_root, clock=later) as store:
        dry_run_case(seeded_root, store)
        go_write(config_path(seeded_root, "web-2"), b"{")
        put(seeded_root, "web-4", "10.0.0.5")
        reconciler = internals.reconciler(store)
        conn = index_connection(store)
        plan = reconciler.plan(conn, scan(store.clusters_dir))
        dry = reconciler.apply(conn, plan, dry_run=True)
        real = store.reconcile()
        assert (dry.unreadable, dry.conflicts) == (real.unreadable, real.conflicts)
        assert (dry.added, dry.updated, dry.removed) == (real.added, real.updated, real.removed)


# -- several processes -----------------------------------------------------------------------

RECONCILER_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from fleetbox_db import Store
    root, go, stop = sys.argv[1:4]
    while not os.path.exists(go):
        time.sleep(0.001)
    with Store.open(root) as store:
        rounds = 0
        while rounds < 5 or not os.path.exists(stop):
            store.reconcile()
            store.list()
            store.vms()
            store.free_ips("10.0.0.0/24", limit=3)
            rounds += 1
        store.reconcile()  # one more after the last edit
    print(rounds)
    """
)

EDITOR_CHILD = textwrap.dedent(
    """
    import os, shutil, sys
    root, go, stop = sys.argv[1:4]
    clusters = os.path.join(root, "clusters", "web")
    while not os.path.exists(go):
        pass
    for rnd in range(40):
        for i in range(rnd % 3, 12, 3):
            member = os.path.join(clusters, f"web-{i}")
            os.makedirs(member, exist_ok=True)
            path = os.path.join(member, "config.json")
            with open(path, "wb") as f:  # in place, like Go
                f.write(b'{"name": "web-%d", "ip": "10.0.%d.%d"}' % (i, rnd % 2, i + 2))
        shutil.rmtree(os.path.join(clusters, f"web-{rnd % 12}"), ignore_errors=True)
    open(stop, "w").close()
    """
)


def test_concurrent_reconcilers_never_raise_and_converge(seeded_root: Path, tmp_path: Path) -> None:
    for i in range(12):
        put(seeded_root, f"web-{i}", f"10.0.0.{i + 2}")
    for i in range(4):
        put(seeded_root, f"db-{i}", f"10.0.1.{i + 2}")
    with Store.open(seeded_root, clock=later) as store:
        store.list()
    go, stop = tmp_path / "go", tmp_path / "stop"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(seeded_root), str(go), str(stop)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for code in (RECONCILER_CHILD, RECONCILER_CHILD, RECONCILER_CHILD, EDITOR_CHILD)
    ]
    # Behind-the-back changes every reconciler sees at once, plus the editor's stream.
    shutil.rmtree(seeded_root / "clusters/db")
    go.touch()
    for proc in children:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert err == ""
    with Store.open(seeded_root, clock=later) as store:
        store.reconcile()
        incremental = index_rows(seeded_root)
        full = store.reconcile(full=True)
        assert (full.added, full.updated, full.removed) == ([], [], [])
        assert index_rows(seeded_root) == incremental
        assert [p for p in store.check() if p.kind == "drift"] == []
        members = sorted(os.listdir(seeded_root / "clusters/web"))
        assert store.list() == members
        on_disk = {}
        for name in members:
            with contextlib.suppress(FileNotFoundError):
                on_disk[name] = json.loads(config_path(seeded_root, name).read_bytes())["ip"]
        assert {vm.name: vm.ip for vm in store.vms()} == on_disk


# -- transitions the signature alone does not show ---------------------------------------


def test_config_that_is_a_directory_then_gone(
    seeded_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2")
    with Store.open(seeded_root, clock=later) as store:
        store.list()
        path.unlink()
        path.mkdir()  # config.json exists but is no file: unreadable, keeps its address
        assert store.list() == ["web-1"]
        assert states(seeded_root) == {"web/web-1": "unreadable"}
        assert store.who_has("10.0.0.2") == "web-1"
        path.rmdir()  # now really configless: the address is freed
        assert store.list() == ["web-1"]
        assert states(seeded_root) == {"web/web-1": "configless"}
        assert store.who_has("10.0.0.2") is None
        path.mkdir()
        assert store.list() == ["web-1"]
        assert states(seeded_root) == {"web/web-1": "unreadable"}
    # A new process (no memory of the scan's error text) sees the store as unchanged.
    with Store.open(seeded_root, busy_timeout=0.2, clock=later) as store, write_locked(seeded_root):
        counter = counting(store)
        assert store.list() == ["web-1"]
        assert counter.reads == []
    assert fell_back(caplog) == []


def test_stray_config_that_cannot_be_read_holds_nothing(seeded_root: Path) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2", cluster="zz")
    with Store.open(seeded_root, clock=later) as store:
        assert store.who_has("10.0.0.2") == "web-1"
        path.unlink()
        path.mkdir()
        assert store.list() == ["web-1"]
        assert states(seeded_root) == {"zz/web-1": "stray"}
        assert store.who_has("10.0.0.2") is None
        path.rmdir()  # missing or unreadable: the same stray row, no work either way
        counter = counting(store)
        assert store.list() == ["web-1"]
        assert counter.reads == []


def test_member_removed_between_plan_and_apply_leaves_no_row(seeded_root: Path) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2")
    put(seeded_root, "web-2", "10.0.0.3")
    with Store.open(seeded_root, clock=later) as store:
        store.list()
        go_write(path, config("web-1", "10.0.0.9"))
        (seeded_root / "clusters/web/web-3").mkdir()
        reconciler, index = internals.reconciler(store), index_file(store)
        plan = reconciler.plan(index.connection(), scan(store.clusters_dir))
        assert sorted(m.name for m in plan.reads) == ["web-1", "web-3"]
        shutil.rmtree(path.parent)  # after the lock-free read, before the write lock
        shutil.rmtree(seeded_root / "clusters/web/web-3")
        with index.write() as conn:
            report = reconciler.apply(conn, plan)
        assert report.removed == ["web-1"]
        assert report.added == []  # web-3 came and went: nothing to add
        assert list(states(seeded_root)) == ["web/web-2"]


def test_member_recreated_between_plan_and_apply_is_kept(seeded_root: Path) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2")
    with Store.open(seeded_root, clock=later) as store:
        store.list()
        saved = path.read_bytes()
        shutil.rmtree(path.parent)
        reconciler, index = internals.reconciler(store), index_file(store)
        plan = reconciler.plan(index.connection(), scan(store.clusters_dir))
        assert plan.removed == [("web", "web-1")]
        put(seeded_root, "web-1", data=saved)
        with index.write() as conn:
            assert reconciler.apply(conn, plan).removed == []
        assert store.who_has("10.0.0.2") == "web-1"


UNPRIVILEGED_CHILD = textwrap.dedent(
    f"""
    import json, os, sys
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    import internals
    from fleetbox_db import Store
    from fleetbox_db.disk.scan import scan
    os.chdir(sys.argv[1])
    import hashlib, shutil, tempfile  # stress_helpers.LAZY_IMPORTS
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    with Store.open(".") as store:
        current = internals.reconciler(store).is_current(
            internals.index_connection(store), scan(store.clusters_dir)
        )
        names = store.list()
        report = store.reconcile()
        problems = [(p.kind, p.members, p.value) for p in store.check()]
    print(json.dumps([current, names, report.removed, problems]))
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the tree to nobody")
def test_unlistable_cluster_keeps_its_rows_and_costs_nothing(
    shared_root: Path, head_index: Path
) -> None:
    # Not under tmp_path: SQLite opens by absolute path, and pytest's dirs are root-only.
    shared_root.mkdir()
    shutil.copyfile(head_index, shared_root / "index.db")
    run_unlistable_cluster_case(shared_root)


def run_unlistable_cluster_case(root: Path) -> None:
    put(root, "web-1", "10.0.0.2")
    put(root, "db-1", "10.0.0.3")
    with Store.open(root, clock=later) as store:
        store.list()
    for path in [root.parent, *root.parent.rglob("*")]:
        if path.name != "config.json":  # chown would change its ctime, so its signature
            os.chown(path, 65534, 65534, follow_symlinks=False)
    (root / "clusters/db").chmod(0)  # nobody cannot list it any more
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", UNPRIVILEGED_CHILD, str(root)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    unlisted = ["unreadable", ["db-1"], "clusters/db"]  # the child runs in the root
    assert json.loads(out.stdout) == [True, ["web-1"], [], [unlisted]]
    assert states(root) == {"db/db-1": "ok", "web/web-1": "ok"}


def test_reconcile_reports_progress_per_batch(seeded_root: Path) -> None:
    for i in range(3):
        put(seeded_root, f"web-{i}", f"10.0.0.{i + 2}")
    calls: list[tuple[int, int]] = []
    with Store.open(seeded_root, clock=later) as store:
        store.reconcile(full=True, progress=lambda done, total: calls.append((done, total)))
        assert calls == [(3, 3)]
        calls.clear()
        store.reconcile(progress=lambda done, total: calls.append((done, total)))
        assert calls == []  # nothing to read, nothing to report


class DroppingReconciler(Reconciler):
    """The real Reconciler, with another process deleting web-1's row at the worst moment:
    after the snapshot was taken, before plan() looks up the rows it touches."""

    def _stored(self, conn: sqlite3.Connection, *args: Any) -> Any:
        path = Path(self.clusters_dir).parent / "index.db"
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("DELETE FROM members WHERE name = 'web-1'")
        return super()._stored(conn, *args)


def test_regression_racy_row_deleted_by_another_process_during_plan(seeded_root: Path) -> None:
    """Regression (found by the SIGKILL allocation loop): plan() raised a raw KeyError when a
    racy row of its snapshot was gone by the time it looked the row up."""
    path = put(seeded_root, "web-1", "10.0.0.2", age_ns=None)
    clock = Clock(os.stat(path).st_mtime_ns + 1)  # web-1 stays racy
    with Store.open(seeded_root, clock=clock, granularity_ns=SECOND) as store:
        store.list()
        swap_reconciler(store, DroppingReconciler)
        assert store.list() == ["web-1"]
        assert store.who_has("10.0.0.2") == "web-1"  # re-read and written back
