"""Things planted in the tree by someone else: symlinks where index files and locks go, FIFOs,
device nodes and giant files named config.json, a filesystem mounted inside a member.

Under sudo (SPEC §6) each of these was a way to make root write or empty a file outside the
root. The rule tested here: nothing outside <root> is created, written or removed, the
planted thing is refused with a typed error naming it, and reads keep answering from disk.
Real files, real mounts (skipped where mount(2) is not allowed), no mocks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import config, config_path

from fleetbox_db import (
    VM,
    DiskError,
    Fixture,
    IndexUnavailableError,
    InvalidValueError,
    Store,
)

MAX_CONFIG_BYTES = 1 << 20  # fleetbox_db.disk.files.MAX_CONFIG_BYTES

SUBNET = "10.0.0.0/24"


def snapshot(path: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under *path* (or *path* itself): mode, size and bytes, not following links."""
    found: dict[str, tuple[int, int, bytes]] = {}
    targets = [path] if not path.is_dir() else sorted(path.rglob("*"))
    for p in targets:
        st = p.lstat()
        data = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        found[str(p)] = (st.st_mode, st.st_size, data)
    return found


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the root that a planted symlink points at (/etc/shadow under sudo)."""
    path = tmp_path / "outside" / "shadow"
    path.parent.mkdir()
    path.write_bytes(b"root:secret\n")
    path.chmod(0o600)
    return path


def populated(root: Path) -> Store:
    store = Store.open(root)
    store.create(VM("web-1", ip="10.0.0.2"))
    store.create(VM("db-1", ip="10.0.0.3"))
    return store


# -- index.lock, index.db, -wal, -shm -------------------------------------------------------


@pytest.mark.parametrize("planted", ["index.lock", "index.db", "index.db-wal", "index.db-shm"])
def test_a_symlink_in_place_of_an_index_file_is_never_followed(
    root: Path, victim: Path, planted: str, caplog: pytest.LogCaptureFixture
) -> None:
    root.mkdir()
    (root / planted).symlink_to(victim)
    before = snapshot(victim.parent)
    with Store.open(root) as store, caplog.at_level(logging.WARNING, "fleetbox_db"):
        with pytest.raises(IndexUnavailableError, match=planted) as raised:
            store.create(VM("web-1", ip="10.0.0.2"))
        assert "remove it" in str(raised.value)
        assert store.list() == []  # reads answer from disk
        assert store.vms() == []
    assert snapshot(victim.parent) == before
    assert (root / planted).is_symlink()


def test_a_dangling_index_symlink_creates_nothing_outside_the_root(
    root: Path, tmp_path: Path
) -> None:
    root.mkdir()
    target = tmp_path / "outside" / "stolen.db"
    target.parent.mkdir()
    (root / "index.db").symlink_to(target)
    with Store.open(root) as store:
        (root / "clusters" / "web" / "web-1").mkdir(parents=True)
        config_path(root, "web-1").write_bytes(config("web-1", ip="10.0.0.2"))
        assert store.list() == ["web-1"]
        assert [vm.name for vm in store.vms()] == ["web-1"]
        assert store.free_ips(SUBNET, limit=1) == ["10.0.0.3"]
        with pytest.raises(IndexUnavailableError):
            store.allocate_ip("db-1", SUBNET)
    assert list(target.parent.iterdir()) == []


def test_an_index_symlink_into_another_root_leaves_that_root_alone(tmp_path: Path) -> None:
    other = tmp_path / "other"
    with populated(other):
        pass
    before = snapshot(other)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.db").symlink_to(other / "index.db")
    with Store.open(mine) as store:
        assert store.list() == []
        with pytest.raises(IndexUnavailableError):
            store.create(VM("dev"))
    assert snapshot(other) == before


@pytest.mark.parametrize("planted", ["index.lock", "index.db"])
def test_a_directory_in_place_of_an_index_file_is_refused_by_name(root: Path, planted: str) -> None:
    (root / planted).mkdir(parents=True)
    with Store.open(root) as store:
        assert store.list() == []
        with pytest.raises(IndexUnavailableError, match=planted):
            store.create(VM("web-1"))


def test_a_fifo_index_lock_hangs_nothing(root: Path) -> None:
    root.mkdir()
    os.mkfifo(root / "index.lock")
    with Store.open(root) as store:
        (root / "clusters" / "web" / "web-1").mkdir(parents=True)
        assert store.list() == ["web-1"]
        with pytest.raises(IndexUnavailableError, match=r"index\.lock.*FIFO"):
            store.create(VM("db-1"))


# -- the member's .lock ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo"])
def test_try_lock_refuses_a_lock_that_is_not_a_regular_file(
    store: Store, victim: Path, kind: str
) -> None:
    store.ensure_dir("web-1")
    lock = store.vm_dir("web-1") / ".lock"
    {"symlink": lambda: lock.symlink_to(victim), "directory": lock.mkdir}.get(
        kind, lambda: os.mkfifo(lock)
    )()
    before = snapshot(victim.parent)
    with pytest.raises(DiskError, match=r"\.lock.*remove it"):
        store.try_lock("web-1")
    assert snapshot(victim.parent) == before


# -- odd and giant config.json ---------------------------------------------------------------


def _ls(store: Store) -> dict[str, tuple[str, str | None]]:
    return {e.name: (e.state, e.vm.ip if e.vm else None) for e in store.entries()}


def test_a_fifo_config_is_unreadable_and_its_blocked_writer_stays_blocked(
    root: Path,
) -> None:
    store = populated(root)
    path = config_path(root, "web-1")
    path.unlink()
    os.mkfifo(path)
    writer = subprocess.Popen(
        [sys.executable, "-c", f"open({str(path)!r}, 'w').write('x')"],
    )
    try:
        time.sleep(0.2)
        assert _ls(store)["web-1"] == ("unreadable", "10.0.0.2")  # last good row and IP
        assert "10.0.0.2" not in store.free_ips(SUBNET, limit=4)
        time.sleep(0.2)
        assert writer.poll() is None, "opening the FIFO released its writer"
    finally:
        writer.kill()
        writer.wait()
        store.close()


def test_a_device_node_config_is_never_opened(root: Path) -> None:
    store = populated(root)
    path = config_path(root, "web-1")
    path.unlink()
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    assert _ls(store)["web-1"] == ("unreadable", "10.0.0.2")
    store.close()


def test_a_symlinked_config_is_not_followed(root: Path, tmp_path: Path) -> None:
    store = populated(root)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(config("web-1", ip="10.0.0.9"))
    path = config_path(root, "web-1")
    path.unlink()
    path.symlink_to(elsewhere)
    assert _ls(store)["web-1"] == ("unreadable", "10.0.0.2")
    store.close()


def test_saving_over_a_symlinked_config_takes_nothing_from_its_target(
    root: Path, victim: Path
) -> None:
    store = populated(root)
    path = config_path(root, "web-1")
    path.unlink()
    path.symlink_to(victim)
    before = snapshot(victim.parent)
    store.save(VM("web-1", ip="10.0.0.2"))
    assert not path.is_symlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not the target's 0600
    assert snapshot(victim.parent) == before
    store.close()


def test_a_giant_sparse_config_is_unreadable_at_once(root: Path) -> None:
    store = populated(root)
    path = config_path(root, "web-1")
    os.truncate(path, 4 << 30)  # 4 GB, sparse: no disk used
    started = time.monotonic()
    assert _ls(store)["web-1"] == ("unreadable", "10.0.0.2")
    assert [vm.name for vm in store.vms()] == ["db-1"]
    assert time.monotonic() - started < 5  # reading it took 33 s and 4 GB RSS
    with pytest.raises(Exception, match="limit"):
        store.load("web-1")
    store.close()


def test_a_config_just_over_the_cap_is_unreadable_and_one_at_the_cap_parses(root: Path) -> None:
    store = populated(root)
    data = config("web-1", ip="10.0.0.2")
    padded = data[:-1] + b',\n  "pad": "' + b"x" * (MAX_CONFIG_BYTES - len(data) - 14) + b'"\n}'
    assert len(padded) == MAX_CONFIG_BYTES
    config_path(root, "web-1").write_bytes(padded)
    assert _ls(store)["web-1"] == ("ok", "10.0.0.2")
    config_path(root, "web-1").write_bytes(padded + b" ")
    assert _ls(store)["web-1"] == ("unreadable", "10.0.0.2")
    store.close()


def test_a_fifo_named_like_a_lease_does_not_block_listings(root: Path) -> None:
    store = populated(root)
    (root / "leases").mkdir(exist_ok=True)
    os.mkfifo(root / "leases" / "10.0.0.9")
    assert store.free_ips(SUBNET, limit=2) == ["10.0.0.4", "10.0.0.5"]
    assert store.allocate_ip("new-1", SUBNET) == "10.0.0.4"
    store.close()


# -- a filesystem mounted inside a member ----------------------------------------------------


@contextlib.contextmanager
def mounted(where: Path) -> Iterator[None]:
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("depth", ["member", "nested"])
def test_delete_never_crosses_a_mount_and_changes_nothing_when_it_refuses(
    root: Path, depth: str
) -> None:
    store = populated(root)
    member = store.vm_dir("web-1")
    (member / "disk.raw").write_bytes(b"disk")
    where = member / "host" if depth == "member" else member / "a" / "b" / "host"
    where.mkdir(parents=True)
    with mounted(where):
        (where / "precious").write_bytes(b"host data")
        before = snapshot(member)
        with pytest.raises(DiskError, match="mount"):
            store.delete("web-1")
        # Only the empty .lock the delete took (issue 14) may be new: the Go tool makes the
        # same file whenever it locks, and unlinking a lock file another process may have
        # opened meanwhile would let two holders lock two different files.
        after = snapshot(member)
        after.pop(str(member / ".lock"), None)
        assert after == before
        assert "web-1" in store.list()
    store.close()


# -- VM(...) with wrong types ----------------------------------------------------------------


@pytest.mark.parametrize(
    "vm",
    [
        pytest.param(VM("web-1", fixtures=None), id="fixtures-None"),  # type: ignore[arg-type]
        pytest.param(VM("web-1", extra=None), id="extra-None"),  # type: ignore[arg-type]
        pytest.param(VM("web-1", extra={1: 2}), id="extra-int-key"),  # type: ignore[dict-item]
        pytest.param(VM("web-1", fixtures=[None]), id="fixture-None"),  # type: ignore[list-item]
        pytest.param(VM("web-1", fixtures="abc"), id="fixtures-str"),  # type: ignore[arg-type]
        pytest.param(VM("web-1", ip=None), id="ip-None"),  # type: ignore[arg-type]
        pytest.param(VM("web-1", mac=None), id="mac-None"),  # type: ignore[arg-type]
        pytest.param(VM("web-1", cpus=None), id="cpus-None"),  # type: ignore[arg-type]
        pytest.param(
            VM("web-1", fixtures=[Fixture(None, "/g", "L")]),  # type: ignore[arg-type]
            id="fixture-host-None",
        ),
    ],
)
def test_wrong_types_in_a_vm_are_invalid_values(root: Path, vm: VM) -> None:
    with Store.open(root) as store:
        with pytest.raises(InvalidValueError):
            store.create(vm)
        with pytest.raises(InvalidValueError):
            store.save(vm)
        assert store.list() == []
    assert not (root / "clusters" / "web").exists()


def test_planted_files_leave_the_tree_usable_once_removed(root: Path) -> None:
    (root / "index.lock").mkdir(parents=True)
    with Store.open(root) as store:
        with pytest.raises(IndexUnavailableError):
            store.create(VM("web-1"))
        shutil.rmtree(root / "index.lock")
        assert store.create(VM("web-1")).name == "web-1"
        assert store.list() == ["web-1"]


def test_a_config_too_large_to_read_back_is_never_written(root: Path) -> None:
    """Reads stop at MAX_CONFIG_BYTES (a planted 4 GB file); writes must too, or create()
    would make a member no listing can read (found by the hostile-fixtures property)."""
    from fleetbox_db import Fixture, InvalidValueError
    from fleetbox_db.rules.config import MAX_CONFIG_BYTES

    big = [Fixture("/h" * 1000, "/g", f"L{i}") for i in range(MAX_CONFIG_BYTES // 2000 + 1)]
    with Store.open(root) as store:
        with pytest.raises(InvalidValueError, match="over the 1048576 byte limit"):
            store.create(VM("web-1", fixtures=big))
        assert not store.exists("web-1")
        store.create(VM("web-1"))
        vm = store.load("web-1")
        vm.fixtures = big
        with pytest.raises(InvalidValueError, match="byte limit"):
            store.save(vm)
        assert store.load("web-1").fixtures == []
