"""What operators rely on from the library (issue 14): removal never takes a running VM, a
mistyped root is not a store, every holder of an address is named, strays are reachable
as cluster/name, and an unreadable member says why."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import put

from fleetbox_db import (
    VM,
    InvalidValueError,
    LockedError,
    MACConflictError,
    NoStoreError,
    StorageRootError,
    Store,
    VMNotFoundError,
)

HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def running(member_dir: Path, pid: int | None = None) -> Iterator[None]:
    """The Go holder of a running VM: another process keeps <m>/.lock flocked."""
    if pid is not None:
        (member_dir / "pid").write_text(str(pid))
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(member_dir / ".lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "locked\n"
        yield
    finally:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.close()
        child.wait(timeout=10)
        child.stdout.close()


# -- delete takes the member's lock ---------------------------------------------------------


def test_delete_refuses_a_running_vm_and_keeps_its_files(store: Store) -> None:
    store.create(VM("web-1", ip="10.0.0.2"))
    store.disk_path("web-1").write_bytes(b"disk image")
    with running(store.vm_dir("web-1"), pid=4242), pytest.raises(LockedError) as caught:
        store.delete("web-1")
    lock = store.vm_dir("web-1") / ".lock"
    assert str(caught.value) == (
        f"vm 'web-1' is running (its lock {lock} is held by pid 4242); stop it first"
    )
    assert store.disk_path("web-1").read_bytes() == b"disk image"
    assert store.who_has("10.0.0.2") == "web-1"


def test_delete_without_a_pidfile_names_the_lock_alone(store: Store) -> None:
    store.create(VM("web-1"))
    with running(store.vm_dir("web-1")), pytest.raises(LockedError) as caught:
        store.delete("web-1")
    lock = store.vm_dir("web-1") / ".lock"
    assert str(caught.value) == f"vm 'web-1' is running (its lock {lock} is held); stop it first"


def test_delete_once_the_holder_exits(store: Store) -> None:
    store.create(VM("web-1"))
    with running(store.vm_dir("web-1")):
        pass
    store.delete("web-1")
    assert store.list() == []


def test_remove_skips_a_running_member_and_removes_the_rest(store: Store) -> None:
    store.create(VM("web-1"))
    store.create(VM("web-2"))
    with running(store.vm_dir("web-1")):
        result = store.remove(["web"])
    assert result.removed == ["web-2"]
    assert [type(e) for e in result.failed] == [LockedError]
    assert store.list() == ["web-1"]


def test_remove_dry_run_removes_nothing_and_creates_no_lock_file(store: Store) -> None:
    store.create(VM("web-1"))
    store.create(VM("web-2"))
    result = store.remove(["web"], dry_run=True)
    assert (result.removed, result.dry_run) == (["web-1", "web-2"], True)
    assert store.list() == ["web-1", "web-2"]
    assert not (store.vm_dir("web-1") / ".lock").exists()


def test_remove_dry_run_reports_a_running_member(store: Store) -> None:
    store.create(VM("web-1"))
    store.create(VM("web-2"))
    with running(store.vm_dir("web-2")):
        result = store.remove(["web"], dry_run=True)
    assert result.removed == ["web-1"]
    assert [str(e) for e in result.failed] == [
        f"vm 'web-2' is running (its lock {store.vm_dir('web-2')}/.lock is held); stop it first"
    ]


def test_remove_asks_once_and_a_no_removes_nothing(store: Store) -> None:
    store.create(VM("web-1"))
    store.create(VM("web-2"))
    asked: list[list[str]] = []

    def decline(labels: list[str]) -> bool:
        asked.append(labels)
        return False

    result = store.remove(None, confirm=decline)
    assert asked == [["web-1", "web-2"]]
    assert (result.removed, result.confirmed) == ([], False)
    assert store.list() == ["web-1", "web-2"]


# -- open(create=False) and typed options ---------------------------------------------------


def test_open_without_create_refuses_a_root_with_no_store(tmp_path: Path) -> None:
    typo = tmp_path / "fleetbx"
    with pytest.raises(NoStoreError) as caught:
        Store.open(typo, create=False)
    assert isinstance(caught.value, StorageRootError)
    assert str(caught.value) == (
        f"no fleetbox store at {typo} (it has no clusters/ directory); check the path, or "
        "open it with create=True to start one"
    )
    assert not typo.exists()


def test_open_without_create_opens_an_existing_store(root: Path) -> None:
    Store.open(root).close()
    with Store.open(root, create=False) as store:
        assert store.list() == []


def test_open_refuses_an_unknown_option(root: Path) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'busytimeout'"):
        Store.open(root, busytimeout=3)  # type: ignore[call-arg]
    assert not root.exists()


# -- holders --------------------------------------------------------------------------------


def test_holders_names_every_member_claiming_an_ip(root: Path, store: Store) -> None:
    put(root, "web-1", ip="10.0.0.3")
    put(root, "web-2", ip="10.0.0.3")
    assert store.holders("10.0.0.3") == ["web-1", "web-2"]
    assert store.who_has("10.0.0.3") == "web-1"
    assert store.holders("10.0.0.4") == []


def test_holders_of_a_mac_include_a_stray_as_cluster_slash_name(root: Path, store: Store) -> None:
    put(root, "web-1", mac="02:00:00:00:00:01")
    put(root, "web-3", mac="02:00:00:00:00:01", cluster="db")
    assert store.holders("02:00:00:00:00:01".upper()) == ["db/web-3", "web-1"]


def test_holders_include_a_live_reservation(store: Store) -> None:
    ip = store.allocate_ip("web-9", "10.0.0.0/24")
    assert store.holders(ip) == ["web-9"]


@pytest.mark.parametrize("value", ["banana", "c2-e2-65-d7-2f-93", ""])
def test_holders_refuse_what_is_neither_an_ip_nor_a_mac(store: Store, value: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        store.holders(value)
    assert str(caught.value) == (
        f"{value!r} is not an IPv4 address or a MAC address (like 10.0.0.2 or c2:e2:65:d7:2f:93)"
    )


# -- strays are addressable -----------------------------------------------------------------


def test_a_stray_is_shown_loaded_and_removed_as_cluster_slash_name(
    root: Path, store: Store
) -> None:
    put(root, "web-3", ip="10.0.0.9", cluster="db")
    assert store.entry("db/web-3").cluster == "db"
    assert store.load("db/web-3").ip == "10.0.0.9"
    assert store.exists("db/web-3")
    store.delete("db/web-3")
    assert store.list() == []
    assert not (root / "clusters" / "db").exists()
    store.create(VM("web-3", ip="10.0.0.9"))  # no conflict with the stray any more


def test_deleting_a_stray_by_its_bare_name_says_how_to_reach_it(root: Path, store: Store) -> None:
    put(root, "web-3", cluster="db")
    with pytest.raises(VMNotFoundError) as caught:
        store.delete("web-3")
    assert str(caught.value) == (
        f"vm 'web-3' does not exist (no directory at {root}/clusters/web/web-3); it exists "
        "only as a stray at db/web-3: name it as 'db/web-3' (`fleetbox-db rm db/web-3` "
        "removes it)"
    )


def test_removing_a_cluster_takes_the_strays_under_it(root: Path, store: Store) -> None:
    put(root, "db-1")
    put(root, "web-3", cluster="db")
    put(root, "web-1")
    assert store.remove(["db"]).removed == ["db-1", "db/web-3"]
    assert store.list() == ["web-1"]


def test_a_cluster_slash_name_that_is_not_a_stray_is_the_member_itself(store: Store) -> None:
    store.create(VM("web-1"))
    assert store.remove(["web/web-1"]).removed == ["web-1"]
    assert not os.path.exists(store.vm_dir("web-1"))


# -- why a member is unreadable -------------------------------------------------------------

WRONG_TYPE = 'wrong type for "cpus": expected an integer, got a string'


def test_an_unreadable_member_carries_the_decode_error(root: Path, store: Store) -> None:
    put(root, "web-1", ip="10.0.0.2")
    store.list()
    put(root, "web-1", data=b'{"name": "web-1", "cpus": "two"}')
    report = store.reconcile()
    assert (report.unreadable, report.reasons) == (["web-1"], {"web-1": WRONG_TYPE})
    (entry,) = store.entries()
    assert (entry.state, entry.reason) == ("unreadable", WRONG_TYPE)
    assert entry.vm is not None
    assert entry.vm.ip == "10.0.0.2"  # the last good config is kept
    (problem,) = store.check()
    config = root / "clusters" / "web" / "web-1" / "config.json"
    assert (problem.kind, problem.reason) == ("unreadable", WRONG_TYPE)
    assert problem.message == (
        f"unreadable config {config} of vm 'web-1': {WRONG_TYPE}; fix or remove it"
    )
    assert store.reconcile(dry_run=True).reasons == {"web-1": WRONG_TYPE}


def test_an_os_error_is_the_reason_too(root: Path, store: Store) -> None:
    (root / "clusters" / "web" / "web-1" / "config.json").mkdir(parents=True)
    (entry,) = store.entries()
    assert (entry.state, entry.reason) == (
        "unreadable",
        "cannot be read: is a directory, not a regular file",
    )


def test_a_readable_config_has_no_reason(root: Path, store: Store) -> None:
    put(root, "web-1", data=b'{"name": "web-1", "cpus": "two"}')
    assert store.entries()[0].reason == WRONG_TYPE
    put(root, "web-1")
    assert store.entries()[0].reason is None


def test_reconcile_lists_strays_as_cluster_slash_name(root: Path, store: Store) -> None:
    put(root, "web-3", cluster="db")
    assert store.reconcile().strays == ["db/web-3"]
    assert store.reconcile(dry_run=True).strays == ["db/web-3"]
    (problem,) = store.check()
    assert problem.message == (
        f"stray directory {root}/clusters/db/web-3: vm 'web-3' belongs under clusters/web/; "
        "move it there, or remove it with `fleetbox-db rm db/web-3`"
    )


# -- progress of long work ------------------------------------------------------------------


def test_progress_is_reported_by_the_first_build_and_by_check(root: Path) -> None:
    for i in range(3):
        put(root, f"web-{i}")
    calls: list[tuple[int, int]] = []
    with Store.open(root, progress=lambda done, total: calls.append((done, total))) as store:
        store.entries()  # a cold index: the first build reads every config
        assert calls == [(3, 3)]
        store.check()
        assert calls == [(3, 3), (3, 3)]


def test_creating_over_a_stray_copy_names_it_and_how_to_remove_it(root: Path, store: Store) -> None:
    store.create(VM("web-3"))
    os.renames(store.vm_dir("web-3"), root / "clusters" / "db" / "web-3")  # a stale copy
    with pytest.raises(MACConflictError) as caught:
        store.create(VM("web-3"))
    assert str(caught.value) == (
        "mac 1a:c0:2d:52:3a:8c for vm 'web-3' is already held by db/web-3 (a stray directory; "
        "`fleetbox-db rm db/web-3` removes it); leave mac empty to derive one from the name"
    )
    store.delete("db/web-3")
    store.create(VM("web-3"))
