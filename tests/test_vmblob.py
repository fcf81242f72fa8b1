"""VM records saved in the index (index/vmblob.py, issue 15): a new process's first vms()
decodes them instead of reading every row, only while the rows are exactly those they were
saved from, and falls back to the rows for any chunk it did not write itself. Real files,
real SQLite, a real process holding the lock.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers import config, config_path, go_write, later, put
from index_lock import write_locked
from internals import index_connection

import fleetbox_db.index.vmcache as vmcache_module
from fleetbox_db import VM, Fixture, Store
from fleetbox_db.index import vmblob
from fleetbox_db.rules.config import decode_config, encode_config

NAMES = [f"web-{i}" for i in range(7)]

#: A config using every part a record keeps: unknown keys in file order (nested), a fixture
#: with unknown keys, a created_at with nanoseconds and an offset, and Go 1.26's escape for
#: an invalid byte (the spelling column).
RICH: bytes = b"""{
  "name": "rich-1",
  "mac": "52:54:00:12:34:56",
  "cpus": 4,
  "memory_mb": 8192,
  "disk_mb": 40960,
  "image": "deb\\ufffdian-12",
  "created_at": "2024-03-01T00:15:09.007198371+01:00",
  "fixtures": [
    {
      "host_path": "/src",
      "guest_path": "/mnt/src",
      "label": "src",
      "mode": "ro"
    }
  ],
  "ip": "10.0.0.40",
  "zeta": {
    "b": [
      1,
      2.5,
      null
    ],
    "a": true
  },
  "alpha": "x"
}"""


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the reads of every 'ok' row's record (the real function still runs)."""
    calls: list[int] = []
    real = vmcache_module._read_records

    def counted(conn: sqlite3.Connection, ids: Any = None) -> Any:
        calls.append(1)
        return real(conn, ids)

    monkeypatch.setattr(vmcache_module, "_read_records", counted)
    return calls


def settle(root: Path) -> None:
    """Settle every row, record the digest, then save the records, as a reader does."""
    with Store.open(root, clock=later) as store:
        store.list()  # records the rows, settled
        store.list()  # records the digest
        store.vms()  # saves the records


@pytest.fixture
def saved_root(seeded_root: Path) -> Path:
    for i, name in enumerate(NAMES):
        put(seeded_root, name, ip=f"10.0.0.{i + 2}")
    put(seeded_root, "rich-1", data=RICH)
    settle(seeded_root)
    assert saved_seq(seeded_root) == member_seq(seeded_root)
    return seeded_root


