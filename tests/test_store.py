"""The Store facade on real files, real SQLite and real processes; no mocks.

The first section ports every test of the Go store (store_test.go, facts §8) with its exact
assertions; the rest covers what the Go store does not: refusal before writing, hostile
names, symlinks on delete, locks across processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import go_write

from fleetbox_db import (
    VM,
    ConfigError,
    Fixture,
    InvalidNameError,
    InvalidValueError,
    Lock,
    LockedError,
    StorageRootError,
    Store,
    VMExistsError,
    VMNotFoundError,
    generate_mac,
)
from fleetbox_db.rules.config import encode_config

Snapshot = dict[str, tuple[int, int, int, int, bytes]]


def snapshot(top: Path) -> Snapshot:
    """Every path under top (top included, symlinks not followed) with its lstat and bytes."""
    found: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for path in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(path)
            content = b""
            if stat.S_ISREG(st.st_mode):
                content = Path(path).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                content = os.fsencode(os.readlink(path))
            found[os.path.relpath(path, top)] = (
                st.st_mode,
                st.st_mtime_ns,
                st.st_size,
                st.st_ino,
                content,
            )
    return found


def listing(path: Path) -> list[str]:
    return sorted(os.listdir(path))


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# --- the Go store tests (facts §8), with their exact assertions -------------------------


def test_new_honors_env_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TestNewHonorsEnvHome."""
    branded = tmp_path / "branded"
    monkeypatch.setenv("FLEETBOX_HOME", str(branded))
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert not branded.exists()
    with Store.open() as store:
        assert store.base_dir == branded
        for sub in ("clusters", "images", "run"):
            assert (branded / sub).is_dir()
        # Opening alone creates these three and nothing else: no bin/, networks/ or index.
        assert listing(branded) == ["clusters", "images", "run"]


def test_new_default_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TestNewDefaultUnchanged: an empty FLEETBOX_HOME counts as unset."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FLEETBOX_HOME", "")
    monkeypatch.delenv("SUDO_USER", raising=False)
    with Store.open() as store:
        assert store.base_dir == tmp_path / ".fleetbox"
        assert (tmp_path / ".fleetbox" / "clusters").is_dir()


def test_store_basic(tmp_path: Path) -> None:
    """TestStoreBasic: a solo VM is a cluster of one."""
    with Store.open(tmp_path) as store:
        assert tmp_path.is_dir()
        assert (tmp_path / "clusters").is_dir()
        assert (tmp_path / "images").is_dir()
        assert store.vm_dir("test") == tmp_path / "clusters" / "test" / "test"
        assert store.images_dir == tmp_path / "images"
        assert store.ssh_key_path == tmp_path / "id_ed25519"


def test_a_root_spelled_with_dotdot_after_a_symlink_lands_where_go_puts_it(
    tmp_path: Path,
) -> None:
    """Go joins every path with filepath.Join, which cleans ``lnk/..`` away before the kernel
    sees it; kept, the kernel would resolve ``..`` from the link's target instead."""
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "lnk").symlink_to(tmp_path / "elsewhere" / "deep")
    spelled = f"{tmp_path}/x/lnk/../root"
    go_root = tmp_path / "x" / "root"  # what filepath.Join(spelled, ...) starts with
    member = go_root / "clusters" / "db" / "db-1"
    with Store.open(spelled) as store:
        assert store.base_dir == Path(spelled)  # as given, as Go's BaseDir()
        assert store.clusters_dir == go_root / "clusters"
        assert store.index_path == go_root / "index.db"
        assert store.socket_path("web-1") == go_root / "run" / "c4719afa76fa448b.sock"
        store.create(VM("web-1"))
        assert store.vm_dir("web-1") == go_root / "clusters" / "web" / "web-1"
        assert (go_root / "clusters" / "web" / "web-1" / "config.json").is_file()
        # The Go tool, on the same spelling, writes its member there too: we see it.
        member.mkdir(parents=True)
        go_write(member / "config.json", encode_config(VM("db-1")))
        assert store.list() == ["db-1", "web-1"]
        assert store.load("db-1").name == "db-1"
    assert (go_root / "index.db").is_file()
    # Only the root itself, made as given (Go's MkdirAll(base) does the same), is reached
    # through the link; nothing of ours is under it.
    assert listing(tmp_path / "elsewhere") == ["deep", "root"]
    assert listing(tmp_path / "elsewhere" / "root") == []


