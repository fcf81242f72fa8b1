"""The digest of a settled scan (index/settled.py, issue 15): a new Store trusts it instead of
reading every row only when disk and the index are exactly as they were when it was
recorded; every edit, on disk or in the index, by any process, makes it read them again.
Real files, real SQLite, real processes holding the lock.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import config_path, go_write, later, put
from index_lock import write_locked
from internals import index_connection, reconciler

from fleetbox_db import Store
from fleetbox_db.disk.scan import MemberDir, Signature, scan
from fleetbox_db.index import settled
from fleetbox_db.index.recorded import RecordedScan

NAMES = ("web-1", "web-2", "db-1", "db-2", "cache-1")


@pytest.fixture
def settled_root(seeded_root: Path) -> Path:
    """Five settled members, one with an address, and the digest recorded."""
    for i, name in enumerate(NAMES):
        put(seeded_root, name, ip=f"10.0.0.{i + 2}")
    with Store.open(seeded_root, clock=later) as store:
        store.list()  # records the rows
        store.list()  # finds them equal: records the digest
        store.vms()  # saves the VM records (index/vmblob.py)
    assert digest_row(seeded_root)[0] == digest_row(seeded_root)[1]
    return seeded_root


def digest_row(root: Path) -> tuple[int, int | None, bytes | None]:
    conn = sqlite3.connect(root / "index.db")
    try:
        row = conn.execute("SELECT value, settled_seq, settled_digest FROM member_seq").fetchone()
    finally:
        conn.close()
    return int(row[0]), row[1], row[2]


def sql(root: Path, statement: str, *params: object) -> None:
    conn = sqlite3.connect(root / "index.db")
    try:
        with conn:
            conn.execute(statement, params)
    finally:
        conn.close()


@pytest.fixture
def fresh(settled_root: Path) -> Iterator[Store]:
    with Store.open(settled_root) as store:
        yield store


# -- it is used, and only then ------------------------------------------------------------


def test_a_new_store_on_a_settled_index_reads_no_row(
    settled_root: Path, full_loads: list[int]
) -> None:
    with Store.open(settled_root) as store:
        assert store.list() == sorted(NAMES, key=lambda n: (n.rsplit("-", 1)[0], n))
        assert store.who_has("10.0.0.3") == "web-2"
        assert [vm.name for vm in store.vms()] == store.list()
        assert store.free_ips("10.0.0.0/28", limit=1) == ["10.0.0.7"]
    assert full_loads == []


def test_the_digest_is_written_once_per_change_number(settled_root: Path) -> None:
    """A reader that found it recorded writes nothing: other connections see no commit."""
    watcher = sqlite3.connect(settled_root / "index.db")
    try:
        before = watcher.execute("PRAGMA data_version").fetchone()
        for _ in range(3):
            with Store.open(settled_root) as store:
                store.list()
                store.vms()
        assert watcher.execute("PRAGMA data_version").fetchone() == before
    finally:
        watcher.close()


def test_a_store_that_read_every_row_records_the_digest_for_the_next(
    seeded_root: Path, full_loads: list[int]
) -> None:
    for name in NAMES:
        put(seeded_root, name)
    with Store.open(seeded_root, clock=later) as store:
        store.list()  # records the rows
    sql(seeded_root, "UPDATE member_seq SET settled_seq = NULL, settled_digest = NULL")
    full_loads.clear()
    with Store.open(seeded_root) as store:
        store.list()
    assert full_loads == [1]
    value, at, found = digest_row(seeded_root)
    assert at == value
    assert found is not None
    with Store.open(seeded_root) as store:
        store.list()
    assert full_loads == [1]


def test_no_digest_while_a_row_is_racy(seeded_root: Path) -> None:
    """A config written just now may be rewritten within its timestamp tick unseen: it is
    re-read until settled, so no digest may vouch for it."""
    put(seeded_root, "web-1")
    put(seeded_root, "web-2", age_ns=None)  # written now: racy
    for _ in range(2):
        with Store.open(seeded_root) as store:
            store.list()
        value, at, _ = digest_row(seeded_root)
        assert at != value


def test_no_digest_for_a_scan_with_an_unstat_able_config(seeded_root: Path) -> None:
    """The index keeps no error text: such a scan equals the rows only loosely."""
    put(seeded_root, "web-1")
    put(seeded_root, "web-2")
    broken = config_path(seeded_root, "web-2")
    broken.unlink()
    broken.mkdir()  # config.json is a directory
    for _ in range(2):
        with Store.open(seeded_root, clock=later) as store:
            store.list()
    value, at, _ = digest_row(seeded_root)
    assert at != value
    with Store.open(seeded_root) as store:
        assert store.list() == ["web-1", "web-2"]
        assert [vm.name for vm in store.vms()] == ["web-1"]


def test_another_granularity_reads_every_row(settled_root: Path, full_loads: list[int]) -> None:
    with Store.open(settled_root, granularity_ns=5 * 10**9) as store:
        store.list()
    assert full_loads == [1]


def test_a_busy_write_lock_is_not_waited_for_and_the_digest_is_left(seeded_root: Path) -> None:
    for name in NAMES:
        put(seeded_root, name)
    with Store.open(seeded_root, clock=later) as store:
        store.list()
    sql(seeded_root, "UPDATE member_seq SET settled_seq = NULL, settled_digest = NULL")
    with write_locked(seeded_root), Store.open(seeded_root, busy_timeout=60) as store:
        started = time.monotonic()
        assert len(store.list()) == len(NAMES)
        assert time.monotonic() - started < 30  # a wait would last the 60 s timeout
    assert digest_row(seeded_root)[1] is None
    with Store.open(seeded_root) as store:
        store.list()
    value, at, _ = digest_row(seeded_root)
    assert at == value


# -- every edit makes it read again --------------------------------------------------------


def test_a_member_made_on_disk_is_seen(fresh: Store, settled_root: Path) -> None:
    put(settled_root, "new-1", ip="10.0.0.9")
    assert "new-1" in fresh.list()
    assert fresh.who_has("10.0.0.9") == "new-1"


def test_a_member_removed_on_disk_is_gone(fresh: Store, settled_root: Path) -> None:
    path = config_path(settled_root, "web-2")
    path.unlink()
    path.parent.rmdir()
    assert "web-2" not in fresh.list()
    assert fresh.who_has("10.0.0.3") is None


def test_a_config_rewritten_with_its_old_size_and_mtime_is_seen(
    fresh: Store, settled_root: Path
) -> None:
    """Same inode, same size, mtime set back: only ctime moves, and it is in the digest."""
    path = config_path(settled_root, "db-1")
    before = path.stat()
    data = path.read_bytes()
    edited = data.replace(b'"cpus": 2', b'"cpus": 7')
    assert len(edited) == len(data)
    assert edited != data
    go_write(path, edited)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert {vm.name: vm.cpus for vm in fresh.vms()}["db-1"] == 7


def test_a_config_made_configless_is_seen(fresh: Store, settled_root: Path) -> None:
    config_path(settled_root, "db-2").unlink()
    assert "db-2" in fresh.list()
    assert "db-2" not in [vm.name for vm in fresh.vms()]


def test_a_row_deleted_from_the_index_by_hand_is_restored(
    settled_root: Path, full_loads: list[int]
) -> None:
    """Any change to a member row moves member_seq (triggers), so the digest no longer
    matches and the rows are read, and repaired, again."""
    sql(settled_root, "DELETE FROM members WHERE name = 'web-2'")
    with Store.open(settled_root) as store:
        assert store.who_has("10.0.0.3") == "web-2"
    assert full_loads == [1]


def test_a_forged_digest_costs_a_full_read_not_a_wrong_answer(
    settled_root: Path, full_loads: list[int]
) -> None:
    sql(settled_root, "UPDATE member_seq SET settled_digest = ?", b"\0" * 20)
    put(settled_root, "new-1", ip="10.0.0.9")
    with Store.open(settled_root) as store:
        assert store.who_has("10.0.0.9") == "new-1"
    assert full_loads == [1]


def test_a_store_trusting_the_digest_then_follows_other_writers(fresh: Store) -> None:
    assert "web-2" in fresh.list()
    with Store.open(fresh.root, clock=later) as other:
        other.delete("web-2")
        other.allocate_ip("db-9", "10.0.0.0/29")
    assert "web-2" not in fresh.list()
    assert fresh.who_has("10.0.0.3") == "db-9"


# -- the digest itself --------------------------------------------------------------------


def member(cluster: str, name: str, ino: int = 1, size: int = 10) -> MemberDir:
    return MemberDir(cluster, name, Signature(ino, size, 5, 6), None)


def test_the_digest_covers_names_order_signatures_and_settings() -> None:
    base = [member("web", "web-1"), member("web", "web-2")]
    found = settled.digest(base, 2, 9)
    assert found is not None
    assert found == settled.digest(list(base), 2, 9)
    others = [
        [member("web", "web-2"), member("web", "web-1")],
        [member("web", "web-1"), member("web", "web-3")],
        [member("web", "web-1"), member("wab", "web-2")],
        [member("web", "web-1"), member("web", "web-2", ino=2)],
        [member("web", "web-1"), member("web", "web-2", size=11)],
        [member("web", "web-1"), MemberDir("web", "web-2", None, None)],
        [member("web", "web-1")],
        [member("web", "web-1\0web"), member("web", "web-2")],  # no ambiguous join
        [member("we", "bweb-1"), member("web", "web-2")],
    ]
    digests = {settled.digest(o, 2, 9) for o in others}
    assert found not in digests
    assert len(digests) == len(others)
    assert settled.digest(base, 3, 9) != found
    assert settled.digest(base, 2, 10) != found


def test_configless_members_are_placed_by_position() -> None:
    a = [MemberDir("web", "web-1", None, None), member("web", "web-2")]
    b = [member("web", "web-1"), MemberDir("web", "web-2", None, None)]
    assert settled.digest(a, 2, 9) != settled.digest(b, 2, 9)


def test_no_digest_for_error_entries_or_numbers_beyond_64_bits() -> None:
    assert settled.digest([MemberDir("web", "web-1", None, "EACCES")], 2, 9) is None
    assert settled.digest([member("web", "web-1", ino=2**64)], 2, 9) is None
    assert settled.digest([], 2, 9) is not None


def test_names_that_are_not_utf8_have_a_digest() -> None:
    raw = os.fsdecode(b"web-\xff")
    assert settled.digest([member("web", raw)], 2, 9) is not None


def test_a_matching_digest_gives_the_full_load(settled_root: Path) -> None:
    with Store.open(settled_root) as store:
        rec, conn = reconciler(store), index_connection(store)
        found = scan(rec.clusters_dir)
        trusted = RecordedScan.settled(conn, found.members, rec.granularity_ns)
        full = RecordedScan.load(conn, rec.granularity_ns)
    assert trusted is not None
    assert (trusted.entries, trusted.racy, trusted.reservations, trusted.seq) == (
        full.entries,
        full.racy,
        full.reservations,
        full.seq,
    )
    assert trusted.raw == full.raw
    assert trusted.schema == full.schema


def test_a_digest_recorded_by_an_earlier_release_still_matches() -> None:
    """A digest is compared with one another process recorded, perhaps with earlier code:
    how it is computed may change, the bytes it covers may not (without a _FORMAT bump).
    These values were computed by session 10's code (array('q') of the signatures, native
    byte order, as on this little-endian machine)."""
    signed = Signature(11, 500, 1_700_000_000_123456789, 1_700_000_000_223456789)
    members = [
        MemberDir("web", "web-1", signed, None),
        MemberDir("web", "web-2", None, None),
        MemberDir("w\udce9b", "w\udce9b-1", Signature(2**63 - 1, 0, -5, 7), None),
        MemberDir("db", "db", Signature(3, 4, 5, 6), None),
    ]
    if sys.byteorder != "little":  # pragma: no cover - the pinned values are little-endian
        pytest.skip("pinned on a little-endian machine")
    found = settled.digest(members, 2_000_000_000, 11)
    assert found is not None
    assert found.hex() == "3e27be068291fc955c1cce67e0ef4f55"
    first = settled.digest(members[:1], 2_000_000_000, 11)
    assert first is not None
    assert first.hex() == "34960b8dd4b5b7b954e04d4dd12fe4a3"
    empty = settled.digest([], 1, 1)
    assert empty is not None
    assert empty.hex() == "18dcf2238bccc0833c7bb5df64e646ae"
    assert (
        settled.digest([MemberDir("web", "web-1", Signature(-(2**63) - 1, 0, 0, 0), None)], 2, 9)
        is None
    )
