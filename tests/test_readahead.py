"""A rebuild's configs read by a forked child (index/readahead.py, disk/forked.py): real
forks, real pipes, real trees and index files. Whatever the child does, the index a rebuild
writes is the one a rebuild reading every config itself writes."""

from __future__ import annotations

import marshal
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import go_write, later
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stress_helpers import assert_matches_disk
from test_hostile import configs

import fleetbox_db
from fleetbox_db import Store
from fleetbox_db.disk.forked import Child
from fleetbox_db.disk.observe import Observation
from fleetbox_db.disk.scan import MemberDir, scan
from fleetbox_db.errors import ConfigError
from fleetbox_db.index import members as members_module
from fleetbox_db.index import readahead
from fleetbox_db.index.readahead import ReadAhead, _observation, _wire
from fleetbox_db.index.reconcile import Reconciler
from fleetbox_db.index.rows import config_values, fixture_rows
from fleetbox_db.records import MemberState
from fleetbox_db.rules.config import decode_config

REPO = Path(fleetbox_db.__file__).resolve().parent.parent
needs_two_cpus = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="a child is started on 2+ CPUs only"
)

#: Configs of every kind a rebuild meets, beside the ones hypothesis makes.
FIXED: dict[str, bytes | None] = {
    "web/web-1": b'{"name": "web-1", "ip": "10.0.0.2", "cpus": 2, "created_at":'
    b' "2024-05-01T12:00:00.123456789+02:00", "fixtures": [{"host_path": "/h",'
    b' "guest_path": "/g", "label": "l", "mode": "ro"}], "zone": {"a": [1, 2.50, null]}}',
    "web/web-2": b'{"name": "web-2", "image": "caf\\u00e9 \xff", "mac": "02:00:00:00:00:01"}',
    "web/web-3": b'{"name": "web-3", "ip": "10.0.0.3"',  # torn: unreadable
    "web/web-4": None,  # configless
    "db/web-5": b'{"name": "web-5"}',  # a stray
    "db/db-1": b'{"NAME": "db-1", "Cpus": 4, "ip": "10.0.0.2"}',  # folded keys, a conflict
}


def make_tree(root: Path, extra: list[bytes]) -> None:
    clusters = root / "clusters"
    for where, data in FIXED.items():
        (clusters / where).mkdir(parents=True)
        if data is not None:
            go_write(clusters / where / "config.json", data)
    for i, data in enumerate(extra):
        member = clusters / "api" / f"api-{i}"
        member.mkdir(parents=True)
        go_write(member / "config.json", data)
    raw = os.fsencode(clusters) + b"/caf\xe9/caf\xe9-1"
    os.makedirs(raw)
    go_write(raw + b"/config.json", b'{"name": "caf\\u00e9-1"}')
    (clusters / "db" / "db-2" / "config.json").mkdir(parents=True)  # not a regular file


#: What differs between two copies of a tree whatever reads them: the files' inode numbers
#: and change times, and the clock's readings.
COPY_COLUMNS = {"ino", "ctime_ns", "verified_ns"}


