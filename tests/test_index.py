"""The index file under abuse: deleted, emptied, truncated, garbage, someone else's, read-only,
created under sudo, locked by another process, read by several processes while another
writes. Real files, real SQLite, real processes; no mocks.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from internals import index_connection
from stress_helpers import DROP_PRIVILEGES, IS_ROOT, NOBODY

from fleetbox_db import (
    VM,
    DiskError,
    Fixture,
    IndexBusyError,
    Store,
    cluster_name,
)
from fleetbox_db.index import schema
from fleetbox_db.index.connection import DEFAULT_BUSY_TIMEOUT, WAL_LIMIT, classify_error
from fleetbox_db.rules.config import encode_config

NAMES = ("db", "dev", "web-1", "web-2", "web-10")

# Everything a child needs is imported before it may drop to nobody: the interpreter's
# stdlib may live under /root, which nobody cannot search.
PRELUDE = """\
import json, logging, os, signal, sqlite3, sys, time, traceback
from pathlib import Path
import fleetbox_db
from fleetbox_db import VM, Store, FleetboxError
warnings = []
class _Keep(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
_handler = _Keep(logging.WARNING)
logging.getLogger("fleetbox_db").addHandler(_handler)
"""


def child(
    code: str,
    *,
    cwd: Path,
    unprivileged: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter (after PRELUDE); unprivileged drops root to nobody."""
    script = PRELUDE + (DROP_PRIVILEGES if unprivileged and IS_ROOT else "") + code
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def child_json(
    code: str, *, cwd: Path, unprivileged: bool = False, env: dict[str, str] | None = None
) -> Any:
    """The JSON a child prints last; the child must exit 0."""
    result = child(code, cwd=cwd, unprivileged=unprivileged, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_vm(name: str, i: int) -> VM:
    vm = VM(name, ip=f"10.0.0.{i + 2}", cpus=i + 1)
    if i % 2:
        vm.fixtures = [Fixture(f"/srv/{name}", "/mnt/data", "data")]
    return vm


def populate(store: Store, names: tuple[str, ...] = NAMES) -> None:
    for i, name in enumerate(names):
        store.create(make_vm(name, i))


def disk_truth(root: Path) -> list[VM]:
    """Every member whose config parses, read straight from the files (no index)."""
    found = []
    for config in root.glob("clusters/*/*/config.json"):
        found.append((config.parent.parent.name, config.parent.name))
    store = Store(root)
    return [
        store.load(name) for _, name in sorted(found, key=lambda k: (k[0].encode(), k[1].encode()))
    ]


def revision_of(path: Path) -> str | None:
    conn = sqlite3.connect(path)
    try:
        return schema.current_revision(conn)
    finally:
        conn.close()


def corrupt_copies(root: Path) -> list[Path]:
    """The files moved aside (a -wal found next to one goes with it, under its name)."""
    return sorted(p for p in root.glob("index.db.corrupt-*") if not p.name.endswith("-wal"))


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "fleetbox_db" and r.levelno >= logging.WARNING
    ]


@pytest.fixture
def populated(shared_root: Path) -> Path:
    """A root with five members and an index at head, closed (no -wal or -shm left)."""
    with Store.open(shared_root) as store:
        populate(store)
        assert store.list() == ["db", "dev", "web-1", "web-10", "web-2"]
    assert not Path(f"{shared_root}/index.db-wal").exists()
    return shared_root


# -- self-healing -------------------------------------------------------------------------


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) >= 8 * 4096, "the index should span several pages"
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite file\n" * 500)


def _garbled_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:100] = b"\xff" * 100
    path.write_bytes(bytes(data))