def test_store_create_load_delete(store: Store) -> None:
    """TestStoreCreateLoadDelete."""
    vm = VM(
        "test-vm",
        mac="aa:bb:cc:dd:ee:ff",
        cpus=2,
        memory_mb=4096,
        disk_mb=20480,
        image="debian-12",
        created_at=datetime.now(UTC),
    )
    store.create(vm)
    assert store.exists("test-vm")
    loaded = store.load("test-vm")
    assert (loaded.name, loaded.mac, loaded.cpus) == ("test-vm", "aa:bb:cc:dd:ee:ff", 2)
    assert store.list() == ["test-vm"]
    store.delete("test-vm")
    assert not store.exists("test-vm")


def test_store_fixtures_round_trip(store: Store) -> None:
    """TestStoreFixturesRoundTrip."""
    fixtures = [Fixture("/host/work", "/work", "FBFIX0"), Fixture("/host/data", "/data", "FBFIX1")]
    store.create(VM("fixtured-vm", fixtures=list(fixtures)))
    assert store.load("fixtured-vm").fixtures == fixtures
    raw = store.config_path("fixtured-vm").read_text()
    for key in ('"fixtures"', '"host_path"', '"guest_path"', '"label"'):
        assert key in raw


def test_store_no_fixtures_omits_field(store: Store) -> None:
    """TestStoreNoFixturesOmitsField."""
    store.create(VM("plain-vm"))
    assert "fixtures" not in store.config_path("plain-vm").read_text()


def test_list_two_level(store: Store) -> None:
    """TestListTwoLevel: cluster-sorted, then member-sorted."""
    for name in ("web-1", "web-2", "db"):
        store.create(VM(name))
    assert store.list() == ["db", "web-1", "web-2"]


def test_list_missing_clusters_dir(store: Store, root: Path) -> None:
    """TestListMissingClustersDir: no error, empty result."""
    store.create(VM("web-1"))
    shutil.rmtree(root / "clusters")
    assert store.list() == []


def test_delete_empty_cluster_cleanup(store: Store, root: Path) -> None:
    """TestDeleteEmptyClusterCleanup."""
    store.create(VM("web-1"))
    store.create(VM("web-2"))
    store.delete("web-1")
    assert not (root / "clusters" / "web" / "web-1").exists()
    assert (root / "clusters" / "web").is_dir()
    store.delete("web-2")
    assert not (root / "clusters" / "web").exists()


def test_delete_solo_removes_cluster_dir(store: Store, root: Path) -> None:
    """TestDeleteSoloRemovesClusterDir."""
    store.create(VM("dev"))
    store.delete("dev")
    assert not (root / "clusters" / "dev").exists()


def test_node_collision(store: Store, root: Path) -> None:
    """TestNodeCollision: node and node-2024 share clusters/node/."""
    store.create(VM("node"))
    store.create(VM("node-2024"))
    store.delete("node-2024")
    assert store.exists("node")
    assert (root / "clusters" / "node").is_dir()


def test_lock(store: Store) -> None:
    """TestLock: a second try_lock in the same process fails."""
    store.create(VM("test-vm"))
    first = store.try_lock("test-vm")
    with pytest.raises(LockedError):
        store.try_lock("test-vm")
    first.unlock()
    third = store.try_lock("test-vm")
    third.unlock()


# --- open, close, context manager -------------------------------------------------------


def test_open_creates_root_clusters_images_run_0755_and_nothing_else(root: Path) -> None:
    with umask(0o022), Store.open(root) as store:
        assert listing(root) == ["clusters", "images", "run"]
        for path in (root, root / "clusters", root / "images", root / "run"):
            assert path.is_dir()
            assert mode(path) == 0o755
            assert path == root or listing(path) == []
        assert not store.bin_dir.exists()
        assert not store.network_state_dir.exists()
        assert not store.index_path.exists()  # the index is created on first use


def test_open_is_idempotent_and_keeps_existing_content(store: Store, root: Path) -> None:
    store.create(VM("web-1"))
    store.close()
    before = snapshot(root)
    with Store.open(root) as again:
        assert snapshot(root) == before
        assert again.list() == ["web-1"]


def test_store_is_a_context_manager_and_close_twice_is_fine(root: Path) -> None:
    with Store.open(root) as store:
        assert isinstance(store, Store)
        store.create(VM("web-1"))
    store.close()
    store.close()
    unused = Store.open(root)
    unused.close()
    unused.close()


