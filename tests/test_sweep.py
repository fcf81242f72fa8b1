"""The temp files a write killed mid-way leaves, and the full reconcile that removes them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import later

from fleetbox_db import VM, Store
from fleetbox_db.disk.scan import MemberDir, scan
from fleetbox_db.disk.sweep import MIN_AGE_NS, TEMP_NAME, sweep


def leftover(member_dir: Path, name: str = ".config.json.0123456789abcdef.tmp") -> Path:
    path = member_dir / name
    path.write_bytes(b'{"name": "half a wri')
    return path


def test_full_reconcile_removes_old_leftovers_and_nothing_else(tmp_path: Path) -> None:
    with Store.open(tmp_path / "fleetbox", clock=later) as store:
        store.create(VM("web-1", ip="10.0.0.2"))
        member = store.vm_dir("web-1")
        config = (member / "config.json").read_bytes()
        temp = leftover(member)
        kept = [
            leftover(member, name)
            for name in (
                ".config.json.0123456789ABCDEF.tmp",  # not what atomic_write names
                ".config.json.0123.tmp",
                "config.json.0123456789abcdef.tmp",
                "notes.tmp",
                "serial.log",
            )
        ]
        assert store.reconcile().swept == []  # incremental runs never sweep
        assert temp.exists()
        report = store.reconcile(full=True)
        assert report.swept == [str(temp)]
        assert report.changed
        assert not temp.exists()
        assert all(p.exists() for p in kept)
        assert (member / "config.json").read_bytes() == config
        assert store.list() == ["web-1"]
        assert store.reconcile(full=True).swept == []


def test_a_fresh_temp_file_is_spared(tmp_path: Path) -> None:
    """A writer holding the lock of an index just moved aside may be mid-write."""
    with Store.open(tmp_path / "fleetbox") as store:
        store.create(VM("web-1"))
        temp = leftover(store.vm_dir("web-1"))
        assert store.reconcile(full=True).swept == []
        assert temp.exists()
    old = time.time_ns() - MIN_AGE_NS - 10**9
    os.utime(temp, ns=(old, old))  # ctime stays new: still spared
    with Store.open(tmp_path / "fleetbox") as store:
        assert store.reconcile(full=True).swept == []


def test_dry_run_lists_leftovers_and_keeps_them(tmp_path: Path) -> None:
    with Store.open(tmp_path / "fleetbox", clock=later) as store:
        store.create(VM("web-1"))
        temp = leftover(store.vm_dir("web-1"))
        assert store.reconcile(full=True, dry_run=True).swept == [str(temp)]
        assert temp.exists()


@pytest.mark.parametrize("kind", ["symlink", "directory"])
def test_only_regular_files_are_removed(tmp_path: Path, kind: str) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    with Store.open(tmp_path / "fleetbox", clock=later) as store:
        store.create(VM("web-1"))
        odd = store.vm_dir("web-1") / ".config.json.0123456789abcdef.tmp"
        if kind == "symlink":
            odd.symlink_to(outside)
        else:
            odd.mkdir()
        assert store.reconcile(full=True).swept == []
        assert odd.is_symlink() if kind == "symlink" else odd.is_dir()
        assert outside.read_bytes() == b"precious"


def test_a_symlinked_member_or_cluster_dir_is_never_entered(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    temp = leftover(outside)
    with Store.open(tmp_path / "fleetbox", clock=later) as store:
        (store.clusters_dir / "web").mkdir()
        (store.clusters_dir / "web" / "web-1").symlink_to(outside)
        (store.clusters_dir / "db").symlink_to(outside)
        assert store.reconcile(full=True).swept == []
    assert temp.exists()


def test_a_member_dir_gone_since_the_scan_is_skipped(tmp_path: Path) -> None:
    """The sweep walks what the scan saw; a directory removed since then is no error."""
    with Store.open(tmp_path / "fleetbox", clock=later) as store:
        store.create(VM("web-1"))
        store.create(VM("db-1"))
        swept = leftover(store.vm_dir("db-1"))
        seen = scan(store.clusters_dir).members
        store.delete("web-1")
        (store.clusters_dir / "zz").mkdir()
        (store.clusters_dir / "zz" / "zz-1").write_bytes(b"a file, not a member dir")
        stale = [
            *seen,
            MemberDir("zz", "zz-1", None, None),
            MemberDir("nope", "nope-1", None, None),
        ]
        assert sweep(store.clusters_dir, stale, later()) == [str(swept)]


WRITER = textwrap.dedent(
    """
    import sys
    from fleetbox_db import VM, Store
    with Store.open(sys.argv[1]) as store:
        store.create(VM("web-1"))
        print("ready", flush=True)
        i = 0
        while True:
            i = i % 8 + 1
            store.save(VM("web-1", cpus=i, extra={"pad": "x" * 1_000_000}))  # under the 1 MB cap
    """
)


def test_a_write_killed_mid_way_leaves_a_temp_file_that_full_reconcile_removes(
    tmp_path: Path,
) -> None:
    root = tmp_path / "fleetbox"
    member = root / "clusters" / "web" / "web-1"
    for _ in range(50):
        argv = [sys.executable, "-c", WRITER, str(root)]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
            deadline = time.monotonic() + 10
            while not any(TEMP_NAME.fullmatch(p.name) for p in member.iterdir()):
                assert time.monotonic() < deadline, "the writer never made a temp file"
            proc.send_signal(signal.SIGKILL)
        temps = [p for p in member.iterdir() if TEMP_NAME.fullmatch(p.name)]
        if temps:
            break  # killed between the temp file's creation and its rename
    else:
        pytest.fail("no kill landed mid-write in 50 tries")
    with Store.open(root, clock=later) as store:
        assert sorted(store.reconcile(full=True).swept) == sorted(map(str, temps))
        assert [p.name for p in member.iterdir() if p.name.endswith(".tmp")] == []
        assert [vm.name for vm in store.vms()] == ["web-1"]