def _foreign_tables(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.execute("INSERT INTO users (email) VALUES ('a@example.com')")
    conn.close()


def _foreign_app_id(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.close()


def _revision_row_deleted(path: Path) -> None:
    # Our application id, but no revision at all: not an index any release wrote.
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DELETE FROM alembic_version")
    conn.close()


def _members_dropped(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DROP TABLE fixtures")
        conn.execute("DROP TABLE members")
    conn.close()


BREAKAGES = [
    pytest.param(_empty, id="empty-file"),
    pytest.param(_truncated, id="truncated"),
    pytest.param(_garbage, id="garbage"),
    pytest.param(_garbled_header, id="garbled-header"),
    pytest.param(_foreign_tables, id="foreign-tables"),
    pytest.param(_foreign_app_id, id="foreign-application-id"),
    pytest.param(_revision_row_deleted, id="revision-row-deleted"),
    pytest.param(_members_dropped, id="tables-dropped"),
]


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_bad_index_is_moved_aside_and_rebuilt_from_disk(
    populated: Path, breakage: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    index = populated / "index.db"
    breakage(index)
    bad = index.read_bytes()
    # The Go tool changes the tree meanwhile: the rebuild must show disk as it is now.
    (populated / "clusters" / "web" / "web-2" / "config.json").unlink()
    truth = disk_truth(populated)

    with Store.open(populated) as store, caplog.at_level(logging.WARNING, "fleetbox_db"):
        assert store.list() == ["db", "dev", "web-1", "web-10", "web-2"]
        assert store.vms() == truth
        assert store.members("web") == ["web-1", "web-10", "web-2"]
        assert store.who_has("10.0.0.3") == "dev"
        assert store.check() == []
        store.create(VM("web-3"))
        assert store.migrate() == schema.HEAD

    (aside,) = corrupt_copies(populated)
    assert aside.read_bytes() == bad
    assert aside.name.startswith("index.db.corrupt-20")
    messages = warnings_of(caplog)
    assert len(messages) == 1, messages
    assert str(index) in messages[0]
    assert str(aside) in messages[0]
    assert revision_of(index) == schema.HEAD
    with Store.open(populated) as store:
        assert [vm.name for vm in store.vms()] == ["db", "dev", "web-1", "web-10", "web-3"]


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_bad_index_swapped_in_under_an_open_store_is_rebuilt(
    populated: Path, breakage: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    index = populated / "index.db"
    with Store.open(populated) as store, caplog.at_level(logging.WARNING, "fleetbox_db"):
        assert store.list() == ["db", "dev", "web-1", "web-10", "web-2"]
        # Another process replaces the file: a copy broken, then renamed over it.
        spare = populated / "spare.db"
        spare.write_bytes(index.read_bytes())
        breakage(spare)
        os.rename(spare, index)
        truth = disk_truth(populated)
        assert store.vms() == truth
        store.create(VM("web-3"))
        assert store.list() == ["db", "dev", "web-1", "web-10", "web-2", "web-3"]
    assert len(corrupt_copies(populated)) == 1
    assert len(warnings_of(caplog)) == 1


def test_missing_index_between_calls_is_rebuilt(
    populated: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{populated}/index.db{suffix}").unlink(missing_ok=True)
    with Store.open(populated) as store, caplog.at_level(logging.WARNING, "fleetbox_db"):
        assert store.vms() == disk_truth(populated)
        assert store.who_has("10.0.0.4") == "web-1"
    assert revision_of(populated / "index.db") == schema.HEAD
    assert corrupt_copies(populated) == []
    # Nothing was wrong with a file that did not exist: no warning for a first open.
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("with_sidecars", [False, True], ids=["db-only", "db-wal-shm"])
def test_index_deleted_under_an_open_store_is_noticed(
    populated: Path, with_sidecars: bool, caplog: pytest.LogCaptureFixture
) -> None:
    index = populated / "index.db"
    with Store.open(populated) as store, caplog.at_level(logging.WARNING, "fleetbox_db"):
        assert store.free_ips("10.0.0.0/29") == []
        suffixes = ("", "-wal", "-shm") if with_sidecars else ("",)
        for suffix in suffixes:
            Path(f"{index}{suffix}").unlink()
        (populated / "clusters" / "db" / "db" / "config.json").unlink()
        # The open connection still reads the deleted file, which says .2 is taken.
        assert store.free_ips("10.0.0.0/29") == ["10.0.0.2"]
        assert index.exists()
        assert store.vms() == disk_truth(populated)
        store.create(VM("web-3", ip="10.0.0.2"))
    with Store.open(populated) as store:
        assert store.who_has("10.0.0.2") == "web-3"
    assert corrupt_copies(populated) == []
    messages = warnings_of(caplog)
    assert len(messages) == 1, messages
    assert str(index) in messages[0]


def test_stale_wal_of_a_deleted_index_is_not_replayed(populated: Path) -> None:
    """A process killed with its index open leaves -wal and -shm; the index is then deleted.

    The frames in that -wal belong to the deleted file: replayed into a new index they would
    resurrect its pages (here: a user_version no revision sets, and rows for a VM that is gone).
    """
    result = child(
        textwrap.dedent(
            """\
            conn = sqlite3.connect("index.db", isolation_level=None)
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("PRAGMA user_version = 4242")
            conn.execute("UPDATE members SET image = 'from-the-stale-wal'")
            conn.execute("COMMIT")
            print("written", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
            """
        ),
        cwd=populated,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    wal = Path(f"{populated}/index.db-wal")
    assert wal.stat().st_size > 0
    (populated / "index.db").unlink()
    with Store.open(populated) as store:
        vms = store.vms()
        assert vms == disk_truth(populated)
        assert {vm.image for vm in vms} == {"debian-12"}
        conn = index_connection(store)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        assert conn.execute("SELECT DISTINCT image FROM members").fetchall() == [("debian-12",)]


# -- an index this process cannot write --------------------------------------------------


def _tree_to(root: Path, uid: int) -> None:
    for directory, _, files in os.walk(root):
        os.chown(directory, uid, uid)
        for name in files:
            os.chown(os.path.join(directory, name), uid, uid)


READ_ONLY_CHILD = textwrap.dedent(
    """\
    store = Store.open(Path("."))
    got = {"list": store.list(), "vms": [vm.name for vm in store.vms()]}
    got["load"] = store.load("web-1").ip
    got["free"] = store.free_ips("10.0.0.0/29")
    got["members"] = store.members("web")
    try:
        store.create(VM("new"))
        got["create"] = None
    except FleetboxError as exc:
        got["create"] = [type(exc).__name__, str(exc), str(exc.path)]
    got["exists"] = store.exists("new")
    store.close()
    got["warnings"] = warnings
    print(json.dumps(got))
    """
)


@pytest.mark.parametrize("mode", ["root-owned-tree", "file-0444", "dir-0555"])
def test_read_only_index_answers_from_disk(populated: Path, mode: str) -> None:
    """As root the permission bits do not bind, so the reader drops to nobody."""
    if not IS_ROOT and mode == "root-owned-tree":
        pytest.skip("needs root to own a tree another user reads")
    index = populated / "index.db"
    (populated / "clusters" / "db" / "db" / "config.json").unlink()  # the index is stale
    if mode != "root-owned-tree" and IS_ROOT:
        _tree_to(populated, NOBODY)
    if mode == "file-0444":
        index.chmod(0o444)
    before = index.read_bytes()
    try:
        if mode == "dir-0555":
            populated.chmod(0o555)
        got = child_json(READ_ONLY_CHILD, cwd=populated, unprivileged=True)
    finally:
        populated.chmod(0o755)
    create, messages = got.pop("create"), got.pop("warnings")
    assert got == {
        "list": ["db", "dev", "web-1", "web-10", "web-2"],
        "vms": ["dev", "web-1", "web-10", "web-2"],
        "load": "10.0.0.4",
        "free": ["10.0.0.2"],
        "members": ["web-1", "web-10", "web-2"],
        "exists": False,
    }
    assert create[0] == "IndexUnavailableError"
    assert "not writable" in create[1]
    assert "index.db" in create[1]
    assert create[2] == "index.db"
    assert len(messages) == 1, messages
    assert "answering from disk" in messages[0]
    assert index.read_bytes() == before
    assert corrupt_copies(populated) == []


@pytest.mark.skipif(not IS_ROOT, reason="chown to another user needs root")
@pytest.mark.parametrize("crash", [False, True], ids=["clean-exit", "killed"])
def test_files_created_under_sudo_belong_to_the_invoking_user(
    shared_root: Path, crash: bool
) -> None:
    Store.open(shared_root).close()
    _tree_to(shared_root, NOBODY)  # the user's own tree, now used through sudo
    env = {**os.environ, "SUDO_UID": str(NOBODY), "SUDO_GID": str(NOBODY), "SUDO_USER": "nobody"}
    code = textwrap.dedent(
        """\
        store = Store.open(Path("."))
        store.create(VM("web-1"))
        store.list()
        owners = {p: os.stat(p).st_uid for p in
                  ("index.db", "index.lock", "index.db-wal", "index.db-shm") if os.path.exists(p)}
        print(json.dumps(owners), flush=True)
        """
    ) + ("os.kill(os.getpid(), signal.SIGKILL)\n" if crash else "store.close()\n")
    result = child(code, cwd=shared_root, env=env)
    assert result.returncode == (-signal.SIGKILL if crash else 0), result.stderr
    owners = json.loads(result.stdout.splitlines()[0])
    assert owners == dict.fromkeys(owners, NOBODY)
    assert {"index.db", "index.lock", "index.db-wal", "index.db-shm"} <= owners.keys()
    for name in ("index.db", "index.lock", "index.db-wal", "index.db-shm"):
        path = shared_root / name
        if path.exists():
            assert (path.stat().st_uid, path.stat().st_gid) == (NOBODY, NOBODY), name
    # The user's next run (no sudo) can write the index sudo created.
    got = child_json(
        "store = Store.open(Path('.'))\n"
        "store.create(VM('db'))\n"
        "print(json.dumps([store.list(), warnings]))",
        cwd=shared_root,
        unprivileged=True,
    )
    assert got == [["db", "web-1"], []]


# -- another process holds the write lock ----------------------------------------------


@pytest.fixture
def writer_holding_lock(populated: Path) -> Iterator[Path]:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "conn = sqlite3.connect('index.db', isolation_level=None)\n"
            "conn.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
        ],
        cwd=populated,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        yield populated / "index.db"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_busy_index_raises_index_busy_error_for_writes(
    writer_holding_lock: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = writer_holding_lock.parent
    with Store.open(root, busy_timeout=0.5) as store, caplog.at_level(logging.WARNING):
        assert store.list() == ["db", "dev", "web-1", "web-10", "web-2"]
        started = time.monotonic()
        with pytest.raises(IndexBusyError) as info:
            store.create(VM("new"))
        waited = time.monotonic() - started
        assert isinstance(info.value, TimeoutError)
        assert not isinstance(info.value, sqlite3.Error)
        assert str(writer_holding_lock) in str(info.value)
        assert info.value.path == writer_holding_lock
        assert 0.4 <= waited < 10
        assert not store.exists("new")
        # Disk changes behind the index; the reconcile cannot take the lock: the readers
        # answer from the index with the reconcile applied in memory, at once.
        (root / "clusters" / "dev" / "dev" / "config.json").unlink()
        (root / "clusters" / "web" / "web-3").mkdir()
        (root / "clusters" / "web" / "web-3" / "config.json").write_bytes(
            encode_config(VM("web-3", ip="10.0.0.9"))
        )
        assert store.list() == ["db", "dev", "web-1", "web-10", "web-2", "web-3"]
        assert [vm.name for vm in store.vms()] == ["db", "web-1", "web-10", "web-2", "web-3"]
        assert store.who_has("10.0.0.9") == "web-3"
        assert "10.0.0.3" in store.free_ips("10.0.0.0/28")
    assert not any("answering from disk" in m for m in warnings_of(caplog))


def test_a_write_that_times_out_is_its_own_error_and_leaves_no_cycle(
    writer_holding_lock: Path,
) -> None:
    """IndexBusyError is an OSError (TimeoutError); the write path turns OSErrors of the
    index's files into typed errors, and once raised this one again "from" itself: its
    __cause__ was itself, a cycle holding the writer's frames and scan until a collection,
    one per timed-out write."""
    with Store.open(writer_holding_lock.parent, busy_timeout=0.05) as store:
        store.list()
        gc.collect()
        gc.disable()
        try:
            for attempt in range(3):
                with pytest.raises(IndexBusyError) as info:
                    store.create(VM(f"new-{attempt}"))
                assert info.value.__cause__ is not info.value
                assert isinstance(info.value.__cause__, sqlite3.OperationalError)
                del info
            assert gc.collect() == 0
        finally:
            gc.enable()


def test_a_disk_error_in_a_write_is_not_its_own_cause(store: Store) -> None:
    """DiskError is an OSError too: the write path raised it again "from" itself."""
    store.create(VM("web-1"))
    (store.base_dir / "clusters" / cluster_name("blocked-1")).write_bytes(b"")  # not a dir
    with pytest.raises(DiskError) as info:
        store.create(VM("blocked-1"))
    assert info.value.__cause__ is not info.value
    assert "blocked-1" in str(info.value)


# -- SQLite settings ---------------------------------------------------------------------


def test_connection_pragmas(store: Store) -> None:
    store.list()
    conn = index_connection(store)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == int(DEFAULT_BUSY_TIMEOUT * 1000)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
    assert conn.isolation_level is None  # we write BEGIN ourselves
    with Store.open(store.base_dir, busy_timeout=2.5) as other:
        other.list()
        assert index_connection(other).execute("PRAGMA busy_timeout").fetchone()[0] == 2500


def test_the_wal_shrinks_back_after_a_large_transaction(store: Store) -> None:
    """A large write (saving 100,000 VM records is about 20 MB) grows the -wal file; once it
    is checkpointed, the next write truncates it to the limit instead of keeping it for as
    long as any connection stays open."""
    store.create(make_vm("web-1", 1))
    conn = index_connection(store)
    wal = Path(f"{store.base_dir}/index.db-wal")
    for sql, args in (
        ("INSERT INTO vm_records (id, seq, blob) VALUES (999, -1, ?)", (bytes(12 << 20),)),
        ("DELETE FROM vm_records WHERE id = 999", ()),
    ):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, args)
        conn.execute("COMMIT")
    assert wal.stat().st_size > 12 << 20
    store.create(make_vm("web-2", 2))  # the first write after the checkpoint resets the WAL
    assert wal.stat().st_size <= WAL_LIMIT
    assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == WAL_LIMIT


def test_only_another_connection_holding_the_lock_counts_as_busy(tmp_path: Path) -> None:
    """SQLITE_BUSY ("database is locked"): another connection holds the lock, so waiting
    helps. SQLITE_LOCKED ("database table is locked") comes from this very connection (a
    table dropped under its own open statement): no wait ends it, and it must not be
    reported as another process holding the index."""
    path = tmp_path / "t.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("INSERT INTO t VALUES (1), (2)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as busy:
        other.execute("BEGIN IMMEDIATE")
    holder.execute("ROLLBACK")
    cursor = holder.execute("SELECT x FROM t")
    cursor.fetchone()
    with pytest.raises(sqlite3.OperationalError) as locked:
        holder.execute("DROP TABLE t")
    assert locked.value.sqlite_errorcode == sqlite3.SQLITE_LOCKED
    assert classify_error(busy.value) == "busy"
    assert classify_error(locked.value) == "other"
    cursor.close()
    holder.close()
    other.close()


def test_foreign_keys_cascade_fixtures(store: Store) -> None:
    store.create(make_vm("web-1", 1))
    conn = index_connection(store)
    assert conn.execute("SELECT count(*) FROM fixtures").fetchone()[0] == 1
    store.delete("web-1")
    assert conn.execute("SELECT count(*) FROM fixtures").fetchone()[0] == 0


# -- the hot path ------------------------------------------------------------------------


def test_hot_path_imports_no_alembic_sqlalchemy_or_filelock(populated: Path) -> None:
    """On an index at head nothing needs an upgrade or the index.lock: importing Alembic and
    SQLAlchemy costs ~1.5 s, filelock more than a whole list()."""
    got = child_json(
        textwrap.dedent(
            """\
            store = Store.open(Path("."))
            out = {"list": store.list()}
            def heavy():
                costly = {"alembic", "sqlalchemy", "filelock"}
                return sorted({m.split(".")[0] for m in sys.modules} & costly)
            out["after_list"] = heavy()
            store.vms(); store.load("web-1"); store.free_ips("10.0.0.0/24")
            out["after_reads"] = heavy()
            store.create(VM("new")); store.delete("new")
            out["after_writes"] = heavy()
            print(json.dumps(out))
            """
        ),
        cwd=populated,
    )
    assert got == {
        "list": ["db", "dev", "web-1", "web-10", "web-2"],
        "after_list": [],
        "after_reads": [],
        "after_writes": [],
    }


# -- several processes -------------------------------------------------------------------

READER = textwrap.dedent(
    """\
    store = Store.open(Path("."))
    deadline = time.monotonic() + float(sys.argv[1])
    calls = errors = 0
    first_error = None
    while time.monotonic() < deadline:
        try:
            names = store.list()
            assert names[:2] == ["db", "dev"], names
            vms = store.vms()
            assert all(vm.name in ("db", "dev") or vm.name.startswith("web-") for vm in vms)
            calls += 1
        except Exception:
            errors += 1
            first_error = first_error or traceback.format_exc()
    print(json.dumps({"calls": calls, "errors": errors, "first": first_error,
                      "warnings": warnings}))
    """
)

WRITER = textwrap.dedent(
    """\
    store = Store.open(Path("."))
    deadline = time.monotonic() + float(sys.argv[1])
    cycles = errors = 0
    first_error = None
    while time.monotonic() < deadline:
        name = f"web-{100 + cycles % 7}"
        try:
            store.create(VM(name), subnet="10.0.0.0/24")
            store.delete(name)
            cycles += 1
        except Exception:
            errors += 1
            first_error = first_error or traceback.format_exc()
    store.create(VM("web-last"), subnet="10.0.0.0/24")
    print(json.dumps({"calls": cycles, "errors": errors, "first": first_error,
                      "warnings": warnings}))
    """
)


@pytest.mark.slow
def test_concurrent_list_while_another_process_creates_and_deletes(populated: Path) -> None:
    seconds = "5"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PRELUDE + code, seconds],
            cwd=populated,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for code in [WRITER] + [READER] * 4
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    for got in results:
        assert got["errors"] == 0, got["first"]
        assert got["warnings"] == []
        assert got["calls"] > 0
    with Store.open(populated) as store:
        assert store.list() == ["db", "dev", "web-1", "web-10", "web-2", "web-last"]
        assert store.vms() == disk_truth(populated)
        assert store.load("web-last").ip == "10.0.0.7"  # .2-.6 belong to the five members
        assert store.check() == []


def _open_with_wal(path: str, go: Any, results: Any) -> None:
    from fleetbox_db.index.connection import connect

    go.wait()
    try:
        conn = connect(Path(path), 30.0, wal=True)
        conn.execute("SELECT count(*) FROM t").fetchone()
        conn.close()
        results.put("ok")
    except sqlite3.Error as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_index_together_all_switch_it_to_wal(tmp_path: Path) -> None:
    """A new index is built in rollback mode and renamed into place; the first openers
    switch it to WAL. SQLite answers a switch that meets another connection's lock with
    "database is locked" at once, without the busy timeout: six processes opening together
    had one fail in 27 of 60 rounds, an IndexBusyError for a create on a fresh root. Real
    processes, ten rounds."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for round_ in range(10):
        path = tmp_path / f"index-{round_}.db"
        made = sqlite3.connect(path)
        made.execute("CREATE TABLE t (x)")
        made.commit()
        made.close()
        go, results = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_open_with_wal, args=(str(path), go, results)) for _ in range(6)
        ]
        for proc in procs:
            proc.start()
        go.set()
        seen = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert seen == ["ok"] * 6, f"round {round_}"
        check = sqlite3.connect(path)
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        check.close()
