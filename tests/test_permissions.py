"""Reading a tree the index cannot be written in: root-owned, or a read-only index.db.

The reader is a real process as another user: as root (CI) it drops to nobody with setuid
after importing everything it needs (the interpreter may live under /root, which nobody
cannot search). The tree sits under a 0711 directory outside pytest's root-only tmp dirs,
because SQLite and the library open files by absolute path.

Whatever it cannot write, the reader must answer every read from disk, exactly as a fresh
walk says (the index is stale on purpose: disk changed after it was built), refuse writes
with a typed error, and change nothing: not a byte of the tree, not the index.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import go_write
from stress_helpers import DROP_PRIVILEGES, IS_ROOT, NOBODY

from fleetbox_db import VM, Fixture, Store

TESTS = Path(__file__).resolve().parent

# Imported before privileges drop: nobody cannot import from /root later.
PRELUDE = f"""\
import json, logging, os, sys, traceback
sys.path.insert(0, {str(TESTS)!r})
import filelock, sqlite3
import fleetbox_db
from fleetbox_db import VM, FleetboxError, Store
import fleetbox_db.disk.fallback, fleetbox_db.disk.problems, fleetbox_db.index.mirror
from stress_helpers import (disk_configs, expected_problems, held_ips, oracle_free, parse,
    stray, walk, who_has)