def sql(root: Path, statement: str, *params: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(root / "index.db")
    try:
        with conn:
            return conn.execute(statement, params).fetchall()
    finally:
        conn.close()


def saved_seq(root: Path) -> int | None:
    rows = sql(root, "SELECT DISTINCT seq FROM vm_records")
    assert len(rows) <= 1
    return rows[0][0] if rows else None


def member_seq(root: Path) -> int:
    return int(sql(root, "SELECT value FROM member_seq")[0][0])


def on_disk(root: Path) -> list[VM]:
    paths = sorted((root / "clusters").glob("*/*/config.json"), key=lambda p: p.parts[-3:])
    return [decode_config(p.read_bytes()) for p in paths]


def first_vms(root: Path) -> list[VM]:
    with Store.open(root) as store:
        return store.vms()


# -- used exactly when the rows are those saved ----------------------------------------------


def test_a_new_store_decodes_the_saved_records_and_reads_no_row(
    saved_root: Path, reads: list[int]
) -> None:
    found = first_vms(saved_root)
    assert reads == []
    assert found == on_disk(saved_root)
    sql(saved_root, "DELETE FROM vm_records")
    from_rows = first_vms(saved_root)
    assert reads == [1]
    # The same records to the byte: created_at's text, spellings, unknown keys in order.
    assert [encode_config(vm) for vm in found] == [encode_config(vm) for vm in from_rows]
    rich = next(vm for vm in found if vm.name == "rich-1")
    assert encode_config(rich) == RICH


def test_equal_values_are_one_object_whichever_way_the_records_were_read(
    seeded_root: Path, reads: list[int]
) -> None:
    """Members mostly share their image, sizes, fixture guest paths and labels: the VMs hold
    each such value once (from the rows, and from saved chunks, where marshal writes a
    repeat as a reference), yet every VM and fixture is its own."""
    zone = timezone(timedelta(hours=1))
    for i in range(6):
        vm = VM(
            f"web-{i}", image="ubuntu-24.04", memory_mb=4096, disk_mb=20480,
            created_at=datetime(2024, 3, 1, 0, 0, i, 31, tzinfo=zone),
            fixtures=[Fixture(f"/home/dev/web-{i}", "/mnt/src", "src")], ip=f"10.0.0.{i + 2}",
        )  # fmt: skip
        put(seeded_root, vm.name, data=encode_config(vm))
    settle(seeded_root)  # from the rows, and saves them
    from_chunks = first_vms(seeded_root)
    assert reads == [1]
    sql(seeded_root, "DELETE FROM vm_records")
    from_rows = first_vms(seeded_root)
    assert reads == [1, 1]
    for found in (from_chunks, from_rows):
        assert found == on_disk(seeded_root)
        a, b = found[0], found[1]
        assert a.image is b.image
        assert a.memory_mb is b.memory_mb
        assert a.disk_mb is b.disk_mb
        assert a.fixtures[0].guest_path is b.fixtures[0].guest_path
        assert a.fixtures[0].label is b.fixtures[0].label
        assert a.fixtures[0] is not b.fixtures[0]
        assert a.extra is not b.extra
        assert a.fixtures[0].extra is not b.fixtures[0].extra


def test_saved_once_per_change_number(saved_root: Path) -> None:
    watcher = sqlite3.connect(saved_root / "index.db")
    try:
        before = watcher.execute("PRAGMA data_version").fetchone()
        for _ in range(3):
            first_vms(saved_root)
        assert watcher.execute("PRAGMA data_version").fetchone() == before
    finally:
        watcher.close()


def test_nothing_saved_while_the_index_is_not_settled(seeded_root: Path) -> None:
    put(seeded_root, "web-1")
    put(seeded_root, "web-2", age_ns=None)  # written now: racy
    for _ in range(2):
        first_vms(seeded_root)
    assert saved_seq(seeded_root) is None


def test_any_change_to_a_member_leaves_them_unused(saved_root: Path, reads: list[int]) -> None:
    go_write(config_path(saved_root, "web-3"), config("web-3", ip="10.0.0.5", cpus=6))
    found = first_vms(saved_root)
    assert reads == [1]
    assert {vm.name: vm.cpus for vm in found}["web-3"] == 6
    assert found == on_disk(saved_root)


def test_a_change_through_another_store_leaves_them_unused(
    saved_root: Path, reads: list[int]
) -> None:
    with Store.open(saved_root, clock=later) as other:
        other.delete("web-3")
        other.save(VM("web-4", cpus=9, ip="10.0.0.6"))
    found = first_vms(saved_root)
    assert reads == [1]
    assert found == on_disk(saved_root)


def test_a_busy_write_lock_is_not_waited_for_and_nothing_is_saved(seeded_root: Path) -> None:
    for name in NAMES:
        put(seeded_root, name)
    settle(seeded_root)
    sql(seeded_root, "DELETE FROM vm_records")
    with write_locked(seeded_root), Store.open(seeded_root, busy_timeout=60) as store:
        started = time.monotonic()
        assert len(store.vms()) == len(NAMES)
        assert time.monotonic() - started < 30  # a wait would last the 60 s timeout
    assert saved_seq(seeded_root) is None
    first_vms(seeded_root)
    assert saved_seq(seeded_root) == member_seq(seeded_root)


def test_records_span_several_chunks(
    seeded_root: Path, monkeypatch: pytest.MonkeyPatch, reads: list[int]
) -> None:
    monkeypatch.setattr(vmblob, "CHUNK", 3)
    for i, name in enumerate(NAMES):
        put(seeded_root, name, ip=f"10.0.0.{i + 2}")
    settle(seeded_root)
    assert sql(seeded_root, "SELECT id FROM vm_records ORDER BY id") == [(0,), (1,), (2,)]
    reads.clear()
    assert first_vms(seeded_root) == on_disk(seeded_root)
    assert reads == []


# -- a chunk this code did not write: the rows are read ---------------------------------------


def damaged(blob: bytes) -> bytes:
    middle = len(blob) // 2
    return blob[:middle] + bytes([blob[middle] ^ 0x55]) + blob[middle + 1 :]


def rechecked(body: bytes) -> bytes:
    """*body* (a marshal) as a chunk with a right checksum."""
    import zlib

    return zlib.crc32(body).to_bytes(4, "little") + body


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(damaged, id="a-flipped-byte"),
        pytest.param(lambda b: b[: len(b) // 2], id="torn"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: rechecked(b"\xff\x00"), id="not-marshal"),
        pytest.param(
            lambda b: rechecked(__import__("marshal").dumps((99, 1, 0, b"", b""))), id="format"
        ),
        pytest.param(
            lambda b: rechecked(__import__("marshal").dumps((1, 1, [("short",)]))),
            id="format-1",
        ),
        pytest.param(
            lambda b: rechecked(__import__("marshal").dumps((2, 1, "8", b"", b""))),
            id="size-type",
        ),
        pytest.param(
            lambda b: rechecked(__import__("marshal").dumps((2, 1, 8, "not bytes", b""))),
            id="rows-type",
        ),
    ],
)
def test_a_chunk_not_written_by_this_code_costs_a_read_of_the_rows(
    saved_root: Path, reads: list[int], forge: Any
) -> None:
    [(blob,)] = sql(saved_root, "SELECT blob FROM vm_records WHERE id = 0")
    sql(saved_root, "UPDATE vm_records SET blob = ? WHERE id = 0", forge(blob))
    assert first_vms(saved_root) == on_disk(saved_root)
    assert reads == [1]


def test_a_missing_or_stray_chunk_costs_a_read_of_the_rows(
    seeded_root: Path, monkeypatch: pytest.MonkeyPatch, reads: list[int]
) -> None:
    monkeypatch.setattr(vmblob, "CHUNK", 3)
    for name in NAMES:
        put(seeded_root, name)
    settle(seeded_root)
    sql(seeded_root, "DELETE FROM vm_records WHERE id = 1")
    reads.clear()
    assert first_vms(seeded_root) == on_disk(seeded_root)
    assert reads == [1]
    # That reader saved them again, whole.
    assert sql(seeded_root, "SELECT id FROM vm_records ORDER BY id") == [(0,), (1,), (2,)]
    assert first_vms(seeded_root) == on_disk(seeded_root)
    assert reads == [1]
    sql(seeded_root, "UPDATE vm_records SET seq = seq - 1 WHERE id = 2")
    reads.clear()
    assert first_vms(seeded_root) == on_disk(seeded_root)
    assert reads == [1]


def test_encode_and_decode_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmblob, "CHUNK", 4)
    rows = [(i, f"d{i}") for i in range(10)]
    values = [(f"vm-{i}", (("h", "g", "l", None),)) for i in range(10)]
    chunks = list(vmblob.encode(rows, values, len(rows)))
    assert len(chunks) == 3
    decoded = [vmblob.decode(chunk, 3) for chunk in chunks]
    assert [chunk.size for chunk in decoded if chunk] == [4, 4, 2]
    assert [row for chunk in decoded if chunk for row in chunk.rows()] == rows
    assert [v for chunk in decoded if chunk for v in chunk.values()] == values
    assert vmblob.decode(chunks[0], 2) is None  # the count is part of each chunk
    assert list(vmblob.encode((), (), 0)) != []


