"""A Go tool re-saving configs in place beside readers (issue 12): what a reader writes.

Go's os.WriteFile truncates a config and writes it again in place. Readers beside such a
writer must answer right without turning into writers: a rewrite of the same bytes is not
recorded until it settles, and a config caught between the truncate and the write is read
again before it counts as unreadable.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest
from helpers import go_write, later, put

from fleetbox_db import Store
from fleetbox_db.disk import observe
from fleetbox_db.disk.scan import scan
from fleetbox_db.index.reconcile import Reconciler
from fleetbox_db.records import MemberState


def row_of(root: Path, name: str) -> tuple[int, ...]:
    """The member row's signature, verification time and change sequence."""
    with contextlib.closing(sqlite3.connect(f"file:{root / 'index.db'}?mode=ro", uri=True)) as c:
        row = c.execute(
            "SELECT ino, size, mtime_ns, ctime_ns, verified_ns, seq FROM members WHERE name = ?",
            (name,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_same_bytes_rewritten_in_place_are_answered_without_a_write(seeded_root: Path) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2")
    put(seeded_root, "web-2", "10.0.0.3")
    with Store.open(seeded_root) as store:
        store.list()
        recorded = row_of(seeded_root, "web-1")
        go_write(path, path.read_bytes())  # new mtime and ctime, same bytes
        assert [vm.ip for vm in store.vms()] == ["10.0.0.2", "10.0.0.3"]
        assert store.who_has("10.0.0.2") == "web-1"
        assert store.list() == ["web-1", "web-2"]
        # Nothing recorded: a row written now would be racy and read again anyway.
        assert row_of(seeded_root, "web-1") == recorded
    st = path.stat()
    with Store.open(seeded_root, clock=later) as store:  # a tick later: settled, recorded
        store.list()
    ino, size, mtime_ns, ctime_ns, *_ = row_of(seeded_root, "web-1")
    assert (ino, size, mtime_ns, ctime_ns) == (
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )


def test_changed_bytes_rewritten_in_place_are_recorded_at_once(seeded_root: Path) -> None:
    path = put(seeded_root, "web-1", "10.0.0.2")
    with Store.open(seeded_root) as store:
        store.list()
        go_write(path, path.read_bytes().replace(b"10.0.0.2", b"10.0.0.7"))
        assert store.who_has("10.0.0.7") == "web-1"
        assert store.who_has("10.0.0.2") is None
    assert row_of(seeded_root, "web-1")[1] == path.stat().st_size


def test_a_config_caught_mid_write_is_read_again(root: Path) -> None:
    path = put(root, "web-1", "10.0.0.2")
    whole = path.read_bytes()
    go_write(path, whole[: len(whole) // 2])  # the writer truncated and wrote half
    reads = 0

    def clock() -> int:  # stamped before each read: the writer finishes before the second
        nonlocal reads
        reads += 1
        if reads == 2:
            go_write(path, whole)
        return time.time_ns()

    member = scan(root / "clusters").members[0]
    obs = Reconciler(root / "clusters", clock).observe(member)
    assert obs.vm is not None
    assert obs.vm.ip == "10.0.0.2"
    assert reads == 2


def test_a_config_that_stays_broken_is_unreadable_after_a_bounded_retry(root: Path) -> None:
    path = put(root, "web-1", "10.0.0.2")
    go_write(path, b'{"name": "web-1", ')
    reads = 0

    def clock() -> int:
        nonlocal reads
        reads += 1
        return time.time_ns()

    member = scan(root / "clusters").members[0]
    obs = Reconciler(root / "clusters", clock).observe(member)
    assert obs.state is MemberState.UNREADABLE
    assert reads == 1 + len(observe.TORN_PAUSES)
    reads = 0

    def hour_later() -> int:
        nonlocal reads
        reads += 1
        return later()

    obs = Reconciler(root / "clusters", hour_later).observe(member)  # settled: broken for good
    assert obs.state is MemberState.UNREADABLE
    assert reads == 1


def test_answers_that_show_no_config_do_not_wait_for_one_caught_mid_write(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """list(), members(), who_has() and free_ips() show names and addresses. A config
    caught mid-write would count as unreadable, which keeps its row's last good config
    and so every address: they answer from the row at once and record nothing (beside a
    Go writer re-saving 8 configs, the pauses were a tenth of every reader's call). vms()
    and entries() show the config itself: they read it again after the pauses, as before."""
    put(root, "web-1", "10.0.0.2")
    path = put(root, "web-2", "10.0.0.3")
    with Store.open(root, clock=later) as store:
        store.list()
    recorded = row_of(root, "web-2")
    whole = path.read_bytes()
    go_write(path, whole[: len(whole) // 2])  # the writer truncated and wrote half
    pauses: list[float] = []
    monkeypatch.setattr(observe.time, "sleep", pauses.append)
    with Store.open(root) as store:
        assert store.list() == ["web-1", "web-2"]
        assert store.members("web") == ["web-1", "web-2"]
        assert store.who_has("10.0.0.3") == "web-2"
        assert "10.0.0.3" not in store.free_ips("10.0.0.0/29")
        assert pauses == []
        assert row_of(root, "web-2") == recorded
        assert [vm.name for vm in store.vms()] == ["web-1"]  # unreadable now, after pauses
        assert pauses == list(observe.TORN_PAUSES)
        assert [e.state for e in store.entries()] == [MemberState.OK, MemberState.UNREADABLE]


def test_configs_caught_mid_write_together_pause_together(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three configs caught mid-write in one answer are read again after one round of
    pauses, not one round each: beside a Go writer re-saving 8 configs, vms() met two or
    three at a time, and their pauses in a row were up to 24 ms of one call."""
    paths = [put(root, f"web-{i}", f"10.0.0.{i + 1}") for i in (1, 2, 3)]
    put(root, "web-4", "10.0.0.5")
    with Store.open(root, clock=later) as store:
        store.list()
    for path in paths:
        whole = path.read_bytes()
        go_write(path, whole[: len(whole) // 2])
    pauses: list[float] = []
    monkeypatch.setattr(observe.time, "sleep", pauses.append)
    with Store.open(root) as store:
        assert [vm.name for vm in store.vms()] == ["web-4"]
    assert pauses == list(observe.TORN_PAUSES)
