"""Readers never wait for writers (issue 12).

Every answer reconciles the index with disk first; when another process holds the write
lock at that instant, the reader answers from an in-memory copy of the index with this
scan's reconcile applied to it, and leaves the recording to the next writer. Its answer
must be the one a real reconcile would give.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import later, put
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from index_lock import write_locked
from internals import index_connection, swap_reconciler

from fleetbox_db import Store
from fleetbox_db.index.reconcile import Reconciler
from fleetbox_db.rules.ipam import EVERY_ADDRESS

QUESTIONS: dict[str, Callable[[Store], Any]] = {
    "list": lambda s: s.list(),
    "vms": lambda s: s.vms(),
    "entries": lambda s: s.entries(),
    "members": lambda s: s.members("web"),
    "free_ips": lambda s: s.free_ips("10.0.0.0/28"),
    "who_has_ip": lambda s: [s.who_has(f"10.0.0.{i}") for i in range(2, 12)],
    "who_has_mac": lambda s: s.who_has("02:00:00:00:00:03"),
}


@contextlib.contextmanager
def locked_in_process(root: Path) -> Iterator[None]:
    """Another connection holds BEGIN IMMEDIATE (as another process would) meanwhile."""
    holder = sqlite3.connect(root / "index.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


def fallbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def settled_tree(root: Path) -> None:
    put(root, "web-1", "10.0.0.2", "02:00:00:00:00:01")
    put(root, "web-2", "10.0.0.3", "02:00:00:00:00:02")
    put(root, "db-1", "10.0.0.4")


def change_behind_the_back(root: Path) -> None:
    put(root, "web-3", "10.0.0.9", "02:00:00:00:00:03")  # added
    put(root, "web-1", "10.0.0.7")  # changed
    shutil.rmtree(root / "clusters" / "web" / "web-2")  # removed
    put(root, "db-1", data=b"{")  # unreadable now: keeps its last good config


@pytest.mark.parametrize("question", list(QUESTIONS), ids=list(QUESTIONS))
def test_a_reader_answers_while_another_process_holds_the_write_lock(
    seeded_root: Path, question: str, caplog: pytest.LogCaptureFixture
) -> None:
    ask = QUESTIONS[question]
    settled_tree(seeded_root)
    with Store.open(seeded_root, clock=later, busy_timeout=10) as store:
        store.list()
        change_behind_the_back(seeded_root)
        with write_locked(seeded_root), caplog.at_level(logging.WARNING, "fleetbox_db"):
            during = ask(store)
        assert fallbacks(caplog) == []  # not the disk-only fallback after 10 s
        assert ask(store) == during  # now recorded for real: the same answer
    with Store.open(seeded_root, clock=later) as fresh:
        assert ask(fresh) == during


def test_the_next_writer_records_what_a_reader_only_answered(seeded_root: Path) -> None:
    settled_tree(seeded_root)
    with Store.open(seeded_root, clock=later, busy_timeout=10) as store:
        store.list()
        change_behind_the_back(seeded_root)
        with locked_in_process(seeded_root):
            assert store.who_has("10.0.0.9") == "web-3"
        report = store.reconcile()
        assert report.added == ["web-3"]  # the reader wrote nothing
        assert store.who_has("10.0.0.9") == "web-3"


# -- the overlay answers as a serial reconcile would -----------------------------------------

NAMES = ["web-1", "web-2", "web-3", "db-1", "db-2"]
edit = st.tuples(
    st.sampled_from(NAMES),
    st.sampled_from(["put", "remove", "unreadable", "configless", "stray"]),
    st.sampled_from(["", "10.0.0.2", "10.0.0.3", "10.0.0.5"]),
    st.sampled_from(["", "02:00:00:00:00:01", "02:00:00:00:00:0A"]),
)


def apply_edit(root: Path, name: str, how: str, ip: str, mac: str) -> None:
    from fleetbox_db import cluster_name

    member = root / "clusters" / cluster_name(name) / name
    if how == "remove":
        shutil.rmtree(member, ignore_errors=True)
    elif how == "unreadable":
        put(root, name, data=b'{"cpus": "many"}')
    elif how == "configless":
        shutil.rmtree(member, ignore_errors=True)
        member.mkdir(parents=True)
    elif how == "stray":
        put(root, name, ip, mac, cluster="strays")
    else:
        put(root, name, ip, mac)


@contextlib.contextmanager
def edited_behind(
    root: Path,
    before: list[tuple[str, str, str, str]],
    after: list[tuple[str, str, str, str]],
    subnet: str,
) -> Iterator[Store]:
    """A Store that listed *root* after the edits *before* (a live reservation of *subnet*
    among its rows), with the edits *after* made behind its back since."""
    for e in before:
        apply_edit(root, *e)
    with Store.open(root, clock=later, busy_timeout=10) as store:
        store.allocate_ip("new-1", subnet)
        store.list()
        for e in after:
            apply_edit(root, *e)
        yield store


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edit, max_size=5), st.lists(edit, min_size=1, max_size=5))
def test_overlay_answers_equal_answers_after_a_real_reconcile(
    before: list[tuple[str, str, str, str]], after: list[tuple[str, str, str, str]]
) -> None:
    top = Path(tempfile.mkdtemp())
    try:
        root = top / "fleetbox"
        root.mkdir()
        with edited_behind(root, before, after, "10.0.0.0/29") as store:
            with locked_in_process(root):
                overlay = {name: ask(store) for name, ask in QUESTIONS.items()}
            store.reconcile()
            real = {name: ask(store) for name, ask in QUESTIONS.items()}
        assert overlay == real
    finally:
        shutil.rmtree(top)


class RacedReconciler(Reconciler):
    """Another process commits right after each of the first *races* plans (dropping
    web-2's row, which only a plan made after it puts back): the copy a reader then takes
    is newer than its plan."""

    races = 0
    holder: sqlite3.Connection | None = None
    drops_web_2 = True  # False: the commits change no member row

    def plan(
        self,
        conn: sqlite3.Connection,
        scan: Any,
        full: bool = False,
        leases: Any = EVERY_ADDRESS,
        contents: bool = True,
    ) -> Any:
        made = super().plan(conn, scan, full, leases, contents)
        if self.races and self.holder is not None:
            self.races -= 1
            if self.drops_web_2:
                self.holder.execute("DELETE FROM members WHERE name = 'web-2'")
            commit_a_change(self.holder)
        return made


def commit_a_change(holder: sqlite3.Connection) -> None:
    """Commit on the connection holding the write lock, and take it again. A real change
    every time: an UPDATE to the same value commits nothing, and data_version stays."""
    holder.execute(
        "UPDATE history_meta SET max_events = max_events + 1 - 2 * (max_events % 2) WHERE id = 1"
    )
    holder.execute("COMMIT")
    holder.execute("BEGIN IMMEDIATE")


@contextlib.contextmanager
def racing(root: Path, raced: RacedReconciler) -> Iterator[None]:
    """Another connection holds the write lock meanwhile and, while raced.races says so,
    commits after each of raced's plans; rolled back after."""
    holder = sqlite3.connect(root / "index.db", isolation_level=None)
    try:
        holder.execute("PRAGMA foreign_keys = ON")
        holder.execute("BEGIN IMMEDIATE")
        raced.holder = holder
        yield
        raced.races = 0
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@pytest.mark.parametrize("races", [1, 10])  # 10: writers keep committing, plan on the copy
def test_an_overlay_answer_whose_plan_another_process_outran(root: Path, races: int) -> None:
    settled_tree(root)
    with Store.open(root, clock=later, busy_timeout=10) as store:
        store.list()
        put(root, "web-3", "10.0.0.5")
        apply_edit(root, "web-1", "remove", "", "")
        apply_edit(root, "db-1", "put", "10.0.0.2", "")
        raced = swap_reconciler(store, RacedReconciler)
        with racing(root, raced):
            raced.races = races
            web_2 = store.who_has("10.0.0.3")  # the first question the race outruns
            overlay = {}
            for name, ask in QUESTIONS.items():
                raced.races = races
                overlay[name] = ask(store)
        store.reconcile()
        real = {name: ask(store) for name, ask in QUESTIONS.items()}
    assert overlay == real
    assert web_2 == "web-2"


# -- drift in reservations alone: a TEMP table shadows them, no copy -------------------------

LEASE_QUESTIONS: dict[str, Callable[[Store], Any]] = {
    "free_ips": lambda s: s.free_ips("10.0.0.0/28"),
    "free_ips_5": lambda s: s.free_ips("10.0.0.0/28", limit=5),
    "who_has_ip": lambda s: [s.who_has(f"10.0.0.{i}") for i in range(2, 15)],
    "holders": lambda s: [s.holders(f"10.0.0.{i}") for i in range(2, 15)],
}


@contextlib.contextmanager
def copies_counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many in-memory copies of the index the readers took meanwhile."""
    from fleetbox_db.index import overlay

    taken = [0]
    real = overlay.in_memory_copy

    def counting(conn: sqlite3.Connection) -> Any:
        taken[0] += 1
        return real(conn)

    with monkeypatch.context() as patched:
        patched.setattr(overlay, "in_memory_copy", counting)
        yield taken


def asked_racing(
    root: Path,
    store: Store,
    raced_class: type[RacedReconciler],
    races: int,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[dict[str, Any], list[int]]:
    """Every LEASE_QUESTIONS answer while another connection holds the write lock and
    commits after *races* plans of each, and how many copies of the index they took."""
    raced = swap_reconciler(store, raced_class)
    answers = {}
    with racing(root, raced), copies_counted(monkeypatch) as copies:
        for name, ask in LEASE_QUESTIONS.items():
            raced.races = races
            answers[name] = ask(store)
    return answers, copies


lease_edit = st.one_of(
    st.tuples(st.just("take"), st.integers(2, 14), st.sampled_from(["new", "web"])),
    st.tuples(st.just("kill"), st.just(0), st.just("")),
)


def apply_lease_edits(root: Path, edits: list[tuple[str, int, str]]) -> None:
    """Leases taken without a row (an allocator before its commit), or this process's
    leases ended (as its exit would: their rows are dead)."""
    from internals import drop_lease_locks

    from fleetbox_db.disk import leases

    for how, host, name in edits:
        if how == "kill":
            drop_lease_locks()
        else:
            # One name per address: allocate_ip never gives a name two in one subnet.
            leases.take(root / "leases", (10 << 24) + host, f"{name}-{host}", "10.0.0.0/28")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lease_edit, min_size=1, max_size=4), st.integers(0, 2))
def test_lease_drift_alone_is_answered_without_a_copy_as_a_reconcile_would(
    edits: list[tuple[str, int, str]], races: int
) -> None:
    """*races*: another process commits after that many plans; the shadow then declines
    and the copy answers, as before."""
    from internals import drop_lease_locks

    top = Path(tempfile.mkdtemp())
    monkeypatch = pytest.MonkeyPatch()
    try:
        root = top / "fleetbox"
        settled_tree(root)
        with Store.open(root, clock=later, busy_timeout=10) as store:
            store.allocate_ip("new-1", "10.0.0.0/28")  # a live reservation among the rows
            store.list()
            apply_lease_edits(root, edits)
            overlay, copies = asked_racing(root, store, RacedReconciler, races, monkeypatch)
            if not races:
                assert copies == [0]
            shadows = index_connection(store).execute(
                "SELECT count(*) FROM sqlite_temp_master WHERE name = 'reservations'"
            )
            assert shadows.fetchone()[0] == 0  # dropped after each answer
            store.reconcile()
            real = {name: ask(store) for name, ask in LEASE_QUESTIONS.items()}
        assert overlay == real
    finally:
        drop_lease_locks()
        monkeypatch.undo()
        shutil.rmtree(top)


# -- member changes that hold none of an answer's addresses: answered from the file --------

ELSEWHERE = ["app-1", "app-2", "cache-1"]  # none in the settled tree
elsewhere_edit = st.tuples(
    st.sampled_from(ELSEWHERE),
    st.sampled_from(["put", "remove", "unreadable", "configless", "stray"]),
    st.sampled_from(["", "10.9.0.2", "10.9.0.3", "10.0.0.6"]),  # only the last is asked about
    st.just(""),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(elsewhere_edit, max_size=4),
    st.lists(elsewhere_edit, min_size=1, max_size=4),
    st.lists(lease_edit, max_size=2),
    st.integers(0, 2),
)
def test_member_changes_elsewhere_are_answered_without_a_copy_as_a_reconcile_would(
    before: list[tuple[str, str, str, str]],
    after: list[tuple[str, str, str, str]],
    lease_edits: list[tuple[str, int, str]],
    races: int,
) -> None:
    """An answer about addresses (who_has, holders, free_ips) beside a writer holding the
    lock: member changes that hold none of its addresses, before or after, leave it as the
    index says; only the lease drift, if any, is shadowed. Beside the contention
    benchmark's create loop (another subnet), 7% of such answers copied the whole index.
    *races*: another process commits after that many plans."""
    from internals import drop_lease_locks

    top = Path(tempfile.mkdtemp())
    monkeypatch = pytest.MonkeyPatch()
    try:
        root = top / "fleetbox"
        settled_tree(root)
        with edited_behind(root, before, after, "10.0.0.0/28") as store:
            apply_lease_edits(root, lease_edits)
            overlay, copies = asked_racing(root, store, LeaseRacedReconciler, races, monkeypatch)
            if all(ip != "10.0.0.6" for *_, ip, _ in before + after):
                assert copies == [0]
            store.reconcile()
            real = {name: ask(store) for name, ask in LEASE_QUESTIONS.items()}
        assert overlay == real
    finally:
        drop_lease_locks()
        monkeypatch.undo()
        shutil.rmtree(top)


def test_a_member_change_holding_an_asked_address_is_still_applied(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side: a change that moves a member into, out of or within the addresses
    asked about is applied (here, on a copy) before the answer."""
    settled_tree(root)
    put(root, "app-1", "10.9.0.2")
    put(root, "app-2", "10.0.0.6")
    with Store.open(root, clock=later, busy_timeout=10) as store:
        store.list()
        put(root, "app-1", "10.0.0.7")  # into 10.0.0.0/28
        put(root, "app-2", "10.9.0.3")  # out of it
        with write_locked(root), copies_counted(monkeypatch) as copies:
            assert store.who_has("10.0.0.7") == "app-1"
            assert store.who_has("10.0.0.6") is None
            assert store.holders("10.9.0.3") == ["app-2"]
            assert store.free_ips("10.0.0.0/29") == ["10.0.0.5", "10.0.0.6"]
        assert copies[0] >= 1


def test_a_new_member_caught_mid_write_is_waited_for_not_taken_as_elsewhere(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new config read between a Go writer's truncate and its write shows no address yet:
    that proves nothing, so the answer is not the file's; the copy's apply reads it again
    after the pauses, by when the writer has finished (here, at the next read)."""
    import time

    from helpers import config

    settled_tree(root)
    with Store.open(root, clock=later) as store:
        store.list()
    whole = config("web-9", "10.0.0.9")
    path = put(root, "web-9", data=whole[: len(whole) // 2], age_ns=None)
    armed, reads = [False], [0]

    def clock() -> int:  # stamped before each read: the writer finishes before the second
        if armed[0]:
            reads[0] += 1
            if reads[0] == 2:
                put(root, "web-9", data=whole, age_ns=None)
        return time.time_ns()

    with Store.open(root, clock=clock, busy_timeout=10) as store:
        with write_locked(root), copies_counted(monkeypatch) as copies:
            armed[0] = True
            assert store.who_has("10.0.0.9") == "web-9"
        assert copies == [1]
    assert path.read_bytes() == whole


class LeaseRacedReconciler(RacedReconciler):
    drops_web_2 = False


def test_a_scan_refreshed_inside_a_read_is_refreshed_again_not_reloaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lease drift alone, outrun by a commit: the answer plans again inside its read
    transaction. The recorded scan it refreshed there holds no write of this connection,
    so after the next commit it is merged, not read whole (beside an allocator and a
    create loop, a third of the answers read all 1,000 rows again)."""
    from internals import drop_lease_locks

    from fleetbox_db.index import recorded

    top = Path(tempfile.mkdtemp())
    try:
        root = top / "fleetbox"
        settled_tree(root)
        with Store.open(root, clock=later, busy_timeout=10) as store:
            store.list()
            apply_lease_edits(root, [("take", 9, "new")])  # an allocation in flight
            raced = swap_reconciler(store, LeaseRacedReconciler)
            loads: list[int] = []
            real = recorded.signatures
            with racing(root, raced), monkeypatch.context() as patched:
                raced.races = 1
                first = store.free_ips("10.0.0.0/28")
                assert raced.races == 0  # it was outrun
                patched.setattr(recorded, "signatures", lambda *a: loads.append(1) or real(*a))
                assert raced.holder is not None
                commit_a_change(raced.holder)
                again = store.free_ips("10.0.0.0/28")
            assert first == again
            assert "10.0.0.9" not in again
            assert loads == []
    finally:
        drop_lease_locks()
        shutil.rmtree(top)


class CountingRacedReconciler(RacedReconciler):
    """RacedReconciler that counts the configs it reads, by member."""

    reads: dict[str, int]

    def observe(self, member: Any, wait: bool = True, again: bool = False) -> Any:
        self.reads[member.name] = self.reads.get(member.name, 0) + 1
        return super().observe(member, wait, again)


def test_a_plan_made_again_for_the_same_scan_reads_no_config_twice(root: Path) -> None:
    """Writers committing between a reader's plan and its copy make it plan again for the
    same scan; the racy configs the first plan read (a Go tool re-saving them) are not read
    again: beside one, those reads were most of a re-plan."""
    settled_tree(root)
    with Store.open(root, busy_timeout=10) as store:  # the real clock: fresh files are racy
        store.list()
        put(root, "web-3", "10.0.0.5", age_ns=None)  # a member the reader must add (copy)
        put(root, "db-1", "10.0.0.4", age_ns=None)  # rewritten in place, within the tick
        raced = swap_reconciler(store, CountingRacedReconciler)
        raced.reads = {}
        with racing(root, raced):
            raced.races = 2
            assert store.who_has("10.0.0.5") == "web-3"
        assert raced.reads.get("db-1") == 1


def test_a_copy_newer_than_its_plan_is_planned_against_once(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process commits between a reader's plan and its copy: the reader plans
    against that copy (one copy, not one per attempt) and keeps the file's recorded scan,
    which the next answer refreshes instead of reading every row again."""
    from internals import reconciler

    from fleetbox_db.disk.scan import scan
    from fleetbox_db.index import overlay
    from fleetbox_db.index.answers import IndexAnswers

    settled_tree(root)
    with Store.open(root, clock=later, busy_timeout=10) as store:
        store.list()
        conn, rec = index_connection(store), reconciler(store)
        put(root, "web-3", "10.0.0.9")
        found = scan(store.clusters_dir)
        plan = rec.plan(conn, found)
        kept = rec._recorded
        other = sqlite3.connect(root / "index.db", isolation_level=None)
        try:
            other.execute("DELETE FROM members WHERE name = 'db-1'")  # the plan is stale now
        finally:
            other.close()
        with copies_counted(monkeypatch) as copies:
            answer = overlay.answer_from_copy(
                conn,
                rec,
                found,
                plan,
                lambda c: IndexAnswers(c, None, None).who_has((10 << 24) + 4, None),
                None,
            )
        assert copies == [1]
        assert answer == "db-1"  # disk still holds it: the copy's plan puts it back
        assert rec._recorded is kept


def test_a_copy_newer_than_its_plan_is_planned_from_the_changes_not_every_row(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader's recorded scan is carried to the copy by the rows changed since (the
    copy has the file's change numbers), not loaded again row by row; and the leases this
    scan listed stand for the copy's apply, which lists none (it removes no lease file).
    Beside the contention benchmark's writers, loading every row and listing 500 leases
    again were two thirds of a copy answer."""
    from internals import reconciler

    from fleetbox_db.disk import leases
    from fleetbox_db.disk.scan import scan
    from fleetbox_db.index import overlay
    from fleetbox_db.index.answers import IndexAnswers
    from fleetbox_db.index.recorded import RecordedScan
    from fleetbox_db.rules.ipam import parse_subnet

    settled_tree(root)
    with Store.open(root, clock=later, busy_timeout=10) as store:
        store.list()
        store.free_ips("10.0.0.0/28")  # the recorded scan holds the reservations too
        conn, rec = index_connection(store), reconciler(store)
        put(root, "web-3", "10.0.0.9")
        leases.take(root / "leases", (10 << 24) + 12, "new-12", "10.0.0.0/28")
        found = scan(store.clusters_dir)
        plan = rec.plan(conn, found)
        other = sqlite3.connect(root / "index.db", isolation_level=None)
        try:
            other.execute("DELETE FROM members WHERE name = 'db-1'")  # the plan is stale now
        finally:
            other.close()
        loads, listings = [0], [0]
        real_load, real_leases = RecordedScan._load.__func__, leases.leases

        def counted_load(cls: Any, *args: Any) -> Any:
            loads[0] += 1
            return real_load(cls, *args)

        def counted_leases(*args: Any) -> Any:
            listings[0] += 1
            return real_leases(*args)

        monkeypatch.setattr(RecordedScan, "_load", classmethod(counted_load))
        monkeypatch.setattr(leases, "leases", counted_leases)
        net = parse_subnet("10.0.0.0/28")

        def ask(c: sqlite3.Connection) -> tuple[Any, ...]:
            answers = IndexAnswers(c, None, None)
            return (
                answers.who_has((10 << 24) + 4, None),
                answers.who_has((10 << 24) + 9, None),
                answers.free_ranges(net, None),
            )

        answer = overlay.answer_from_copy(conn, rec, found, plan, ask, None)
        monkeypatch.undo()
        store.reconcile()
        real = ask(conn)
    assert answer == real
    assert answer[:2] == ("db-1", "web-3")  # disk still holds db-1: the copy puts it back
    assert (loads[0], listings[0]) == (0, 0)