def test_a_full_disk_while_saving_leaves_the_answer_from_the_index_and_no_warning(
    seeded_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Saving the records is an optimisation: when SQLite cannot grow the file (a full
    disk, here a page limit on the Store's own connection) the answer stands, no warning."""
    notes = b',\n  "notes": "' + b"x" * 20_000 + b'"\n}'  # records larger than any free page
    for name in NAMES:
        put(seeded_root, name, data=config(name).rstrip().removesuffix(b"}").rstrip() + notes)
    with Store.open(seeded_root, clock=later) as store:
        store.list()
        store.list()  # the digest is recorded: the next vms() would save the records
        conn = index_connection(store)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        with caplog.at_level("DEBUG", logger="fleetbox_db"):
            assert store.vms() == on_disk(seeded_root)
        assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert saved_seq(seeded_root) is None


# -- several processes saving while others write -------------------------------------------

_SAVER = """
import sqlite3, sys, time
from fleetbox_db import Store
from fleetbox_db.index import settled, vmblob, vmcache
from fleetbox_db.index.connection import one_read
from fleetbox_db.index.reconcile import DEFAULT_GRANULARITY_NS
from fleetbox_db.index.recorded import RecordedScan
root, seconds = sys.argv[1], float(sys.argv[2])
later = lambda: time.time_ns() + 3600 * 10**9
conn = sqlite3.connect(root + "/index.db", isolation_level=None)
checked = used = 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    with Store.open(root, clock=later) as store:
        store.list()
        store.vms()  # saves the records when the index is settled
    with one_read(conn):  # the invariants: what is recorded at the current value is the rows
        value, at, digest = conn.execute(
            "SELECT value, settled_seq, settled_digest FROM member_seq"
        ).fetchone()
        saved = vmblob.saved(conn, value)
        if saved is not None:
            by_row = vmcache._Saved(saved, root).by_row()
            assert by_row == vmcache._read_records(conn), "saved records disagree with rows"
            used += 1
        if at == value:
            rows = RecordedScan.load(conn, DEFAULT_GRANULARITY_NS)
            assert not rows.racy, "a digest vouches for a racy row"
            assert settled.digest(rows.entries, DEFAULT_GRANULARITY_NS, rows.schema) == digest
    checked += 1
print(checked, used)
"""

_WRITER = """
import random, sys, time
from fleetbox_db import VM, Fixture, Store
root, seconds, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
later = lambda: time.time_ns() + 3600 * 10**9
deadline = time.monotonic() + seconds
with Store.open(root, clock=later) as store:
    while time.monotonic() < deadline:
        name = f"web-{random.randrange(count)}"
        store.save(VM(name, cpus=random.randrange(1, 64), ip=store.load(name).ip))
        time.sleep(random.random() * 0.002)  # room for settled moments, when savers save
"""


def test_records_saved_while_others_write_always_equal_the_rows(seeded_root: Path) -> None:
    """Savers in three processes beside a writer in a fourth: whenever records or a digest
    are recorded at the index's current change number, they are exactly its rows."""
    import subprocess
    import sys

    from stress_helpers import scaled

    for i, name in enumerate(NAMES):
        put(seeded_root, name, ip=f"10.0.0.{i + 2}")
    settle(seeded_root)
    seconds = str(scaled(3, 30))
    savers = [
        subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(seeded_root), seconds],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(seeded_root), seconds, str(len(NAMES))]
    )
    outputs = [proc.communicate(timeout=120)[0] for proc in savers]
    assert writer.wait(timeout=120) == 0
    assert all(proc.returncode == 0 for proc in savers), outputs
    used = sum(int(out.split()[1]) for out in outputs)
    assert used > 0, f"no saver ever met saved records: the check proved nothing ({outputs})"
    assert first_vms(seeded_root) == on_disk(seeded_root)