warnings = []
class _Keep(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("fleetbox_db").addHandler(_Keep(logging.WARNING))
"""

# Every read checked against the walk of disk as this user sees it; every write attempted.
READER = textwrap.dedent(
    """\
    root = sys.argv[1]
    out = {"uid": os.geteuid()}
    store = Store.open(root)
    configs = disk_configs(root)
    view = {k: parse(d) for k, d in configs.items()}
    assert store.list() == [k[1] for k in configs], (store.list(), list(configs))
    assert store.vms() == [v for k, v in view.items() if v is not None and not stray(k)]
    for subnet in ("10.9.0.0/29", "10.9.0.0/24"):
        assert store.free_ips(subnet) == oracle_free(subnet, held_ips(view)), subnet
    for cluster in sorted({k[0] for k in configs}):
        assert store.members(cluster) == [k[1] for k in configs if k[0] == cluster]
    for value in ("10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "02:00:00:00:00:01"):
        assert store.who_has(value) == who_has(view, {}, value), value
    states = {e.name: e.state for e in store.entries()}
    out["states"] = states
    problems = {(p.kind, p.members, p.value) for p in store.check()}
    index_problems = {p for p in problems if p[0] == "index"}
    assert problems - index_problems == expected_problems(root, configs), problems
    out["index_problems"] = len(index_problems)
    for name in ("web-1", "secret-1"):
        try:
            out["load " + name] = store.load(name).ip
        except FleetboxError as exc:
            out["load " + name] = type(exc).__name__
    writes = {
        "create": lambda: store.create(VM("new-1")),
        "create-subnet": lambda: store.create(VM("new-2"), subnet="10.9.0.0/24"),
        "save": lambda: store.save(store.load("web-1")),
        "allocate_ip": lambda: store.allocate_ip("new-3", "10.9.0.0/24"),
        "reconcile": lambda: store.reconcile(),
        "migrate": lambda: store.migrate(),
    }
    for what, call in writes.items():
        try:
            call()
            out[what] = "ok"
        except FleetboxError as exc:
            assert str(exc), what
            out[what] = type(exc).__name__
    assert store.list() == [k[1] for k in configs]  # and still answering
    store.close()
    out["warnings"] = warnings
    print(json.dumps(out))
    """
)


def run_reader(root: Path, *, drop: bool) -> dict[str, Any]:
    script = PRELUDE + (DROP_PRIVILEGES if drop else "") + READER
    done = subprocess.run(
        [sys.executable, "-c", script, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def tree_state(top: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every path under top: (mode, uid, size, content digest), which a reader must not change."""
    found: dict[str, tuple[int, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for entry in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(entry)
            digest = ""
            if stat.S_ISREG(st.st_mode):
                try:
                    digest = hashlib.sha256(Path(entry).read_bytes()).hexdigest()
                except PermissionError:  # pragma: no cover - we are root or the owner
                    digest = "?"
            found[os.path.relpath(entry, top)] = (st.st_mode, st.st_uid, st.st_size, digest)
    return found


def build(root: Path) -> None:
    """A populated root whose index is then made stale by edits behind its back."""
    with Store.open(root) as store:
        store.create(VM("web-1", ip="10.9.0.2", mac="02:00:00:00:00:01"))
        store.create(VM("web-2", ip="10.9.0.3", fixtures=[Fixture("/srv", "/mnt", "data")]))
        store.create(VM("db", ip="10.9.0.4"))
        store.create(VM("secret-1", ip="10.9.0.6"))
        store.ensure_dir("empty-1")
        store.list()
    # Behind the index's back: an in-place rewrite, an rm -rf, a new member, a stray dir.
    web2 = root / "clusters" / "web" / "web-2" / "config.json"
    go_write(web2, web2.read_bytes().replace(b"10.9.0.3", b"10.9.0.5"))
    for path in sorted((root / "clusters" / "db").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (root / "clusters" / "db").rmdir()
    new = root / "clusters" / "web" / "web-3"
    new.mkdir()
    (new / "config.json").write_bytes(b'{"name": "web-3", "ip": "10.9.0.7"}')
    stray = root / "clusters" / "zz" / "web-9"
    stray.mkdir(parents=True)
    (stray / "config.json").write_bytes(b'{"name": "web-9", "ip": "10.9.0.2"}')  # a conflict
    os.chmod(root / "clusters" / "secret" / "secret-1" / "config.json", 0o600)


@pytest.fixture
def stale_shared_root(shared_root: Path) -> Path:
    """A shared_root built by build(): populated, then its index made stale behind its back."""
    build(shared_root)
    return shared_root


def chown_tree(root: Path, uid: int) -> None:
    for dirpath, _, filenames in os.walk(root):
        os.chown(dirpath, uid, uid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), uid, uid)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to own a tree another user reads")
def test_root_owned_tree_is_read_by_nobody_from_disk(stale_shared_root: Path) -> None:
    before = tree_state(stale_shared_root.parent)
    got = run_reader(stale_shared_root, drop=True)
    assert got["uid"] == NOBODY
    assert tree_state(stale_shared_root.parent) == before, (
        "a reader without write access changed the tree"
    )
    # The 0600 config is unreadable to nobody: a member, but no record and no address.
    assert got["states"] == {
        "secret-1": "unreadable",
        "empty-1": "configless",
        "web-1": "conflict",
        "web-2": "ok",
        "web-3": "ok",
        "web-9": "stray",
    }
    assert got["load web-1"] == "10.9.0.2"
    assert got["load secret-1"] == "ConfigError"
    for write in ("create", "create-subnet", "save", "allocate_ip", "reconcile", "migrate"):
        assert got[write] in ("IndexUnavailableError", "StorageRootError"), (write, got[write])
    assert got["index_problems"] == 1
    assert len(got["warnings"]) == 1, got["warnings"]
    assert "answering from disk" in got["warnings"][0]


@pytest.mark.parametrize("mode", ["index-0444", "root-dir-0555"])
def test_read_only_index_still_lists(stale_shared_root: Path, mode: str) -> None:
    """The reader owns the tree (as root: nobody does) but cannot write the index."""
    with Store.open(stale_shared_root) as store:
        store.list()  # a current index, then made stale again
    go_write(stale_shared_root / "clusters" / "web" / "web-1" / "config.json", b'{"name": "web-1"}')
    if IS_ROOT:
        chown_tree(stale_shared_root, NOBODY)
    index = stale_shared_root / "index.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    index.chmod(0o444)
    if mode == "root-dir-0555":
        stale_shared_root.chmod(0o555)
    before = tree_state(stale_shared_root.parent)
    try:
        got = run_reader(stale_shared_root, drop=IS_ROOT)
        after = tree_state(stale_shared_root.parent)
    finally:
        stale_shared_root.chmod(0o755)
    assert after == before
    # The reader owns every config (as root: nobody does), so the 0600 one reads too.
    assert got["states"] == {
        "secret-1": "ok",
        "empty-1": "configless",
        "web-1": "ok",
        "web-2": "ok",
        "web-3": "ok",
        "web-9": "stray",
    }
    assert got["load web-1"] == ""
    for write in ("create", "create-subnet", "save", "allocate_ip", "reconcile", "migrate"):
        assert got[write] == "IndexUnavailableError", (write, got[write])
    assert "answering from disk" in got["warnings"][0]


DELETE_AS_OTHER = textwrap.dedent(
    """\
    store = Store.open(sys.argv[1])
    try:
        store.delete("web-1")
        print(json.dumps("deleted"))
    except FleetboxError as exc:
        print(json.dumps([type(exc).__name__, str(exc)]))
    except OSError as exc:
        print(json.dumps(["raw " + type(exc).__name__, str(exc)]))
    """
)


def test_regression_delete_of_a_member_holding_a_file_it_cannot_remove_raises_raw_oserror(
    stale_shared_root: Path,
) -> None:
    locked = stale_shared_root / "clusters" / "web" / "web-1" / "locked"
    if IS_ROOT:
        chown_tree(
            stale_shared_root, NOBODY
        )  # the reader owns the tree, but not what is inside locked/
    locked.mkdir()
    (locked / "held").write_text("a file the deleting user may not unlink")
    if not IS_ROOT:
        locked.chmod(0o555)
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                PRELUDE + (DROP_PRIVILEGES if IS_ROOT else "") + DELETE_AS_OTHER,
                stale_shared_root,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        locked.chmod(0o755)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == "deleted" or not answer[0].startswith("raw "), answer
    assert answer == "deleted" or str(locked) in answer[1]
