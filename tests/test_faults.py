"""Failing syscalls: the k-th os call of an operation fails with EIO, EACCES, EMFILE or ENOSPC;
and a file-size limit (RLIMIT_FSIZE, as a full filesystem) under SQLite's own writes.

A child process (tests/fault_child.py) runs each operation on a copy of one small store,
with the fault at the k-th call to any of the os functions the library uses, k swept. Every
run must end in success or a typed FleetboxError (never a raw OSError or TypeError), and
disk must be in a state the call's outcome explains: a create that raised left no member
behind, a save that raised left the old bytes, no temp file remains unless the fault hit
the very unlink that removes it, no index copy was moved aside (nothing was corrupt), and a
fresh Store afterwards answers exactly what disk holds.

Bounded by default (a spread of k per operation and errno); FLEETBOX_STRESS=1 sweeps every k
for every operation and every errno.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import config_path
from stress_helpers import STRESS, assert_matches_disk, no_temp_files

from fleetbox_db import VM, Store

HERE = Path(__file__).resolve().parent
SUBNET = "10.0.0.0/24"
ERRNOS = {"EIO": errno.EIO, "EACCES": errno.EACCES, "EMFILE": errno.EMFILE, "ENOSPC": errno.ENOSPC}
READS = ["list", "vms", "entries", "check", "free_ips", "who_has", "load", "dry_run"]
WRITES = ["create", "save", "delete", "allocate_ip", "reconcile", "try_lock", "migrate"]
#: k values tried per (operation, errno) without FLEETBOX_STRESS.
BOUNDED_KS = 10


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small store: two members with IPs, an index at head recording them."""
    root = tmp_path_factory.mktemp("faults") / "root"
    with Store.open(root) as store:
        store.create(VM("web-1", ip="10.0.0.2"))
        store.create(VM("db-1", ip="10.0.0.3"))
        store.list()
    return root


def child(spec: dict[str, Any]) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, str(HERE / "fault_child.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def chosen_ks(calls: int) -> list[int]:
    if STRESS or calls <= BOUNDED_KS:
        return list(range(1, calls + 1))
    step = calls / BOUNDED_KS
    return sorted({1, calls, *(round(1 + i * step) for i in range(BOUNDED_KS))})


def check_run(
    template: Path, root: Path, op: str, run: dict[str, Any], files: list[str] | None = None
) -> None:
    """The outcome is typed, and disk is in a state it explains. *files*: what the root
    held before the operation (default: what the template holds)."""
    where = f"{op} k={run['k']} fault in {run['faulted']}: {run['outcome']} {run['message']}"
    assert run["typed"], where
    assert not list(root.glob("index.db.corrupt-*")), where
    assert not (root / "index.db.new").exists(), where
    if run["faulted"] != "unlink":
        assert no_temp_files(root) == [], where
    failed = run["outcome"] != "ok"
    if op in READS and op != "load":  # reads answer from disk while disk itself answers
        assert not failed or run["outcome"] == "StorageRootError", where
    if op == "create":
        assert config_path(root, "new-1").exists() is not failed, where
        if failed:
            assert not (root / "clusters" / "new").exists(), where
    if op == "save":
        old = config_path(template, "web-1").read_bytes()
        assert (config_path(root, "web-1").read_bytes() == old) is failed, where
    if op == "delete" and not failed:  # the cluster's rmdir is best effort, as in Go
        assert not (root / "clusters" / "db" / "db-1").exists(), where
    if op in ("dry_run", "check"):
        before = sorted(p.name for p in template.iterdir()) if files is None else files
        assert sorted(p.name for p in root.iterdir()) == before, where
    with Store.open(root) as store:
        assert_matches_disk(store, root, [SUBNET], where=where)


@pytest.mark.parametrize("op", READS + WRITES)
def test_every_failing_syscall_is_typed_and_leaves_disk_explained(
    template: Path, tmp_path: Path, op: str
) -> None:
    counted = child({"template": str(template), "work": str(tmp_path), "op": op, "mode": "count"})
    assert counted[0]["outcome"] == "ok", counted
    ks = chosen_ks(counted[0]["calls"])
    codes = ERRNOS if STRESS or op in ("create", "save", "list") else {"EIO": errno.EIO}
    failures = []
    for label, code in codes.items():
        work = tmp_path / label
        work.mkdir()
        spec = {"template": str(template), "work": str(work), "op": op, "mode": "inject"}
        for run in child({**spec, "errno": code, "ks": ks}):
            try:
                check_run(template, work / str(run["k"]), op, run)
            except AssertionError as exc:
                failures.append(f"{label}: {exc}".splitlines()[0])
            shutil.rmtree(work / str(run["k"]))
    assert failures == [], "\n".join(failures)


#: RLIMIT_FSIZE values tried: no byte at all, a config's worth, a few pages, the index size.
FSIZE_LIMITS = [0, 700, 4096, 16384, 65536]


@pytest.mark.parametrize("op", ["list", "vms", "check", "free_ips", *WRITES])
def test_a_file_size_limit_degrades_reads_and_types_writes(
    template: Path, tmp_path: Path, op: str
) -> None:
    """Under RLIMIT_FSIZE, SQLite's writes fail with EFBIG (SQLITE_IOERR_WRITE or
    SQLITE_FULL): main answered with "database or disk is full" and moved the healthy
    index aside on every call (48 copies)."""
    size = (template / "index.db").stat().st_size
    limits = sorted({*FSIZE_LIMITS, size - 1, size, size + 4096})
    spec = {"template": str(template), "work": str(tmp_path), "op": op, "mode": "fsize"}
    runs = child({**spec, "fsize": limits})
    failures = []
    for run in runs:
        try:
            check_run(template, tmp_path / str(run["k"]), op, run)
            if op in READS:
                assert run["outcome"] == "ok", f"{op} under a {run['k']} byte limit: {run}"
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
    assert failures == [], "\n".join(failures)
