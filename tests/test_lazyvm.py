"""vms() returns VMs made when first read (index/lazyvm.py, issue 15): a first vms() of a big
store made every record and VM though callers mostly read a few. What it returns must still
be a VM in everything a caller can see, and each must be its own. Real stores, real files.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import pickle
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import config, later, put
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_vmblob import RICH, on_disk, settle, sql

import fleetbox_db.index.vmcache as vmcache_module
from fleetbox_db import VM, Fixture, IndexUnavailableError, Store
from fleetbox_db.index import vmblob
from fleetbox_db.rules.config import encode_config

NAMES = [f"web-{i}" for i in range(7)]


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the VMs made from records (the real function still runs)."""
    names: list[str] = []
    real = vmcache_module._vm

    def counted(record: Any) -> VM:
        names.append(record[0])
        return real(record)

    monkeypatch.setattr(vmcache_module, "_vm", counted)
    return names


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the saved chunks whose records were decoded."""
    sizes: list[int] = []
    real = vmblob.Chunk.values

    def counted(chunk: vmblob.Chunk) -> Any:
        sizes.append(chunk.size)
        return real(chunk)

    monkeypatch.setattr(vmblob.Chunk, "values", counted)
    return sizes


@pytest.fixture
def root(seeded_root: Path) -> Path:
    for i, name in enumerate(NAMES):
        put(seeded_root, name, ip=f"10.0.0.{i + 2}")
    put(seeded_root, "rich-1", data=RICH)
    return seeded_root


def listed(root: Path) -> Store:
    store = Store.open(root, clock=later)
    store.list()
    return store


# -- made when first read ---------------------------------------------------------------------


def test_a_vm_read_from_rows_is_made_when_first_read(root: Path, made: list[str]) -> None:
    with listed(root) as store:
        vms = store.vms()
        assert made == []
        assert vms[3].ip == "10.0.0.4"  # rich-1 first: Go List() order
        assert made == ["web-2"]
        assert vms[3].cpus == 2
        assert vms[3].name == "web-2"
        assert made == ["web-2"]  # filled once
        assert vms == on_disk(root)  # comparing reads every one


def test_saved_records_are_decoded_a_chunk_at_a_time_when_a_vm_of_it_is_read(
    root: Path, monkeypatch: pytest.MonkeyPatch, made: list[str], decoded: list[int]
) -> None:
    monkeypatch.setattr(vmblob, "CHUNK", 3)
    settle(root)
    assert sql(root, "SELECT count(*) FROM vm_records") == [(3,)]
    made.clear()
    with Store.open(root) as store:
        vms = store.vms()
        assert (made, decoded) == ([], [])
        assert vms[4].name == "web-3"  # the second chunk
        assert (made, decoded) == (["web-3"], [3])
        assert [vm.name for vm in vms[3:6]] == ["web-2", "web-3", "web-4"]
        assert decoded == [3]
        assert vms == on_disk(root)
        assert decoded == [3, 3, 2]


def test_a_vm_read_after_its_store_closed_is_whole(root: Path) -> None:
    settle(root)
    for store in (Store.open(root), listed(root)):  # saved records, then records from rows
        with store:
            vms = store.vms()
        assert vms == on_disk(root)
        rich = next(vm for vm in vms if vm.name == "rich-1")
        assert encode_config(rich) == RICH


def test_readers_in_threads_all_see_the_whole_vm(root: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(vmblob, "CHUNK", 2)
    settle(root)
    with Store.open(root) as store:
        vms = store.vms()
    expected = on_disk(root)
    seen: list[list[str]] = []
    start = threading.Barrier(8)

    def read() -> None:
        start.wait()
        seen.append([encode_config(vm).decode() for vm in vms])

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [[encode_config(vm).decode() for vm in expected]] * 8


def test_a_vm_first_read_after_a_change_shows_the_config_of_its_answer(root: Path) -> None:
    """Like any VM, one from vms() is the config as that call found it: a change on disk
    (and the store's cache moving on) afterwards does not reach it when it is first read."""
    from helpers import config, config_path, go_write

    for saved in (False, True):
        if saved:
            settle(root)
        with Store.open(root, clock=later) as store:
            vms = store.vms()
            go_write(config_path(root, "web-2"), config("web-2", ip="10.0.0.99", cpus=9))
            assert {vm.name: vm.cpus for vm in store.vms()}["web-2"] == 9  # the cache moved on
            old = next(vm for vm in vms if vm.name == "web-2")
            assert (old.cpus, old.ip) == (2, "10.0.0.4")
        go_write(config_path(root, "web-2"), config("web-2", ip="10.0.0.4"))


def test_every_call_and_every_vm_is_its_own(root: Path) -> None:
    with listed(root) as store:
        first, second = store.vms(), store.vms()
        rich1, rich2 = first[0], second[0]
        assert rich1.name == "rich-1"
        assert rich1 is not rich2
        rich1.fixtures.append(Fixture("/x", "/y", "z"))
        rich1.fixtures[0].extra["mode"] = "rw"
        rich1.extra["alpha"] = "changed"
        assert rich2 == on_disk(root)[0]
        assert store.vms()[0] == on_disk(root)[0]


# -- a VM in everything a caller sees ---------------------------------------------------------


@pytest.fixture
def pair(root: Path, made: list[str]) -> tuple[VM, VM]:
    """(rich-1 from vms(), not yet read; the same VM decoded from its file)."""
    with listed(root) as store:
        lazy = store.vms()[0]
    assert made == []
    return lazy, on_disk(root)[0]


def test_it_compares_equal_either_way(pair: tuple[VM, VM]) -> None:
    lazy, plain = pair
    assert isinstance(lazy, VM)
    assert plain == lazy
    assert lazy == plain
    assert (lazy != plain) is False
    other = copy.copy(plain)
    other.cpus = 99
    assert lazy != other
    assert other != lazy
    assert lazy != "rich-1"
    with pytest.raises(TypeError):
        hash(lazy)


@pytest.mark.parametrize(
    "as_plain",
    [
        pytest.param(repr, id="repr"),
        pytest.param(vars, id="vars"),
        pytest.param(str, id="str"),
        pytest.param(dataclasses.asdict, id="asdict"),
        pytest.param(dataclasses.astuple, id="astuple"),
        pytest.param(lambda vm: [f.name for f in dataclasses.fields(vm)], id="fields"),
        pytest.param(encode_config, id="encode_config"),
        pytest.param(lambda vm: vm.__match_args__, id="match_args"),
    ],
)
def test_it_reads_as_the_vm(pair: tuple[VM, VM], as_plain: Any) -> None:
    lazy, plain = pair
    assert as_plain(lazy) == as_plain(plain)


@pytest.mark.parametrize(
    "duplicate",
    [
        pytest.param(copy.copy, id="copy"),
        pytest.param(copy.deepcopy, id="deepcopy"),
        pytest.param(lambda vm: pickle.loads(pickle.dumps(vm)), id="pickle"),
        pytest.param(lambda vm: pickle.loads(pickle.dumps(vm, protocol=0)), id="pickle-0"),
    ],
)
def test_a_copy_is_a_plain_vm(pair: tuple[VM, VM], duplicate: Any) -> None:
    lazy, plain = pair
    clone = duplicate(lazy)
    assert type(clone) is VM
    assert clone == plain
    assert encode_config(clone) == encode_config(plain)
    assert clone.extra is not lazy.extra or duplicate is copy.copy


def test_a_pickle_holds_no_records(root: Path) -> None:
    with listed(root) as store:
        vms = store.vms()
    plain = len(pickle.dumps(on_disk(root)[0]))
    assert len(pickle.dumps(vms[0])) < plain + 100  # not the cache's records of every member


def test_a_field_assigned_before_the_first_read_keeps_its_value(pair: tuple[VM, VM]) -> None:
    lazy, plain = pair
    lazy.ip = "10.9.9.9"
    lazy.created_at = when = datetime(2030, 1, 1, tzinfo=UTC)
    assert lazy.ip == "10.9.9.9"
    assert lazy.created_at is when
    assert lazy.name == plain.name
    assert lazy.fixtures == plain.fixtures
    assert encode_config(lazy) == encode_config(
        dataclasses.replace(plain, ip="10.9.9.9", created_at=when)
    )


def test_deleting_a_field_before_the_first_read_deletes_it(pair: tuple[VM, VM]) -> None:
    lazy, plain = pair
    del lazy.extra
    assert lazy.name == plain.name
    with pytest.raises(AttributeError):
        lazy.extra  # noqa: B018 - a field with a default factory has no class default
    del lazy.cpus
    assert lazy.cpus == VM.cpus  # the class default, as for a VM


def test_a_whole_dict_assigned_is_the_vm(pair: tuple[VM, VM]) -> None:
    lazy, plain = pair
    lazy.__dict__ = dict(vars(plain), cpus=12)
    assert lazy.cpus == 12
    assert lazy == dataclasses.replace(plain, cpus=12)


def test_replace_makes_a_whole_vm(pair: tuple[VM, VM]) -> None:
    lazy, plain = pair
    changed = dataclasses.replace(lazy, cpus=8)
    assert changed == dataclasses.replace(plain, cpus=8)
    assert changed.cpus == 8
    assert lazy.cpus == plain.cpus


# -- a forged chunk ---------------------------------------------------------------------------


def rechecked(body: bytes) -> bytes:
    import zlib

    return zlib.crc32(body).to_bytes(4, "little") + body


def forged_chunk(rows: Any, values: Any, size: int) -> bytes:
    import marshal

    return rechecked(marshal.dumps((2, 1, size, marshal.dumps(rows), marshal.dumps(values))))


def test_a_forged_chunk_s_vm_raises_a_typed_error_naming_the_file(root: Path) -> None:
    """A chunk with a right checksum and this code's format, yet records of another shape,
    cannot be told from a good one until they are decoded: reading its VM raises a typed
    error that names the index and what to do; a change falls back to the rows."""
    settle(root)
    [(blob,)] = sql(root, "SELECT blob FROM vm_records WHERE id = 0")
    rows = vmblob.decode(blob, 1)
    assert rows is not None
    forged = forged_chunk(rows.rows(), [("short",)] * rows.size, rows.size)
    sql(root, "UPDATE vm_records SET blob = ? WHERE id = 0", forged)
    with Store.open(root) as store:
        vms = store.vms()
        with pytest.raises(IndexUnavailableError, match=r"index\.db.*vm_records.*delete"):
            vms[0].name  # noqa: B018
        put(root, "web-9", ip="10.0.0.30")
        assert store.vms() == on_disk(root)


# -- entries() takes its VMs from the same records ---------------------------------------------


@pytest.fixture
def from_columns(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The row ids whose VMs entries() read from their columns (the real function runs)."""
    import fleetbox_db.index.answers as answers_module

    calls: list[list[int]] = []
    real = answers_module._vms_of

    def counted(conn: Any, ids: list[int]) -> Any:
        calls.append(list(ids))
        return real(conn, ids)

    monkeypatch.setattr(answers_module, "_vms_of", counted)
    return calls


def readable_on_disk(root: Path) -> dict[str, VM]:
    from fleetbox_db import ConfigError
    from fleetbox_db.rules.config import decode_config

    found = {}
    for path in (root / "clusters").glob("*/*/config.json"):
        with contextlib.suppress(ConfigError):
            found[path.parent.name] = decode_config(path.read_bytes())
    return found


def test_entries_take_every_ok_vm_from_the_saved_records(
    root: Path, from_columns: list[list[int]], decoded: list[int]
) -> None:
    """A new process's entries(): the saved records give every 'ok' member's VM; only the
    unreadable member's last good config is read from its columns."""
    put(root, "db-1", data=b'{"name": "db-1", "ip": "10.0.0.50"}')
    with Store.open(root, clock=later) as store:
        store.list()
    put(root, "db-1", data=b"{ torn")  # unreadable now: its row keeps the last good config
    settle(root)
    with Store.open(root, clock=later) as store:
        store.list()
        found = {e.name: e for e in store.entries()}
    assert decoded  # the VMs came from the saved chunks
    assert len(from_columns) == 1
    assert len(from_columns[0]) == 1  # db-1's last good config alone
    assert found["db-1"].state == "unreadable"
    assert found["db-1"].vm is not None
    assert found["db-1"].vm.ip == "10.0.0.50"
    assert {n: e.vm for n, e in found.items() if n != "db-1"} == readable_on_disk(root)
    assert type(found["web-1"].vm) is VM  # made whole: `ls` reads every field of each


def test_entries_after_changes_elsewhere_show_disk(
    root: Path, from_columns: list[list[int]]
) -> None:
    settle(root)
    with Store.open(root, clock=later) as store:
        assert [e.vm for e in store.entries()] == on_disk(root)
        with Store.open(root, clock=later) as other:
            other.save(VM("web-3", cpus=7, ip="10.0.0.5"))
            other.delete("web-4")
            other.create(VM("new-1", ip="10.0.0.60"))
        assert [e.vm for e in store.entries()] == on_disk(root)
    assert all(ids == [] for ids in from_columns)  # every VM from a record


def test_entries_beside_a_forged_chunk_read_the_columns(root: Path) -> None:
    settle(root)
    [(blob,)] = sql(root, "SELECT blob FROM vm_records WHERE id = 0")
    chunk = vmblob.decode(blob, 1)
    assert chunk is not None
    forged = forged_chunk([("not", "pairs", "!")] * chunk.size, chunk.values(), chunk.size)
    sql(root, "UPDATE vm_records SET blob = ? WHERE id = 0", forged)
    with Store.open(root) as store:
        assert [e.vm for e in store.entries()] == on_disk(root)


def test_entry_makes_only_the_vms_of_its_name(
    root: Path, made: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`show NAME` asks entry(NAME): the member directories of that name, not every one."""
    import fleetbox_db.index.answers as answers_module

    put(root, "web-1", cluster="db", ip="10.0.0.70")  # a stray copy of web-1
    settle(root)
    calls: list[str] = []
    real = answers_module.vm_from_row

    def counted(row: Any, fixtures: Any) -> VM:
        calls.append(row[0])
        return real(row, fixtures)

    monkeypatch.setattr(answers_module, "vm_from_row", counted)
    with Store.open(root, clock=later) as store:
        entry = store.entry("web-1")
        stray = store.entry("db/web-1")
    assert entry.vm is not None
    assert (entry.cluster, entry.state, entry.vm.ip) == ("web", "ok", "10.0.0.3")
    assert stray.vm is not None
    assert (stray.cluster, stray.state, stray.vm.ip) == ("db", "stray", "10.0.0.70")
    assert made == []  # no VM made from the cache's records
    assert calls == ["web-1"] * 4  # both directories' rows, each call


def test_entries_of_one_cluster_are_those_of_every_entry_and_make_only_theirs(
    root: Path, made: list[str]
) -> None:
    put(root, "web-1", cluster="db", ip="10.0.0.3")  # a stray copy: its IP clashes with web-1's
    put(root, "db-2", data=b"{ torn")
    put(root, "db-3", ip="10.0.0.5")  # claims web-3's IP: both are shown in conflict
    settle(root)
    with Store.open(root, clock=later) as store:
        every = store.entries()
        made.clear()
        for cluster in ("web", "db", "rich", "none"):
            assert store.entries(cluster) == [e for e in every if e.cluster == cluster]
        assert made == []  # no cluster's VMs from the cache: each cluster's rows alone
    assert {e.state for e in every} >= {"ok", "conflict", "stray", "unreadable"}


_FIELDS = [f.name for f in dataclasses.fields(VM)]
_VALUES = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none(), st.just([]))
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(_FIELDS), _VALUES),
        st.tuples(st.just("del"), st.sampled_from(_FIELDS), st.none()),
        st.tuples(st.just("read"), st.sampled_from(_FIELDS), st.none()),
    ),
    max_size=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
def test_any_changes_before_and_after_the_first_read_leave_what_a_vm_would(
    root: Path, ops: list[tuple[str, str, Any]]
) -> None:
    """Sets, deletes and reads of any fields, in any order from the start: the VM from
    vms() ends as the decoded VM given the same changes (a read that fails on one fails
    on the other)."""
    with listed(root) as store:
        lazy = store.vms()[0]
    plain = on_disk(root)[0]
    for op, name, value in ops:
        for vm in (lazy, plain):
            if op == "set":
                setattr(vm, name, value)
            elif op == "del":
                with contextlib.suppress(AttributeError):
                    delattr(vm, name)
        if op == "read":
            outcomes = []
            for vm in (lazy, plain):
                try:
                    outcomes.append(getattr(vm, name))
                except AttributeError:
                    outcomes.append(AttributeError)
            assert outcomes[0] == outcomes[1]
    assert vars(lazy) == vars(plain)


def test_entry_and_entries_of_a_cluster_reach_names_that_are_not_utf8(root: Path) -> None:
    """A directory the Go tool made with a Latin-1 name is stored as bytes (index/names.py):
    asking for it by its surrogate-escaped str finds it."""
    import os

    from fleetbox_db import cluster_name

    raw = os.fsdecode(b"w\xe9b-1")
    put(root, raw, data=config("web-9", ip="10.0.0.77"))
    with Store.open(root, clock=later) as store:
        store.list()
        found = store.entry(raw)
        every = store.entries()
        of_cluster = store.entries(cluster_name(raw))
    assert found.name == raw
    assert found.vm is not None
    assert found.vm.ip == "10.0.0.77"
    assert of_cluster == [e for e in every if e.cluster == cluster_name(raw)]
    assert [e.name for e in of_cluster] == [raw]