def rebuilt(root: Path) -> dict[str, Any]:
    """Everything a rebuild of *root* writes, but what differs between copies of a tree."""
    with Store.open(root, clock=later) as store:
        report = store.reconcile()
        state: dict[str, Any] = {
            "report": report,
            "vms": store.vms(),
            "entries": store.entries(),
            "check": repr(store.check()).replace(str(root), "ROOT"),
        }
    conn = sqlite3.connect(root / "index.db")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(members)") if r[1] not in COPY_COLUMNS]
    state["members"] = conn.execute(f"SELECT {', '.join(columns)} FROM members").fetchall()
    state["fixtures"] = conn.execute("SELECT * FROM fixtures").fetchall()
    conn.close()
    return state


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every ReadAhead.take answer in this process: True for an observation."""
    answers: list[bool] = []
    take = ReadAhead.take

    def counted(self: ReadAhead, member: MemberDir) -> Observation | None:
        obs = take(self, member)
        answers.append(obs is not None)
        return obs

    monkeypatch.setattr(ReadAhead, "take", counted)
    return answers


def both_ways(tmp_path: Path, extra: list[bytes], monkeypatch: pytest.MonkeyPatch) -> tuple:
    """(the state a serial rebuild writes, the one read ahead writes) of the same tree."""
    serial, ahead = tmp_path / "serial", tmp_path / "ahead"
    make_tree(serial, extra)
    shutil.copytree(serial, ahead, symlinks=True)
    monkeypatch.setattr(readahead, "MIN_READS", 10**9)
    expected = rebuilt(serial)
    monkeypatch.setattr(readahead, "MIN_READS", 1)
    return expected, rebuilt(ahead)


@needs_two_cpus
def test_a_rebuild_read_ahead_writes_what_a_serial_one_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken: list[bool]
) -> None:
    extra = [b'{"name": "api-%d", "ip": "10.1.0.%d"}' % (i, i + 2) for i in range(600)]
    expected, got = both_ways(tmp_path, extra, monkeypatch)
    assert got == expected
    assert len(taken) == len(extra) + len(FIXED) + 2  # and caf\xe9-1 and db-2
    assert all(taken)
    states = {e.name: e.state for e in got["entries"]}
    assert states["web-3"] == MemberState.UNREADABLE
    assert states["web-4"] == MemberState.CONFIGLESS


@needs_two_cpus
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(extra=st.lists(configs(), max_size=40))
def test_hostile_configs_read_ahead_are_written_as_read_here(
    tmp_path_factory: pytest.TempPathFactory, extra: list[bytes]
) -> None:
    tmp_path = tmp_path_factory.mktemp("tree")
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected, got = both_ways(tmp_path, extra, monkeypatch)
    assert got == expected


@needs_two_cpus
def test_a_child_killed_mid_rebuild_leaves_the_rest_to_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken: list[bool]
) -> None:
    parent = os.getpid()
    read_again = Reconciler._read_again
    count = [0]

    def dies_at_300(self: Reconciler, member: MemberDir, planned: Observation | None) -> Any:
        if os.getpid() != parent:
            count[0] += 1
            if count[0] == 300:  # the first frame (256) is sent, the second never is
                os.kill(os.getpid(), signal.SIGKILL)
        return read_again(self, member, planned)

    monkeypatch.setattr(Reconciler, "_read_again", dies_at_300)
    extra = [b'{"name": "api-%d"}' % i for i in range(600)]
    expected, got = both_ways(tmp_path, extra, monkeypatch)
    assert got == expected
    assert taken[:256] == [True] * 256
    assert not any(taken[256:])  # from the first missing one, the parent read them all


@needs_two_cpus
def test_a_rebuild_that_fails_midway_leaves_no_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken: list[bool]
) -> None:
    """The child holds copies of this process's descriptors (index.lock's flock among
    them): it must not outlive the apply that started it, however that ends."""
    make_tree(tmp_path, [b'{"name": "api-%d"}' % i for i in range(3000)])
    monkeypatch.setattr(readahead, "MIN_READS", 1)

    def fails(conn: sqlite3.Connection, fresh: list[Observation]) -> None:
        raise RuntimeError("a bug, say")

    monkeypatch.setattr(members_module, "insert_members", fails)
    with Store.open(tmp_path) as store, pytest.raises(RuntimeError) as failed:
        store.reconcile()
    assert any(taken)
    assert failed.value.__traceback__ is not None  # which holds apply()'s frame, its locals
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left, running or unreaped


GO_WRITER = r"""
import os, sys, time
root, count = sys.argv[1], int(sys.argv[2])
turn = 0
while not os.path.exists(os.path.join(root, "stop")):
    i = turn % count
    data = b'{"name": "api-%d", "ip": "10.1.%d.%d", "cpus": %d}' % (i, i // 200, i % 200 + 2, turn)
    fd = os.open(f"{root}/clusters/api/api-{i}/config.json", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, data[:20])  # Go's os.WriteFile: truncate, then write; a reader between
    time.sleep(0.0002)  # the two halves meets a torn file
    os.write(fd, data[20:])
    os.close(fd)
    turn += 1
"""


@needs_two_cpus
def test_a_rebuild_read_ahead_beside_a_go_writer_ends_as_disk_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken: list[bool]
) -> None:
    """The child reads configs the Go tool is rewriting in place, torn ones among them:
    what the rebuild records is then reconciled like any read of its own."""
    count = 600
    make_tree(tmp_path, [b'{"name": "api-%d"}' % i for i in range(count)])
    monkeypatch.setattr(readahead, "MIN_READS", 1)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    writer = subprocess.Popen([sys.executable, "-c", GO_WRITER, str(tmp_path), "40"], env=env)
    try:
        with Store.open(tmp_path) as store:
            for _ in range(3):
                store.reconcile(full=True)
                (tmp_path / "index.db").unlink()  # a rebuild each time
    finally:
        (tmp_path / "stop").touch()
        assert writer.wait(timeout=30) == 0
    assert taken.count(True) > count  # the child's reads were used
    with Store.open(tmp_path) as store:
        assert_matches_disk(store, tmp_path, ["10.1.0.0/16", "10.0.0.0/24"])


def members_of(root: Path) -> list[MemberDir]:
    return scan(root / "clusters").members


@needs_two_cpus
def test_observations_of_other_members_are_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path, [b'{"name": "api-%d"}' % i for i in range(10)])
    members = members_of(tmp_path)
    reconciler = Reconciler(tmp_path / "clusters", later, 1)
    monkeypatch.setattr(readahead, "MIN_READS", 1)
    ahead = ReadAhead.start(reconciler.observe, members)
    assert ahead is not None
    assert ahead.take(members[0]) is not None
    assert ahead.take(members[2]) is None  # members[1]'s came next
    assert ahead.take(members[1]) is None  # and nothing after the first refusal


@needs_two_cpus
@pytest.mark.parametrize(
    "frames",
    [[5], [[("web", "web-1")]], [[]], [["not a tuple"]], [[(*["x"] * 9, None)]]],
    ids=["not-a-list", "short-wire", "empty-frame", "not-a-tuple", "other-member"],
)
def test_frames_not_of_observations_are_not_taken(tmp_path: Path, frames: list[Any]) -> None:
    make_tree(tmp_path, [])
    child = Child.start(lambda: frames)
    assert child is not None
    ahead = ReadAhead(child)
    member = members_of(tmp_path)[0]
    assert ahead.take(member) is None
    assert ahead.take(member) is None


def test_too_few_reads_start_no_child(tmp_path: Path) -> None:
    make_tree(tmp_path, [])
    reconciler = Reconciler(tmp_path / "clusters", later, 1)
    assert ReadAhead.start(reconciler.observe, members_of(tmp_path)) is None


def test_no_child_beside_another_thread() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert Child.start(lambda: [1]) is None
    finally:
        stop.set()
        thread.join()


def test_no_child_on_one_cpu() -> None:
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from fleetbox_db.disk.forked import Child\n"
        "print(Child.start(lambda: [1]))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout == "None\n"


@needs_two_cpus
def test_frames_arrive_in_order_and_stop_at_the_first_cut_short() -> None:
    child = Child.start(lambda: [[i] * 1000 for i in range(50)])
    assert child is not None
    assert [frame[0] for frame in child.frames()] == list(range(50))

    def cut() -> Iterator[Any]:
        yield "whole"
        os.write(1, b"")  # stdio is /dev/null in the child: nothing shows
        raise RuntimeError("the child fails after one frame")

    child = Child.start(cut)
    assert child is not None
    assert list(child.frames()) == ["whole"]


@settings(max_examples=300, deadline=None)
@given(data=configs())
def test_an_observation_crosses_the_pipe_as_it_was(data: bytes) -> None:
    try:
        vm = decode_config(data)
    except ConfigError:
        vm = None
    member = MemberDir("api", "api-1", None, None)
    state = MemberState.OK if vm is not None else MemberState.UNREADABLE
    obs = Observation(member.key, state, None, 7, "d1g", vm, True, None if vm else "bad")
    wire = marshal.loads(marshal.dumps(_wire(obs)))  # refuses any str or tuple subclass
    back = _observation(member, wire)
    assert back == obs
    if vm is not None:
        assert back is not None
        assert back.vm is not None
        assert config_values(back.vm) == config_values(vm)
        assert [type(v) for v in config_values(back.vm)] == [type(v) for v in config_values(vm)]
        assert list(fixture_rows(1, back.vm.fixtures)) == list(fixture_rows(1, vm.fixtures))
