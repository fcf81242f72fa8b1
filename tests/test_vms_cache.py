"""vms() of a Store that has only listed, after changes made behind its back: the records
it reads (all, or a few by id) are what disk holds. Real files and Stores only.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from helpers import config, config_path, go_write, later, put
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from internals import index_connection

from fleetbox_db import VM, Store
from fleetbox_db.disk.fallback import DiskAnswers
from fleetbox_db.disk.scan import Scan, scan
from fleetbox_db.index.vmcache import _row_ids
from fleetbox_db.rules.config import decode_config


def on_disk(root: Path) -> list[VM]:
    """Every member's config decoded from disk, in List() order."""
    paths = sorted((root / "clusters").glob("*/*/config.json"), key=lambda p: p.parts[-3:])
    return [decode_config(p.read_bytes()) for p in paths]


def first_vms(root: Path) -> list[VM]:
    """vms() of a Store that has only listed, as a new process has it."""
    with Store.open(root, clock=later) as store:
        store.list()
        return store.vms()


@pytest.fixture
def fleet(seeded_root: Path) -> Path:
    for i in range(12):
        put(seeded_root, f"web-{i}", ip=f"10.0.0.{i + 2}")
    put(seeded_root, "db", data=config("db", cpus=8).replace(b'"db"', b'"d\\u00e9"', 1))
    return seeded_root


def test_changes_made_meanwhile_are_read(fleet: Path) -> None:
    first_vms(fleet)
    put(fleet, "web-3", ip="10.0.9.9")
    (fleet / "clusters" / "web" / "web-4" / "config.json").unlink()
    put(fleet, "new", ip="10.0.8.8")
    assert first_vms(fleet) == on_disk(fleet)
    assert first_vms(fleet) == on_disk(fleet)


def test_returned_vms_are_fresh_objects(fleet: Path) -> None:
    with Store.open(fleet, clock=later) as store:
        store.list()
        first = store.vms()
        first[0].fixtures.append(first[0].fixtures[0] if first[0].fixtures else None)  # type: ignore[arg-type]
        first[0].cpus = 99
        assert store.vms() == on_disk(fleet)


def test_a_go_write_of_the_same_name_is_seen(fleet: Path) -> None:
    first_vms(fleet)
    go_write(fleet / "clusters" / "web" / "web-5" / "config.json", config("web-5", cpus=4))
    assert first_vms(fleet) == on_disk(fleet)


def test_many_changed_rows_are_read_by_id_in_chunks(seeded_root: Path) -> None:
    """More than one IN list's worth of changed rows, fewer than half: read in chunks."""
    for i in range(1300):
        put(seeded_root, f"n{i:04d}", ip=f"10.1.{i // 250}.{i % 250 + 2}")
    with Store.open(seeded_root, clock=later) as store:
        store.list()
        assert store.vms() == on_disk(seeded_root)
        for i in range(0, 1200, 2):  # 600 rewritten
            put(seeded_root, f"n{i:04d}", ip=f"10.2.{i // 250}.{i % 250 + 2}")
        assert store.vms() == on_disk(seeded_root)


@pytest.mark.parametrize(
    "ask",
    [
        lambda s: s.list(),
        lambda s: s.vms(),
        lambda s: s.who_has("10.0.0.2"),
        lambda s: s.free_ips("10.0.0.0/28"),
        lambda s: s.create(VM("new-1")),
        lambda s: s.reconcile(),
    ],
    ids=["list", "vms", "who_has", "free_ips", "create", "reconcile"],
)
def test_no_scan_outlives_its_answer(fleet: Path, ask: Any) -> None:
    """A Store keeps its recorded scan of the index, never the scan of disk an answer made:
    kept, it would be a second one alive during the next (about 40 MB at 100,000 members,
    on top of peak RSS)."""
    with Store.open(fleet, clock=later) as store:
        store.list()
        put(fleet, "web-3", ip="10.0.0.40")  # a change to plan, read and record
        ask(store)
        gc.collect()
        assert [o for o in gc.get_objects() if type(o) is Scan] == []


