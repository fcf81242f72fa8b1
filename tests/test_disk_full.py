"""A full disk, a corrupt index met many times, and a first build killed half-way.

On main, a 4 MB tmpfs with 0-23 pages free made list(), vms() and check() raise "database
or disk is full", moved the healthy index aside on every call (10 copies after 3 rounds),
and create()/save() raised after their config was written. Here: reads answer from disk,
writes succeed whole or raise a typed error having changed nothing, and the index is never
moved aside for a full disk. Where mount(2) is not allowed the tmpfs cases skip; the
RLIMIT_FSIZE and injected-ENOSPC cases in test_faults.py run everywhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import config_path
from stress_helpers import STRESS, assert_matches_disk, no_temp_files, scaled

from fleetbox_db import VM, FleetboxError, Store
from fleetbox_db.index import schema

SUBNET = "10.0.0.0/24"
PAGE = 4096
FREE_PAGES = list(range(25)) if STRESS else [0, 1, 3, 9, 11, 17, 23]
KEEP_CORRUPT = 3  # fleetbox_db.index.quarantine.KEEP_CORRUPT


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "tmpfs"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    root = tmp_path / "template"
    with Store.open(root) as store:
        for i in range(1, 7):
            store.create(VM(f"web-{i}"), subnet=SUBNET)
        store.list()
    return root


def fill(where: Path, free_pages: int) -> Path:
    """Fill the filesystem at *where*, then free *free_pages* pages; the filler file."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"\0" * PAGE
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        size = os.fstat(fd).st_size
        os.ftruncate(fd, max(size - free_pages * PAGE, 0))
    finally:
        os.close(fd)
    return filler


def attempt(call: Callable[[], object]) -> BaseException | None:
    try:
        call()
    except BaseException as exc:
        return exc
    return None


@pytest.mark.parametrize("fresh", [False, True], ids=["indexed", "no-index"])
def test_a_full_disk_degrades_reads_and_types_writes(
    tmpfs: Path, template: Path, fresh: bool
) -> None:
    names = sorted(p.name for p in (template / "clusters" / "web").iterdir())
    for pages in FREE_PAGES:
        where = f"{pages} pages free"
        root = tmpfs / "root"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(template, root)
        if fresh:
            (root / "index.db").unlink()
        ident = None if fresh else (root / "index.db").stat().st_ino
        web1 = config_path(root, "web-1").read_bytes()
        filler = fill(tmpfs, pages)
        with Store.open(root) as store:  # as the first call: main raised AssertionError
            migrated = attempt(store.migrate)
        with Store.open(root) as store:
            for _ in range(3):  # main added a .corrupt-* copy on every round
                assert store.list() == names, where
                assert [vm.name for vm in store.vms()] == names, where
                # Drift is true when the index could not record the scan; disk has none.
                assert not [p for p in store.check() if p.kind not in ("index", "drift")], where
            created = attempt(lambda: store.create(VM("new-1"), subnet=SUBNET))
            changed = store.load("web-1")
            changed.cpus = 8
            saved = attempt(lambda: store.save(changed))  # noqa: B023 - called at once
        for exc in (migrated, created, saved):
            assert exc is None or (isinstance(exc, FleetboxError) and str(exc)), (where, exc)
        assert config_path(root, "new-1").exists() is (created is None), (where, created)
        if created is not None:
            assert not (root / "clusters" / "new").exists(), where
        assert (config_path(root, "web-1").read_bytes() == web1) is (saved is not None), where
        assert no_temp_files(root) == [], where
        assert not list(root.glob("index.db.corrupt-*")), where
        assert not (root / "index.db.new").exists(), where
        filler.unlink()
        if ident is not None:
            assert (root / "index.db").stat().st_ino == ident, where
        elif (root / "index.db").exists():  # a first build either finished or left nothing
            assert _healthy(root / "index.db"), where
        with Store.open(root) as store:
            assert_matches_disk(store, root, [SUBNET], where=where)


def _healthy(index: Path) -> bool:
    conn = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
    try:
        return schema.classify(conn) == "current" and (
            conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        )
    finally:
        conn.close()


def test_one_copy_per_corruption_and_only_the_newest_three_kept(root: Path) -> None:
    with Store.open(root) as store:
        store.create(VM("web-1", ip="10.0.0.2"))
    stamps = []
    for round_ in range(KEEP_CORRUPT + 2):
        (root / "index.db").write_bytes(b"garbage, not SQLite " * (round_ + 1) * 100)
        with Store.open(root) as a, Store.open(root) as b:
            for _ in range(3):  # many calls, two stores: still one copy for this corruption
                assert a.list() == b.list() == ["web-1"]
                assert [vm.ip for vm in a.vms()] == ["10.0.0.2"]
        copies = sorted(p.name for p in root.glob("index.db.corrupt-*") if "-wal" not in p.name)
        assert len(copies) == min(round_ + 1, KEEP_CORRUPT), copies
        stamps.append(copies[-1])
    assert copies == stamps[-KEEP_CORRUPT:]  # the newest kept


BUILD = """
import sys
from fleetbox_db import Store
with Store.open(sys.argv[1]) as store:
    store.list()
"""


def test_a_first_build_killed_anywhere_leaves_no_broken_index(
    template: Path, tmp_path: Path
) -> None:
    """main built index.db in place: SIGKILL mid-build left a 0-byte or half-built file."""
    rounds = scaled(8, 60)
    for i in range(rounds):
        root = tmp_path / f"r{i}"
        shutil.copytree(template, root)
        (root / "index.db").unlink()
        child = subprocess.Popen([sys.executable, "-c", BUILD, str(root)])
        time.sleep(2.5 * i / rounds)
        child.send_signal(signal.SIGKILL)
        child.wait()
        index = root / "index.db"
        assert not index.exists() or _healthy(index), f"killed after {2.5 * i / rounds:.2f} s"
        with Store.open(root) as store:
            assert_matches_disk(store, root, [SUBNET])
        assert not (root / "index.db.new").exists()
        assert not list(root.glob("index.db.corrupt-*"))