def test_open_over_a_file_raises_storage_root_error_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "fleetbox"
    root.write_text("not a directory")
    with pytest.raises(StorageRootError) as info:
        Store.open(root)
    assert info.value.path == root
    assert str(root) in str(info.value)
    assert root.read_text() == "not a directory"


def test_open_without_home_or_fleetbox_home_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("FLEETBOX_HOME", "HOME", "SUDO_USER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageRootError, match="HOME"):
        Store.open()
    assert listing(tmp_path) == []  # no fallback to the passwd home or the cwd


# --- ensure_dir -------------------------------------------------------------------------


def test_ensure_dir_is_mkdir_p_and_idempotent(store: Store, root: Path) -> None:
    with umask(0o022):
        path = store.ensure_dir("web-1")
    assert path == root / "clusters" / "web" / "web-1"
    assert path.is_dir()
    assert mode(path) == 0o755
    assert listing(path) == []  # no config.json: a configless member
    (path / "disk.raw").write_bytes(b"disk")
    assert store.ensure_dir("web-1") == path
    assert listing(path) == ["disk.raw"]
    assert not store.exists("web-1")


# --- create -----------------------------------------------------------------------------


def test_create_refuses_an_existing_config_and_leaves_it_byte_identical(
    store: Store, root: Path
) -> None:
    store.create(VM("web-1", cpus=1))
    path = store.config_path("web-1")
    before = snapshot(root / "clusters")
    with pytest.raises(VMExistsError) as info:
        store.create(VM("web-1", cpus=8))
    assert (info.value.name, info.value.path) == ("web-1", path)
    assert "web-1" in str(info.value)
    assert str(path) in str(info.value)
    assert snapshot(root / "clusters") == before
    assert store.load("web-1").cpus == 1


def test_create_refuses_even_an_unreadable_config(store: Store) -> None:
    path = store.ensure_dir("web-1") / "config.json"
    path.write_bytes(b"{ half a Go write")
    with pytest.raises(VMExistsError):
        store.create(VM("web-1"))
    assert path.read_bytes() == b"{ half a Go write"


@pytest.mark.parametrize(
    ("name", "mac"),
    [
        pytest.param("dev", "12:8b:86:ed:f3:bc", id="dev"),
        pytest.param("web-1", "c2:e2:65:d7:2f:93", id="web-1"),
    ],
)
def test_create_fills_an_empty_mac_with_generate_mac(store: Store, name: str, mac: str) -> None:
    written = store.create(VM(name))
    assert written.mac == generate_mac(name) == mac
    assert store.load(name).mac == mac
    assert f'"mac": "{mac}"' in store.config_path(name).read_text()


def test_create_writes_a_given_mac_lowercase(store: Store) -> None:
    written = store.create(VM("web-1", mac="AA:BB:CC:DD:EE:0F"))
    assert written.mac == "aa:bb:cc:dd:ee:0f"
    assert '"mac": "aa:bb:cc:dd:ee:0f"' in store.config_path("web-1").read_text()


def test_create_returns_the_vm_as_written(store: Store) -> None:
    vm = VM(
        "web-1",
        cpus=4,
        created_at=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        fixtures=[Fixture("/h", "/g", "FBFIX0")],
        ip="10.0.0.7",
    )
    written = store.create(vm)
    assert written.mac == generate_mac("web-1")
    assert written == store.load("web-1")
    assert store.config_path("web-1").read_bytes() == encode_config(written)


def test_create_into_a_configless_member_dir(store: Store) -> None:
    """The Go holder registers the member dir before config.json exists."""
    member = store.ensure_dir("web-1")
    (member / "disk.raw").write_bytes(b"disk")
    store.create(VM("web-1"))
    assert store.exists("web-1")
    assert (member / "disk.raw").read_bytes() == b"disk"


def test_create_writes_a_new_config_0644_whatever_the_umask(store: Store) -> None:
    with umask(0o077):
        store.create(VM("web-1"))
    assert mode(store.config_path("web-1")) == 0o644


# --- save -------------------------------------------------------------------------------


def test_save_overwrites_atomically(store: Store) -> None:
    written = store.create(VM("web-1", cpus=1))
    path = store.config_path("web-1")
    inode = path.stat().st_ino
    saved = store.save(replace(written, cpus=8))
    assert saved.cpus == 8
    assert store.load("web-1").cpus == 8
    assert path.read_bytes() == encode_config(saved)
    # Renamed over, not written in place, and no temp file left behind.
    assert path.stat().st_ino != inode
    assert listing(store.vm_dir("web-1")) == ["config.json"]


def test_save_keeps_an_existing_file_mode(store: Store) -> None:
    written = store.create(VM("web-1"))
    path = store.config_path("web-1")
    path.chmod(0o600)
    store.save(replace(written, cpus=3))
    assert mode(path) == 0o600
    assert store.load("web-1").cpus == 3


def test_save_without_member_dir_raises_vm_not_found(store: Store, root: Path) -> None:
    with pytest.raises(VMNotFoundError) as info:
        store.save(VM("web-1"))
    assert isinstance(info.value, LookupError)
    assert info.value.name == "web-1"
    assert "web-1" in str(info.value)
    assert listing(root / "clusters") == []


def test_save_into_a_configless_member_dir_writes_it(store: Store) -> None:
    store.ensure_dir("web-1")
    store.save(VM("web-1", cpus=5))
    assert store.load("web-1").cpus == 5


# --- load, exists -----------------------------------------------------------------------


def test_load_absent_raises_vm_not_found(store: Store) -> None:
    with pytest.raises(VMNotFoundError) as info:
        store.load("web-1")
    assert (info.value.name, info.value.path) == ("web-1", store.config_path("web-1"))
    assert str(store.config_path("web-1")) in str(info.value)
    store.ensure_dir("web-1")  # configless: still no config to load
    with pytest.raises(VMNotFoundError):
        store.load("web-1")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"garbage", id="not-json"),
        pytest.param(b'{"name": "web-1", "cpus"', id="truncated"),
        pytest.param(b'{"name": "web-1", "cpus": "two"}', id="wrong-type"),
        pytest.param(b"[1, 2]", id="not-an-object"),
    ],
)
def test_load_garbage_raises_config_error_naming_the_path(store: Store, content: bytes) -> None:
    path = store.ensure_dir("web-1") / "config.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        store.load("web-1")
    assert isinstance(info.value, ValueError)
    assert (info.value.name, info.value.path) == ("web-1", path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == content  # left as it is


def test_exists_is_config_json_exists(store: Store) -> None:
    assert not store.exists("web-1")
    store.ensure_dir("web-1")
    assert not store.exists("web-1")
    store.create(VM("web-1"))
    assert store.exists("web-1")
    store.config_path("web-1").write_bytes(b"garbage")  # not parsed, as in Go
    assert store.exists("web-1")


EXISTS_CHILD = """\
import json, os, sys
from fleetbox_db import Store
store = Store.open(sys.argv[1])
if os.geteuid() == 0:
    import hashlib, shutil, tempfile  # stress_helpers.LAZY_IMPORTS
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
try:
    print(json.dumps(store.exists("web-1")))
except Exception as exc:
    print(json.dumps(type(exc).__name__))
"""


def test_exists_counts_an_unsearchable_member_dir_as_absent(store: Store, root: Path) -> None:
    store.create(VM("web-1"))
    member = store.vm_dir("web-1")
    member.chmod(0o000)  # root is dropped to nobody in the child, so this binds it too
    try:
        proc = subprocess.run(
            [sys.executable, "-c", EXISTS_CHILD, str(root)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        member.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "false\n"


# --- delete -----------------------------------------------------------------------------


def test_delete_absent_raises_vm_not_found(store: Store, root: Path) -> None:
    before = snapshot(root / "clusters")
    with pytest.raises(VMNotFoundError) as info:
        store.delete("web-1")
    assert (info.value.name, info.value.path) == ("web-1", store.vm_dir("web-1"))
    assert "web-1" in str(info.value)
    assert snapshot(root / "clusters") == before


def test_delete_removes_its_sockets_only(store: Store) -> None:
    store.create(VM("web-1"))
    store.create(VM("web-2"))
    sockets = [
        store.socket_path("web-1"),
        store.control_socket_path("web-1"),
        store.socket_path("web-2"),
        store.control_socket_path("web-2"),
    ]
    for path in sockets:
        path.write_bytes(b"")  # a crashed holder's leftovers
    store.delete("web-1")
    assert [p.exists() for p in sockets] == [False, False, True, True]


def test_delete_keeps_a_cluster_dir_with_a_sibling_file(store: Store, root: Path) -> None:
    store.create(VM("web-1"))
    notes = root / "clusters" / "web" / "notes.txt"
    notes.write_text("mine")
    store.delete("web-1")
    assert listing(root / "clusters" / "web") == ["notes.txt"]
    assert notes.read_text() == "mine"


def test_delete_does_not_follow_a_symlink_inside_the_member_dir(
    store: Store, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "precious").write_text("keep")
    (outside / "deep" / "also").write_text("keep")
    store.create(VM("web-1"))
    (store.vm_dir("web-1") / "link").symlink_to(outside, target_is_directory=True)
    (store.vm_dir("web-1") / "filelink").symlink_to(outside / "precious")
    before = snapshot(outside)
    store.delete("web-1")
    assert not (root / "clusters" / "web").exists()
    assert snapshot(outside) == before


def test_delete_of_a_member_dir_that_is_a_symlink_removes_only_the_link(
    store: Store, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_bytes(encode_config(VM("web-1")))
    (outside / "disk.raw").write_bytes(b"disk")
    (root / "clusters" / "web").mkdir()
    (root / "clusters" / "web" / "web-1").symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    store.delete("web-1")
    assert not os.path.lexists(root / "clusters" / "web")
    assert snapshot(outside) == before


def test_delete_through_a_symlinked_cluster_dir_leaves_outside_files(
    store: Store, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "web-1").mkdir(parents=True)
    (outside / "web-1" / "precious").write_text("keep")
    (root / "clusters" / "web").symlink_to(outside, target_is_directory=True)
    assert store.list() == []  # Go's List skips a symlinked cluster dir: no member here
    before = snapshot(outside)
    outcome: Exception | None = None
    try:
        store.delete("web-1")
    except Exception as exc:
        outcome = exc
    assert snapshot(outside) == before, "delete() removed files outside the tree"
    assert outcome is None or isinstance(outcome, VMNotFoundError), repr(outcome)


def test_delete_of_a_configless_member(store: Store, root: Path) -> None:
    store.ensure_dir("web-1")
    store.delete("web-1")
    assert not (root / "clusters" / "web").exists()
    assert store.list() == []


def test_delete_removes_everything_in_the_member_dir(store: Store, root: Path) -> None:
    store.create(VM("dev"))
    member = store.vm_dir("dev")
    (member / "disk.raw").write_bytes(b"disk")
    (member / "kernel" / "cache").mkdir(parents=True)
    (member / "kernel" / "cache" / "vmlinuz").write_bytes(b"k")
    store.try_lock("dev").unlock()  # leaves .lock behind
    store.delete("dev")
    assert listing(root / "clusters") == []


def test_delete_frees_the_ip_and_mac(store: Store) -> None:
    written = store.create(VM("web-1", ip="10.0.0.2"))
    store.create(VM("web-2", ip="10.0.0.4"))
    assert store.free_ips("10.0.0.0/29") == ["10.0.0.3", "10.0.0.5", "10.0.0.6"]
    assert store.who_has("10.0.0.2") == "web-1"
    assert store.who_has(written.mac) == "web-1"
    store.delete("web-1")
    assert store.free_ips("10.0.0.0/29") == ["10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.6"]
    assert store.who_has("10.0.0.2") is None
    assert store.who_has(written.mac) is None
    assert store.who_has("10.0.0.4") == "web-2"


# --- list -------------------------------------------------------------------------------


def test_list_go_order_configless_stray_and_files(store: Store, root: Path) -> None:
    clusters = root / "clusters"
    for name in ("web-0x", "web-2", "web-1", "db-1", "Zed"):
        store.create(VM(name))
    store.ensure_dir("db-2")  # configless
    (clusters / "foo" / "bar").mkdir(parents=True)  # stray: vm_dir("bar") is bar/bar
    (clusters / "README").write_text("a file at cluster level")
    (clusters / "web" / "notes.txt").write_text("a file at member level")
    # web-1 (cluster web) before web-0x (cluster web-0x), although a flat sort says otherwise.
    assert store.list() == ["Zed", "db-1", "db-2", "bar", "web-1", "web-2", "web-0x"]


def test_list_skips_symlinked_dirs_like_go(store: Store, root: Path, tmp_path: Path) -> None:
    store.create(VM("web-1"))
    outside = tmp_path / "outside"
    (outside / "ghost").mkdir(parents=True)
    (root / "clusters" / "linked").symlink_to(outside, target_is_directory=True)
    (root / "clusters" / "web" / "web-9").symlink_to(outside / "ghost")
    assert store.list() == ["web-1"]


def test_list_reflects_changes_made_behind_its_back(store: Store, root: Path) -> None:
    store.create(VM("web-1"))
    assert store.list() == ["web-1"]
    (root / "clusters" / "db" / "db").mkdir(parents=True)
    shutil.rmtree(root / "clusters" / "web")
    assert store.list() == ["db"]


# --- hostile names ----------------------------------------------------------------------

ABSOLUTE = "<absolute path of a victim dir>"

HOSTILE_NAMES = [
    pytest.param("", id="empty"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("../x", id="parent-x"),
    pytest.param("a/b", id="slash"),
    pytest.param("a/b/c", id="two-slashes"),
    pytest.param("/b", id="empty-cluster"),
    pytest.param(ABSOLUTE, id="absolute"),
    pytest.param("x\x00y", id="nul"),
    pytest.param("a" * 256, id="256-bytes"),
    pytest.param("\u00e9" * 128, id="256-utf8-bytes"),
    pytest.param("..-1", id="dotdot-cluster"),
    pytest.param(".-3", id="dot-cluster"),
    pytest.param(b"web-1", id="bytes"),
]

SUBNET = "10.0.0.0/24"


def MEMBERS(store: Store, cluster: str) -> object:
    return store.members(cluster)


def LOAD(store: Store, name: str) -> object:
    return store.load(name)


def EXISTS(store: Store, name: str) -> object:
    return store.exists(name)


def DELETE(store: Store, name: str) -> None:
    store.delete(name)


#: Methods that take a member as ``cluster/name`` too (a stray): "a/b" is a member there.
KEY_METHODS = (LOAD, EXISTS, DELETE)

#: Valid cluster names that are not valid member names: members() accepts them.
CLUSTER_ONLY = ("..-1", ".-3")

NAME_METHODS: list[Any] = [
    pytest.param(lambda s, n: s.ensure_dir(n), id="ensure_dir"),
    pytest.param(lambda s, n: s.create(VM(n)), id="create"),
    pytest.param(lambda s, n: s.create(VM(n), subnet=SUBNET), id="create-subnet"),
    pytest.param(lambda s, n: s.save(VM(n)), id="save"),
    pytest.param(LOAD, id="load"),
    pytest.param(EXISTS, id="exists"),
    pytest.param(DELETE, id="delete"),
    pytest.param(lambda s, n: s.try_lock(n), id="try_lock"),
    pytest.param(lambda s, n: s.vm_dir(n), id="vm_dir"),
    pytest.param(lambda s, n: s.config_path(n), id="config_path"),
    pytest.param(lambda s, n: s.disk_path(n), id="disk_path"),
    pytest.param(lambda s, n: s.seed_path(n), id="seed_path"),
    pytest.param(lambda s, n: s.efi_path(n), id="efi_path"),
    pytest.param(lambda s, n: s.pidfile_path(n), id="pidfile_path"),
    pytest.param(lambda s, n: s.serial_log_path(n), id="serial_log_path"),
    pytest.param(lambda s, n: s.fixture_path(n, 0), id="fixture_path"),
    pytest.param(lambda s, n: s.socket_path(n), id="socket_path"),
    pytest.param(lambda s, n: s.control_socket_path(n), id="control_socket_path"),
    pytest.param(lambda s, n: s.lock_path(n), id="lock_path"),
    pytest.param(lambda s, n: s.allocate_ip(n, SUBNET), id="allocate_ip"),
    pytest.param(MEMBERS, id="members"),
]


def populate(root: Path, tmp_path: Path) -> None:
    """A tree worth destroying, written by hand so that no index exists yet."""
    for cluster, name in (("web", "web-1"), ("web", "web-2"), ("dev", "dev"), ("x", "x")):
        member = root / "clusters" / cluster / name
        member.mkdir(parents=True)
        (member / "config.json").write_bytes(encode_config(VM(name)))
        (member / "disk.raw").write_bytes(b"disk")
    (root / "x").mkdir()
    (root / "x" / "x").write_text("a target for ../x")
    (root / "images" / "debian-12.raw").write_bytes(b"image")
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "file").write_text("keep")


@pytest.mark.parametrize("call", NAME_METHODS)
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_refused_before_any_file_is_touched(
    tmp_path: Path,
    root: Path,
    name: str,
    call: Callable[[Store, str], object],
) -> None:
    if name == ABSOLUTE:
        name = str(tmp_path / "victim")
    with Store.open(root) as store:
        populate(root, tmp_path)
        before = snapshot(tmp_path)
        if call is MEMBERS and name in CLUSTER_ONLY:
            assert call(store, name) == []
            return
        if call in KEY_METHODS and name == "a/b":  # the member b of cluster a: absent
            if call is EXISTS:
                assert not call(store, name)
            else:
                with pytest.raises(VMNotFoundError):
                    call(store, name)
            assert snapshot(tmp_path) == before
            return
        with pytest.raises(InvalidNameError) as info:
            call(store, name)
        assert isinstance(info.value, ValueError)
        assert snapshot(tmp_path) == before


def test_longest_name_is_accepted(store: Store) -> None:
    name = "a" * 255
    store.create(VM(name))
    assert store.list() == [name]
    store.delete(name)
    assert store.list() == []


# --- create/save refuse bad values with nothing written ---------------------------------

BAD_VALUES = [
    pytest.param({"mac": "zz:zz:zz:zz:zz:zz"}, id="mac-not-hex"),
    pytest.param({"mac": "aa:bb:cc:dd:ee"}, id="mac-five-groups"),
    pytest.param({"mac": "aa-bb-cc-dd-ee-ff"}, id="mac-dashes"),
    pytest.param({"ip": "10.0.0.010"}, id="ip-leading-zero"),
    pytest.param({"ip": "300.1.1.1"}, id="ip-octet-300"),
    pytest.param({"ip": "10.0.0"}, id="ip-three-parts"),
    pytest.param({"ip": " 10.0.0.5"}, id="ip-space"),
    pytest.param({"created_at": datetime(2024, 1, 1, 12, 0)}, id="naive-created_at"),
    pytest.param({"cpus": "2"}, id="cpus-str"),
    pytest.param({"cpus": True}, id="cpus-bool"),
    pytest.param({"memory_mb": 2**63}, id="memory-past-int64"),
]

BAD_SUBNETS = [
    pytest.param({}, "10.0.0.0/33", id="prefix-33"),
    pytest.param({}, "nonsense", id="subnet-nonsense"),
    pytest.param({"ip": "10.0.1.5"}, SUBNET, id="ip-outside-subnet"),
    pytest.param({"ip": "10.0.0.1"}, SUBNET, id="ip-is-the-gateway"),
    pytest.param({"ip": "10.0.0.255"}, SUBNET, id="ip-is-broadcast"),
]


@pytest.fixture
def reopened_store(root: Path) -> Iterator[Store]:
    """A store with web-1 created through the index, reopened so nothing is pending."""
    with Store.open(root) as first:
        first.create(VM("web-1", ip="10.0.0.2"))
    with Store.open(root) as store:
        yield store


@pytest.mark.parametrize("fields", BAD_VALUES)
def test_create_refuses_bad_values_with_nothing_written(
    reopened_store: Store, tmp_path: Path, fields: dict[str, Any]
) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(InvalidValueError) as info:
        reopened_store.create(VM("db", **fields))
    assert isinstance(info.value, ValueError)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("fields", "subnet"), BAD_SUBNETS)
def test_create_refuses_bad_subnets_with_nothing_written(
    reopened_store: Store, tmp_path: Path, fields: dict[str, Any], subnet: str
) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(InvalidValueError):
        reopened_store.create(VM("db", **fields), subnet=subnet)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("fields", BAD_VALUES)
def test_save_refuses_bad_values_with_nothing_written(
    reopened_store: Store, tmp_path: Path, fields: dict[str, Any]
) -> None:
    vm = replace(reopened_store.load("web-1"), **fields)
    before = snapshot(tmp_path)
    with pytest.raises(InvalidValueError):
        reopened_store.save(vm)
    assert snapshot(tmp_path) == before


# --- try_lock ---------------------------------------------------------------------------


def test_try_lock_conflict_message_names_the_vm_and_path(store: Store) -> None:
    store.create(VM("web-1"))
    lock_path = store.vm_dir("web-1") / ".lock"
    with store.try_lock("web-1") as lock:
        assert lock.locked
        with pytest.raises(LockedError) as info:
            store.try_lock("web-1")
    assert (info.value.name, info.value.path) == ("web-1", lock_path)
    assert "'web-1'" in str(info.value)
    assert str(lock_path) in str(info.value)
    assert not lock.locked
    with store.try_lock("web-1"):  # released by the with block
        pass


def test_try_lock_unlock_and_relock(store: Store) -> None:
    store.ensure_dir("dev")  # a configless member can be locked
    lock = store.try_lock("dev")
    assert isinstance(lock, Lock)
    assert lock.locked
    lock.unlock()
    lock.unlock()  # idempotent
    again = store.try_lock("dev")
    assert again.locked
    again.unlock()
    assert (store.vm_dir("dev") / ".lock").is_file()


def test_try_lock_is_per_member(store: Store) -> None:
    store.create(VM("web-1"))
    store.create(VM("web-2"))
    with store.try_lock("web-1"), store.try_lock("web-2"):
        pass


def test_try_lock_without_member_dir_raises_vm_not_found(store: Store, root: Path) -> None:
    with pytest.raises(VMNotFoundError) as info:
        store.try_lock("web-1")
    assert info.value.name == "web-1"
    assert "web-1" in str(info.value)
    assert listing(root / "clusters") == []  # the dir is not created


LOCK_CHILD = """\
import sys
from fleetbox_db import LockedError, Store
with Store.open(sys.argv[1]) as store:
    try:
        lock = store.try_lock(sys.argv[2])
    except LockedError:
        print("locked", flush=True)
        sys.exit(3)
    print("held", flush=True)
    sys.stdin.readline()
    lock.unlock()
"""


def lock_child(root: Path, name: str) -> list[str]:
    return [sys.executable, "-c", LOCK_CHILD, str(root), name]


def test_try_lock_held_by_another_process(store: Store, root: Path) -> None:
    store.create(VM("web-1"))
    with subprocess.Popen(
        lock_child(root, "web-1"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        with pytest.raises(LockedError):
            store.try_lock("web-1")
        proc.kill()  # SIGKILL: the kernel drops the flock with the process
        proc.wait(timeout=10)
    with store.try_lock("web-1") as lock:
        assert lock.locked


def test_try_lock_held_here_is_locked_for_another_process(store: Store, root: Path) -> None:
    store.create(VM("web-1"))
    with store.try_lock("web-1"):
        held = subprocess.run(
            lock_child(root, "web-1"), capture_output=True, text=True, timeout=60, check=False
        )
        assert (held.returncode, held.stdout) == (3, "locked\n"), held.stderr
    free = subprocess.run(
        lock_child(root, "web-1"), input="\n", capture_output=True, text=True, timeout=60
    )
    assert (free.returncode, free.stdout) == (0, "held\n"), free.stderr


# --- helpers used above are sound -------------------------------------------------------


def test_snapshot_sees_content_mode_and_new_files(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"a")
    before = snapshot(tmp_path)
    (tmp_path / "f").chmod(0o600)
    assert snapshot(tmp_path) != before
    before = snapshot(tmp_path)
    (tmp_path / "g").mkdir()
    assert snapshot(tmp_path) != before


def test_save_of_a_loaded_go_config_is_byte_identical(store: Store) -> None:
    """Regression: save() copied the VM with dataclasses.replace, which dropped the
    created_at text read from disk, so nanoseconds and the offset spelling were rewritten."""
    data = (Path(__file__).parent / "data" / "go-web-1.json").read_bytes()
    store.ensure_dir("web-1")
    store.config_path("web-1").write_bytes(data)
    store.save(store.load("web-1"))
    assert store.config_path("web-1").read_bytes() == data


def test_vms_records_are_complete_and_independent(store: Store) -> None:
    """vms() builds VMs from cached records without __init__: every field must be there,
    and a caller mutating one must not change what the next call returns."""
    store.create(VM("web-1", fixtures=[Fixture("/h", "/g", "FBFIX0")], extra={"k": [1]}))
    first = store.vms()[0]
    assert first == store.load("web-1")
    assert set(vars(first)) == {f.name for f in dataclasses.fields(VM)}
    first.fixtures[0].label = "changed"
    first.extra["k"].append(2)
    first.cpus = 99
    assert store.vms()[0] == store.load("web-1")


def test_open_refuses_a_root_with_nul_as_a_typed_error(tmp_path: Path) -> None:
    """Regression (hostile input): Store.open("a\\x00b") raised a builtin ValueError."""
    with pytest.raises(StorageRootError, match="null byte"):
        Store.open(f"{tmp_path}/a\x00b")