@pytest.mark.parametrize(
    "ask",
    [
        lambda s: s.list(),
        lambda s: s.members("web"),
        lambda s: s.who_has("10.0.0.2"),
        lambda s: s.free_ips("10.0.0.0/28"),
    ],
    ids=["list", "members", "who_has", "free_ips"],
)
def test_an_answer_from_a_settled_store_starts_no_collection(seeded_root: Path, ask: Any) -> None:
    """The scan's tuples (two per member) are made with the collector paused and freed
    before it resumes: else the first collection after visits them all, a twentieth of
    list() at 100,000 members."""
    for i in range(600):
        put(seeded_root, f"web-{i}", ip=f"10.0.{i // 200 + 1}.{i % 200 + 2}")
    with Store.open(seeded_root, clock=later) as store:
        store.list()
        ask(store)
        collections: list[int] = []

        def count(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                collections.append(info["generation"])

        gc.collect()
        gc.callbacks.append(count)
        try:
            ask(store)
        finally:
            gc.callbacks.remove(count)
        assert collections == []


@pytest.mark.parametrize(
    "ask",
    [
        lambda s: s.list(),
        lambda s: s.vms(),
        lambda s: s.entries(),
        lambda s: s.who_has("10.0.0.2"),
        lambda s: s.free_ips("10.0.0.0/28"),
    ],
    ids=["list", "vms", "entries", "who_has", "free_ips"],
)
def test_answers_beside_a_config_caught_mid_write_leave_no_cyclic_garbage(
    fleet: Path, ask: Any
) -> None:
    """A config that does not parse and changed within the last tick is read again on every
    answer (a Go-style writer's truncate): none of those reads may leave a reference cycle,
    which would keep the answer's frames and its scan alive until a collection (beside such
    a writer: 3x the collector's cost per answer, measured)."""
    torn = config_path(fleet, "web-5")
    torn.write_bytes(b'{"name": "web-5", "cpus": ')  # now: within the tick, so read again
    with Store.open(fleet) as store:
        ask(store)
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                ask(store)
            assert gc.collect() == 0
        finally:
            gc.enable()


def test_vms_share_the_created_text_yet_each_writes_its_own(fleet: Path) -> None:
    """VMs built from one cached record share its immutable created text and datetime; a VM
    given a new created_at writes the new one, the others still write the text the file
    holds."""
    from datetime import UTC, datetime

    from fleetbox_db.rules.config import encode_config

    with Store.open(fleet, clock=later) as store:
        first, second = store.vms(), store.vms()
        assert first[0]._created_at_raw[0] is second[0]._created_at_raw[0]
        assert first[0].created_at is second[0].created_at
        text = first[0]._created_at_raw[0]
        first[0].created_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert b'"created_at": "2030-01-02T03:04:05Z"' in encode_config(first[0])
        assert f'"created_at": "{text}"'.encode() in encode_config(second[0])
        assert store.vms()[0]._created_at_raw[0] == text


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "rewrite", "break", "remove", "remove-config", "stray"]),
        st.sampled_from(["web-1", "web-2", "web-10", "db", "db-1", "cache-1", "é-1", "a"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS, batch=st.integers(1, 4))
def test_the_row_list_merged_from_changes_is_the_one_read_whole(
    steps: list[tuple[str, str]], batch: int
) -> None:
    """A Store's vms() beside another Store that records changes: each answer merges the
    rows changed since its last one into its row list (VMCache._merged) instead of reading
    every row id, and must equal what reading them all, and disk, give."""
    top = Path(tempfile.mkdtemp())
    try:
        root = top / "fleetbox"
        for i in range(6):
            put(root, f"web-{i}", ip=f"10.0.0.{i + 2}")
        put(root, "db", ip="10.0.1.2")
        with Store.open(root, clock=later) as reader, Store.open(root, clock=later) as writer:
            reader.list()
            reader.vms()  # from the first read of every row: no keys yet
            put(root, "web-0", ip="10.0.9.9")
            writer.list()
            reader.vms()  # every row id read again, with the keys
            for at in range(0, len(steps), batch):
                for action, name in steps[at : at + batch]:
                    change(root, action, name)
                writer.list()  # records the changes: the reader's next answer merges them
                assert reader.vms() == writer.vms() == on_disk_ok(root)
                cache = reader._mirror._vms
                conn = index_connection(reader)
                assert cache._keys is not None  # merged: the names are all UTF-8
                assert (cache._rows, cache._keys) == _row_ids(conn)
    finally:
        shutil.rmtree(top)


def change(root: Path, action: str, name: str) -> None:
    path = config_path(root, name)
    if action == "put":
        put(root, name, ip="10.0.2.2")
    elif action == "rewrite" and path.exists():
        put(root, name, ip="10.0.3.3", data=config(name, cpus=7))
    elif action == "break" and path.exists():
        put(root, name, data=b'{"name": ')
    elif action == "remove" and path.parent.exists():
        shutil.rmtree(path.parent)
    elif action == "remove-config" and path.exists():
        path.unlink()
    elif action == "stray":
        put(root, name, cluster="zz")  # a copy in a cluster its name does not say


def on_disk_ok(root: Path) -> list[VM]:
    """vms() as disk alone answers it (no index)."""
    clusters = root / "clusters"
    return DiskAnswers(clusters, scan(clusters), later).vms()
