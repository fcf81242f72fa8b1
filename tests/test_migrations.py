"""Alembic revisions of the index: one head, round trips, models equal migrations, upgrades
that keep rows, a failing revision that leaves the previous one intact, a newer index that is
never downgraded, and the wheel that ships migrations/. Real files and processes only.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from helpers import later, put

import fleetbox_db
from fleetbox_db import VM, Fixture, IndexSchemaError, Store
from fleetbox_db.index import schema
from fleetbox_db.index.file import IndexFile
from fleetbox_db.index.models import Base
from fleetbox_db.rules.config import encode_config

REPO = Path(fleetbox_db.__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

#: Columns compared before and after an upgrade: everything the first revision created.
MEMBER_COLUMNS = (
    "id, cluster, name, state, ino, size, mtime_ns, ctime_ns, verified_ns, digest, "
    "config_name, mac, mac_key, cpus, memory_mb, disk_mb, image, created_at, ip, ip_int, extra"
)


def revision_of(path: Path) -> str | None:
    conn = sqlite3.connect(path)
    try:
        return schema.current_revision(conn)
    finally:
        conn.close()


def tables_of(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        conn.close()
    return {r[0] for r in rows}


def rows_of(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def run_with_scripts(path: Path, scripts: Path, cmd: str, revision: str) -> None:
    """Run an Alembic command on *path* with the revisions in *scripts* (schema's engine)."""
    engine = schema.make_engine(path)
    try:
        with engine.connect() as connection:
            config = schema.alembic_config(connection)
            config.set_main_option("script_location", str(scripts))
            getattr(command, cmd)(config, revision)
    finally:
        engine.dispose()


# -- the revision graph ---------------------------------------------------------------


def test_single_head_and_known_revisions_are_the_chain() -> None:
    script = ScriptDirectory.from_config(schema.alembic_config())
    heads = script.get_heads()
    assert heads == [schema.HEAD]
    chain = [rev.revision for rev in script.walk_revisions("base", "heads")]
    assert tuple(reversed(chain)) == schema.KNOWN_REVISIONS
    assert all(r.startswith(schema.REVISION_PREFIX) for r in chain)
    # Every revision file is in the chain: a stray file would be a second head or a gap.
    files = sorted(p.name for p in (schema.migrations_dir() / "versions").glob("*.py"))
    assert len(files) == len(chain)


def test_migrations_dir_is_the_checkout_in_an_editable_install() -> None:
    assert schema.migrations_dir() == REPO / "migrations"


def test_base_head_base_head(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    schema.run_alembic(path, "upgrade", "head")
    assert revision_of(path) == schema.HEAD
    at_head = tables_of(path)
    assert {"members", "fixtures", "reservations", "alembic_version"} <= at_head
    assert rows_of(path, "PRAGMA application_id") == [(schema.APPLICATION_ID,)]

    schema.run_alembic(path, "downgrade", "base")
    assert revision_of(path) is None
    assert tables_of(path) == {"alembic_version"}
    assert rows_of(path, "PRAGMA application_id") == [(0,)]
    conn = sqlite3.connect(path)
    try:
        # Alembic keeps an empty version table at base: that is still an empty index to us.
        assert schema.classify(conn) == "empty"
    finally:
        conn.close()

    schema.run_alembic(path, "upgrade", "head")
    assert revision_of(path) == schema.HEAD
    assert tables_of(path) == at_head


@pytest.mark.parametrize("revision", schema.KNOWN_REVISIONS)
def test_each_revision_downgrades_and_reapplies(tmp_path: Path, revision: str) -> None:
    path = tmp_path / "index.db"
    schema.run_alembic(path, "upgrade", revision)
    schema.run_alembic(path, "downgrade", "-1")
    schema.run_alembic(path, "upgrade", revision)
    assert revision_of(path) == revision


def test_models_equal_migrations(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    schema.run_alembic(path, "upgrade", "head")
    engine = schema.make_engine(path)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "render_as_batch": True}
            )
            assert compare_metadata(context, Base.metadata) == []
            # The same through the command developers run.
            command.check(schema.alembic_config(connection))
    finally:
        engine.dispose()
    # classify() checks these are present before it calls an index current.
    assert set(Base.metadata.tables) == schema.HEAD_TABLES


def test_store_creates_an_index_at_head(store: Store) -> None:
    assert store.migrate() == schema.HEAD
    assert revision_of(store.index_path) == schema.HEAD


# -- upgrading an index with rows ------------------------------------------------------


def _write_member(store: Store, vm: VM) -> os.stat_result:
    path = store.config_path(vm.name)
    path.parent.mkdir(parents=True)
    path.write_bytes(encode_config(vm))
    return path.stat()


def test_index_at_first_revision_with_rows_upgrades_when_a_store_opens_it(root: Path) -> None:
    created = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    web = VM("web-1", mac="02:00:00:00:00:01", ip="10.0.0.2", created_at=created)
    web.fixtures = [Fixture("/srv/a", "/mnt/a", "a"), Fixture("/srv/b", "/mnt/b", "b")]
    dev = VM("dev", mac="02:00:00:00:00:02", created_at=created)
    with Store.open(root) as store:
        signatures = {vm.name: _write_member(store, vm) for vm in (web, dev)}
        path = store.index_path
    schema.run_alembic(path, "upgrade", schema.KNOWN_REVISIONS[0])
    conn = sqlite3.connect(path)
    with conn:
        for mid, (cluster, vm) in enumerate((("web", web), ("dev", dev)), start=1):
            st = signatures[vm.name]
            conn.execute(
                f"INSERT INTO members ({MEMBER_COLUMNS}) VALUES "
                "(?, ?, ?, 'ok', ?, ?, ?, ?, ?, NULL, ?, ?, ?, 2, 4096, 20480, 'debian-12', "
                "'2024-05-06T07:08:09Z', ?, ?, NULL)",
                (
                    mid,
                    cluster,
                    vm.name,
                    st.st_ino,
                    st.st_size,
                    st.st_mtime_ns,
                    st.st_ctime_ns,
                    st.st_mtime_ns + 10**10,
                    vm.name,
                    vm.mac,
                    vm.mac,
                    vm.ip,
                    0x0A000002 if vm.ip else None,
                ),
            )
        conn.executemany(
            "INSERT INTO fixtures (member_id, position, host_path, guest_path, label) "
            "VALUES (1, ?, ?, ?, ?)",
            [(i, f.host_path, f.guest_path, f.label) for i, f in enumerate(web.fixtures)],
        )
    conn.close()
    before_members = rows_of(path, f"SELECT {MEMBER_COLUMNS} FROM members ORDER BY id")
    before_fixtures = rows_of(path, "SELECT * FROM fixtures ORDER BY member_id, position")
    assert revision_of(path) == schema.KNOWN_REVISIONS[0]

    with Store.open(root) as store:
        assert store.migrate() == schema.HEAD
        assert revision_of(path) == schema.HEAD
        assert rows_of(path, f"SELECT {MEMBER_COLUMNS} FROM members ORDER BY id") == (
            before_members
        )
        assert rows_of(path, "SELECT * FROM fixtures ORDER BY member_id, position") == (
            before_fixtures
        )
        assert store.list() == ["dev", "web-1"]
        assert store.vms() == [store.load("dev"), store.load("web-1")]
        assert store.vms()[1].fixtures == web.fixtures
        assert store.who_has("10.0.0.2") == "web-1"
    assert not list(root.glob("index.db.corrupt-*"))


def test_upgrade_to_the_spelling_revision_rereads_configs_that_hold_u_fffd(root: Path) -> None:
    """Rows written before fleetbox_0004 forgot how a Go 1.26 file spelled U+FFFD: the upgrade
    has the next reconcile read those files again (and no other), so a save keeps the bytes."""
    go126 = (Path(__file__).parent / "data" / "go126-invalid-utf8.json").read_bytes()
    web = put(root, "web-1", data=go126)
    put(root, "dev")
    with Store.open(root) as store:
        assert store.list() == ["dev", "web-1"]
        path = store.index_path
    # What an older release left: the rows, and no spelling.
    schema.run_alembic(path, "downgrade", "fleetbox_0003")
    assert rows_of(path, "SELECT count(*) FROM members WHERE state = 'ok'") == [(2,)]

    with Store.open(root) as store:
        report = store.reconcile()
        assert report.updated == ["web-1"]
        assert (report.added, report.removed) == ([], [])  # every row kept its data
        assert revision_of(path) == schema.HEAD
        _, web_1 = store.vms()
        store.save(web_1)
    assert web.read_bytes() == go126


def test_upgrade_from_0004_keeps_the_rows_and_learns_why_a_member_is_unreadable(
    root: Path,
) -> None:
    """fleetbox_0005 adds members.reason: an index at fleetbox_0004 with an ok and an
    unreadable member keeps both rows, and the next reconcile re-reads the unreadable one
    (only it) to record why."""
    put(root, "web-1", ip="10.0.0.2")
    bad = put(root, "db-1", ip="10.0.0.3")
    with Store.open(root) as store:
        assert store.list() == ["db-1", "web-1"]
        path = store.index_path
    bad.write_bytes(b'{"name": "db-1", "cpus": "two"}')
    with Store.open(root) as store:
        store.reconcile()
    schema.run_alembic(path, "downgrade", "fleetbox_0004")
    assert revision_of(path) == "fleetbox_0004"
    before = rows_of(path, "SELECT cluster, name, state, ip FROM members ORDER BY id")
    assert before == [("db", "db-1", "unreadable", "10.0.0.3"), ("web", "web-1", "ok", "10.0.0.2")]

    with Store.open(root) as store:
        report = store.reconcile()
        assert revision_of(path) == schema.HEAD
        assert report.updated == ["db-1"]
        assert (report.added, report.removed) == ([], [])
        assert report.reasons == {
            "db-1": 'wrong type for "cpus": expected an integer, got a string'
        }
        assert rows_of(path, "SELECT cluster, name, state, ip FROM members ORDER BY id") == before
        assert store.who_has("10.0.0.3") == "db-1"  # the last good config still holds it


def test_upgrade_from_0006_keeps_the_rows_and_counts_changes_from_there(root: Path) -> None:
    """fleetbox_0007 adds members.seq, member_seq and member_removals: an index at
    fleetbox_0006 with members keeps them (seq 0, counter 0), and from then on every insert,
    change and delete moves the counter; the stamp itself fires no trigger."""
    put(root, "web-1", ip="10.0.0.2")
    put(root, "db-1", ip="10.0.0.3")
    with Store.open(root) as store:
        assert store.list() == ["db-1", "web-1"]
        path = store.index_path
    schema.run_alembic(path, "downgrade", "fleetbox_0006")
    assert revision_of(path) == "fleetbox_0006"
    assert not {"member_seq", "member_removals"} & tables_of(path)
    before = rows_of(path, f"SELECT {MEMBER_COLUMNS} FROM members ORDER BY id")

    schema.run_alembic(path, "upgrade", "head")
    assert rows_of(path, f"SELECT {MEMBER_COLUMNS} FROM members ORDER BY id") == before
    assert rows_of(path, "SELECT DISTINCT seq FROM members") == [(0,)]
    assert rows_of(path, "SELECT id, value, kept_removals FROM member_seq") == [(1, 0, 10_000)]
    with Store.open(root) as store:
        store.save(VM("web-1", cpus=8, created_at=datetime(2024, 5, 1, tzinfo=UTC)))
        store.delete("db-1")
    assert rows_of(path, "SELECT name, seq FROM members") == [("web-1", 1)]
    assert rows_of(path, "SELECT seq, cluster, name FROM member_removals") == [(2, "db", "db-1")]
    assert rows_of(path, "SELECT value FROM member_seq") == [(2,)]


def test_reservation_names_repeat_at_0008_and_downgrade_keeps_each_names_lowest(
    root: Path,
) -> None:
    """fleetbox_0008 lets two rows name one member in one subnet (the live leases the table
    mirrors may); a downgrade to 0007, unique again, keeps the lowest address of each."""
    with Store.open(root) as store:
        store.list()
        path = store.index_path
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO reservations (name, subnet, ip_int, owner_pid, owner_boot,"
            " owner_start, created_ns) VALUES (?, '10.0.0.0/24', ?, 0, '', 0, 0)",
            [("web-1", 0x0A000003), ("web-1", 0x0A000002), ("db-1", 0x0A000004)],
        )
    conn.close()
    schema.run_alembic(path, "downgrade", "fleetbox_0007")
    assert rows_of(path, "SELECT name, ip_int FROM reservations ORDER BY ip_int") == [
        ("web-1", 0x0A000002),
        ("db-1", 0x0A000004),
    ]
    schema.run_alembic(path, "upgrade", "head")
    assert revision_of(path) == schema.HEAD
    assert rows_of(path, "SELECT count(*) FROM reservations") == [(2,)]


def member_and_reservation_at(root: Path, revision: str) -> tuple[Path, list[tuple[Any, ...]]]:
    """(index path, its member rows) of a store holding a member and a reservation, its
    index downgraded to *revision*."""
    put(root, "web-1", ip="10.0.0.2")
    with Store.open(root) as store:
        store.allocate_ip("db-1", "10.0.0.0/24")
        path = store.index_path
    schema.run_alembic(path, "downgrade", revision)
    assert revision_of(path) == revision
    return path, rows_of(path, f"SELECT {MEMBER_COLUMNS} FROM members ORDER BY id")


def test_upgrade_from_0008_keeps_the_rows_and_counts_reservation_changes_from_there(
    root: Path,
) -> None:
    """fleetbox_0009 adds member_seq.reservations and its triggers: an index at
    fleetbox_0008 holding members and a reservation keeps them (counter 0), and from then
    on each insert, update and delete of a reservation moves it."""
    path, members_before = member_and_reservation_at(root, "fleetbox_0008")
    held_before = rows_of(path, "SELECT * FROM reservations")
    assert len(held_before) == 1

    schema.run_alembic(path, "upgrade", "head")
    assert rows_of(path, f"SELECT {MEMBER_COLUMNS} FROM members ORDER BY id") == members_before
    assert rows_of(path, "SELECT * FROM reservations") == held_before
    assert rows_of(path, "SELECT reservations FROM member_seq") == [(0,)]
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE reservations SET created_ns = created_ns + 1")
        conn.execute("DELETE FROM reservations")
    conn.close()
    assert rows_of(path, "SELECT reservations FROM member_seq") == [(2,)]


def test_upgrade_from_0009_keeps_the_rows_and_records_a_digest_from_there(root: Path) -> None:
    """fleetbox_0010 adds member_seq.settled_seq and settled_digest: an index at
    fleetbox_0009 keeps its rows and counters (no digest yet); the next reader that finds
    disk equal to it records one, and a downgrade drops the columns again."""
    path, members_before = member_and_reservation_at(root, "fleetbox_0009")
    counters = rows_of(path, "SELECT value, kept_removals, reservations FROM member_seq")

    schema.run_alembic(path, "upgrade", "head")
    assert rows_of(path, f"SELECT {MEMBER_COLUMNS} FROM members ORDER BY id") == members_before
    assert rows_of(path, "SELECT value, kept_removals, reservations FROM member_seq") == counters
    assert rows_of(path, "SELECT settled_seq, settled_digest FROM member_seq") == [(None, None)]
    with Store.open(root, clock=later) as store:
        assert store.list() == ["web-1"]  # records web-1 settled (it was racy)
        assert store.list() == ["web-1"]  # finds every row equal: records the digest
    [(value, at)] = rows_of(path, "SELECT value, settled_seq FROM member_seq")
    assert at == value

    schema.run_alembic(path, "downgrade", "fleetbox_0009")
    assert rows_of(path, "SELECT name FROM pragma_table_info('member_seq')") == [
        ("id",),
        ("value",),
        ("kept_removals",),
        ("reservations",),
    ]
    assert rows_of(path, "SELECT value, kept_removals, reservations FROM member_seq") == [
        (value, counters[0][1], counters[0][2])
    ]


def test_upgrade_from_0010_keeps_the_rows_and_saves_vm_records_from_there(root: Path) -> None:
    """fleetbox_0011 adds vm_records: an index at fleetbox_0010 keeps its rows, and the
    next reader of a settled index saves the records there; a downgrade drops the table."""
    put(root, "web-1", ip="10.0.0.2")
    with Store.open(root) as store:
        store.list()
        path = store.index_path
    schema.run_alembic(path, "downgrade", "fleetbox_0010")
    assert revision_of(path) == "fleetbox_0010"
    assert "vm_records" not in tables_of(path)
    members_before = rows_of(path, f"SELECT {MEMBER_COLUMNS} FROM members ORDER BY id")

    schema.run_alembic(path, "upgrade", "head")
    assert rows_of(path, f"SELECT {MEMBER_COLUMNS} FROM members ORDER BY id") == members_before
    assert rows_of(path, "SELECT count(*) FROM vm_records") == [(0,)]
    with Store.open(root, clock=later) as store:
        store.list()  # records web-1 settled
        store.list()  # records the digest
        assert [vm.ip for vm in store.vms()] == ["10.0.0.2"]  # saves the records
    [(value,)] = rows_of(path, "SELECT value FROM member_seq")
    assert rows_of(path, "SELECT id, seq FROM vm_records") == [(0, value)]

    schema.run_alembic(path, "downgrade", "fleetbox_0010")
    assert "vm_records" not in tables_of(path)
    assert rows_of(path, f"SELECT {MEMBER_COLUMNS} FROM members ORDER BY id") != []


# -- a failing revision -----------------------------------------------------------------

#: A revision this code does not know: the one after head.
NEXT = f"{schema.REVISION_PREFIX}{int(schema.HEAD.removeprefix(schema.REVISION_PREFIX)) + 1:04d}"

BROKEN_REVISION = '''\
"""a revision that fails half way"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer(), primary_key=True))
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("half_column", sa.Integer(), nullable=True))
    op.execute("INSERT INTO half_done (id) VALUES (1)")
    {failure}


def downgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_column("half_column")
    op.drop_table("half_done")
'''


def _scripts_with(tmp_path: Path, failure: str) -> Path:
    scripts = tmp_path / "scripts"
    if not scripts.exists():
        shutil.copytree(schema.migrations_dir(), scripts, ignore=shutil.ignore_patterns("*.pyc"))
    # A stale bytecode cache could run the previous text of the revision.
    shutil.rmtree(scripts / "versions" / "__pycache__", ignore_errors=True)
    text = BROKEN_REVISION.format(revision=NEXT, down=schema.HEAD, failure=failure)
    (scripts / "versions" / f"{NEXT}_broken.py").write_text(text)
    return scripts


def test_failing_revision_leaves_previous_revision_intact_and_rerun_applies_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "index.db"
    schema.run_alembic(path, "upgrade", schema.KNOWN_REVISIONS[0])
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO members (cluster, name, state) VALUES ('web', 'web-1', 'ok')")
    conn.close()
    scripts = _scripts_with(tmp_path, 'raise RuntimeError("the next revision fails")')

    with pytest.raises(RuntimeError, match="the next revision fails"):
        run_with_scripts(path, scripts, "upgrade", "head")
    # Every known revision committed on its own; the next one's table, column and row
    # rolled back whole.
    assert revision_of(path) == schema.HEAD
    assert "half_done" not in tables_of(path)
    columns = [r[1] for r in rows_of(path, "PRAGMA table_info(members)")]
    assert "half_column" not in columns
    assert rows_of(path, "SELECT cluster, name FROM members") == [("web", "web-1")]
    assert rows_of(path, "PRAGMA integrity_check") == [("ok",)]

    # The failed revision stays pending; fixed, it applies exactly once.
    scripts = _scripts_with(tmp_path, "pass")
    run_with_scripts(path, scripts, "upgrade", "head")
    assert revision_of(path) == NEXT
    assert rows_of(path, "SELECT id FROM half_done") == [(1,)]
    run_with_scripts(path, scripts, "upgrade", "head")
    assert rows_of(path, "SELECT id FROM half_done") == [(1,)]
    assert rows_of(path, "SELECT cluster, name FROM members") == [("web", "web-1")]


def test_unknown_fleetbox_revision_counts_as_newer(tmp_path: Path, root: Path) -> None:
    """An index at a revision this code does not know counts as newer, not corrupt."""
    with Store.open(root) as store:
        store.create(VM("web-1"))
    scripts = _scripts_with(tmp_path, "pass")
    run_with_scripts(root / "index.db", scripts, "upgrade", "head")
    with Store.open(root) as store:
        assert store.list() == ["web-1"]
        with pytest.raises(IndexSchemaError):
            store.create(VM("web-2"))
    assert revision_of(root / "index.db") == NEXT


# -- the command line from the checkout ------------------------------------------------


def test_alembic_upgrade_head_from_the_checkout(tmp_path: Path) -> None:
    target = tmp_path / "store"
    target.mkdir()
    result = subprocess.run(
        [str(BIN / "alembic"), "-c", "alembic.ini", "-x", f"root={target}", "upgrade", "head"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert revision_of(target / "index.db") == schema.HEAD
    # The developer's file is then usable by the library as is.
    with Store.open(target) as store:
        store.create(VM("dev"))
        assert store.migrate() == schema.HEAD
        assert store.list() == ["dev"]


# -- an index newer than this code ------------------------------------------------------


#: Revisions this code does not know, in an index.db that carries our application id: a
#: later release's, however it spells them (a hex id, as Alembic generates by default).
UNKNOWN_REVISIONS = [
    pytest.param("fleetbox_9999", id="fleetbox-prefix"),
    pytest.param("ffffffffffff", id="hex-id"),
    pytest.param("ae1027a6acf", id="alembic-style-id"),
]


def _set_revision(path: Path, revision: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.close()


@pytest.mark.parametrize("revision", UNKNOWN_REVISIONS)
def test_newer_revision_is_never_downgraded_and_reads_come_from_disk(
    root: Path, revision: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Store.open(root) as store:
        store.create(VM("web-1", ip="10.0.0.2"))
        store.create(VM("dev"))
        path = store.index_path
    _set_revision(path, revision)
    inode = path.stat().st_ino

    with Store.open(root) as store, caplog.at_level("WARNING", logger="fleetbox_db"):
        with pytest.raises(IndexSchemaError) as info:
            store.create(VM("web-2"))
        message = str(info.value)
        assert str(path) in message
        assert "newer" in message
        assert info.value.path == path
        assert not store.exists("web-2")
        with pytest.raises(IndexSchemaError):
            store.migrate()
        # A third VM appears behind the index's back: answers come from disk.
        store.config_path("db").parent.mkdir(parents=True)
        store.config_path("db").write_bytes(encode_config(VM("db", ip="10.0.0.3")))
        assert store.list() == ["db", "dev", "web-1"]
        assert [vm.name for vm in store.vms()] == ["db", "dev", "web-1"]
        assert store.vms() == [store.load(n) for n in ("db", "dev", "web-1")]
        assert store.load("web-1").ip == "10.0.0.2"
        assert store.free_ips("10.0.0.0/29") == ["10.0.0.4", "10.0.0.5", "10.0.0.6"]
    assert any("newer" in r.getMessage() for r in caplog.records)
    assert path.stat().st_ino == inode
    assert revision_of(path) == revision
    assert not list(root.glob("index.db.corrupt-*"))


@pytest.mark.parametrize("revision", UNKNOWN_REVISIONS)
def test_unknown_revision_with_our_application_id_is_newer(root: Path, revision: str) -> None:
    """The application id makes the file ours; the spelling of its revision does not."""
    with Store.open(root) as store:
        store.create(VM("dev"))
        path = store.index_path
    _set_revision(path, revision)
    conn = sqlite3.connect(path)
    try:
        assert schema.classify(conn) == "newer"
    finally:
        conn.close()
    # Asked to move it aside (as after a failed query), the index file declines: not broken.
    index = IndexFile(path, root / "index.lock")
    index.quarantine("a query failed")
    assert revision_of(path) == revision
    assert not list(root.glob("index.db.corrupt-*"))


# -- the wheel --------------------------------------------------------------------------


def _build_wheel(dist: Path) -> Path:
    """Build the project's wheel into *dist*, offline when hatchling is already installed."""
    try:
        import hatchling  # noqa: F401

        isolation = ["--no-build-isolation"]
    except ImportError:  # a fresh CI venv: pip fetches the build backend
        isolation = []
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", dist, REPO],
        check=True,
        capture_output=True,
        timeout=180,
    )
    (wheel,) = dist.glob("fleetbox_db-*.whl")
    return wheel


def _fresh_venv(where: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed by this interpreter's pip (no ensurepip: faster).

    Dependencies come from the package index when it answers; an offline machine falls back
    to this interpreter's site-packages for them (the wheel itself is still what is tested,
    and its declared dependencies are checked from its METADATA).
    """
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", where],
        check=True,
        capture_output=True,
        timeout=120,
    )
    python = where / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    full = subprocess.run([*pip, wheel], capture_output=True, timeout=300, check=False)
    if full.returncode != 0:
        subprocess.run([*pip, "--no-deps", wheel], check=True, capture_output=True, timeout=120)
        import alembic
        import click
        import filelock
        import sqlalchemy

        site = {
            Path(str(m.__file__)).resolve().parent.parent
            for m in (alembic, click, filelock, sqlalchemy)
        }
        purelib = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        # Appended after the venv's own site-packages, so the wheel's fleetbox_db wins.
        (Path(purelib) / "zz_deps.pth").write_text("".join(f"{s}\n" for s in sorted(site)))
    return python


@pytest.mark.slow
def test_wheel_ships_migrations_and_opens_a_store_outside_the_checkout(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = [
            line.split(":", 1)[1].strip()
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line
        ]
    assert "fleetbox_db/migrations/env.py" in names
    assert "fleetbox_db/migrations/script.py.mako" in names
    for revision in schema.KNOWN_REVISIONS:
        assert any(n.startswith(f"fleetbox_db/migrations/versions/{revision}_") for n in names)
    assert not any("__pycache__" in n for n in names)
    assert {r.split(">")[0].split("=")[0].lower() for r in requires} >= {
        "sqlalchemy",
        "alembic",
        "filelock",
    }

    python = _fresh_venv(tmp_path / "venv", wheel)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    script = textwrap.dedent(
        """\
        import sys
        from pathlib import Path
        import fleetbox_db
        from fleetbox_db import VM, Store
        from fleetbox_db.index import schema
        print(Path(fleetbox_db.__file__).resolve().parent)
        print(schema.migrations_dir())
        with Store.open(Path("root")) as store:
            store.create(VM("web-1"), subnet="10.1.0.0/24")
            print(store.list(), store.load("web-1").ip)
            print(store.migrate())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run(
        [python, "-c", script],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    package, migrations, listing, revision = result.stdout.splitlines()
    venv = (tmp_path / "venv").resolve()
    assert Path(package).is_relative_to(venv)
    assert Path(migrations) == Path(package) / "migrations"
    assert listing == "['web-1'] 10.1.0.2"
    assert revision == schema.HEAD
    assert revision_of(outside / "root" / "index.db") == schema.HEAD


def test_downgrade_below_raw_names_drops_blob_rows_and_upgrade_brings_them_back(
    tmp_path: Path,
) -> None:
    """fleetbox_0002's code cannot read BLOB names; its index must hold none."""
    root = tmp_path / "fleetbox"
    raw = os.fsdecode(b"w\xe9b-1")
    with Store.open(root) as store:
        store.ensure_dir(raw)
        store.save(VM(raw, ip="10.0.0.2"))
        store.create(VM("web-1", ip="10.0.0.3"))
        store.allocate_ip(os.fsdecode(b"x\xff-1"), "10.0.0.0/29")
    index = root / "index.db"
    blobs = (
        "SELECT (SELECT count(*) FROM members WHERE typeof(name) = 'blob'),"
        " (SELECT count(*) FROM reservations WHERE typeof(name) = 'blob')"
    )
    assert rows_of(index, blobs) == [(1, 1)]
    schema.run_alembic(index, "downgrade", "fleetbox_0002")
    assert rows_of(index, blobs) == [(0, 0)]
    assert rows_of(index, "SELECT name FROM members") == [("web-1",)]
    assert rows_of(
        index, "SELECT count(*) FROM fixtures WHERE member_id NOT IN (SELECT id FROM members)"
    ) == [(0,)]
    with Store.open(root) as store:  # upgrades to head, and the reconcile re-adds the row
        assert store.who_has("10.0.0.2") == raw
    assert revision_of(index) == schema.HEAD
