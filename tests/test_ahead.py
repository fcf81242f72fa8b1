"""A command's first scan started ahead in a forked child (fleetbox_db.disk.ahead): real
forks, real pipes, real trees in tmp_path. Whatever the child does, scan() answers as a scan
of its own would have; the CLI starts one only for reading commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fleetbox_db
from fleetbox_db import VM, Store, scan_ahead
from fleetbox_db.cli import scan_first
from fleetbox_db.disk import ahead
from fleetbox_db.disk.scan import AHEAD_CLUSTERS, MemberDir, Scan, Signature, scan

REPO = Path(fleetbox_db.__file__).resolve().parent.parent
MULTI_CPU = len(os.sched_getaffinity(0)) > 1
needs_two_cpus = pytest.mark.skipif(not MULTI_CPU, reason="a child is started on 2+ CPUs only")


@pytest.fixture(autouse=True)
def _nothing_left_pending() -> Iterator[None]:
    yield
    while ahead._pending:  # a test that failed half-way: reap its child
        ahead._pending.pop()[1].stop()


def make_tree(clusters: Path) -> None:
    """Members of every kind a scan reports: ok, configless, config a directory, a stray,
    a name that is not UTF-8, a symlinked cluster and member (skipped), a second member."""
    for cluster, name in [("web", "web-1"), ("web", "web-2"), ("db", "db-1"), ("db", "web-3")]:
        (clusters / cluster / name).mkdir(parents=True)
        (clusters / cluster / name / "config.json").write_text(json.dumps({"name": name}))
    (clusters / "db" / "db-2").mkdir()  # configless
    (clusters / "db" / "db-3" / "config.json").mkdir(parents=True)  # not a regular file
    raw = os.fsencode(clusters / "caf") + b"\xe9"
    os.makedirs(raw + b"/caf\xe9-1")
    with open(raw + b"/caf\xe9-1/config.json", "wb") as f:
        f.write(b"{}")
    (clusters / "linked").symlink_to(clusters / "web")
    (clusters / "web" / "web-9").symlink_to(clusters / "web" / "web-1")
    grow(clusters)


def grow(clusters: Path) -> None:
    """Empty clusters enough for a scan to be started ahead (a small tree is not)."""
    for n in range(AHEAD_CLUSTERS):
        (clusters / f"empty{n:03d}").mkdir(parents=True, exist_ok=True)


@pytest.fixture
def clusters(tmp_path: Path) -> Path:
    made = tmp_path / "root" / "clusters"
    make_tree(made)
    return made


def typed(found: Scan) -> bool:
    return all(
        type(m) is MemberDir and (m.signature is None or type(m.signature) is Signature)
        for m in found.members
    )


@needs_two_cpus
def test_the_child_lists_what_a_scan_of_its_own_lists(clusters: Path) -> None:
    own = scan(clusters)
    assert scan_ahead(clusters.parent)
    early = scan(clusters)
    assert early == own
    assert typed(early)
    assert {m.name for m in early.members} >= {"web-1", "db-2", "db-3", "caf\udce9-1"}
    assert not ahead._pending


@needs_two_cpus
def test_the_listing_is_taken_once_and_the_next_scan_sees_disk_again(clusters: Path) -> None:
    assert scan_ahead(clusters.parent)
    assert scan_ahead(clusters.parent) is False  # one pending child at most
    first = scan(clusters)
    (clusters / "web" / "web-4").mkdir()
    second = scan(clusters)
    assert "web-4" not in {m.name for m in first.members}
    assert "web-4" in {m.name for m in second.members}


@needs_two_cpus
def test_a_listing_of_another_path_is_not_taken(clusters: Path, tmp_path: Path) -> None:
    other = tmp_path / "other" / "clusters"
    (other / "api" / "api-1").mkdir(parents=True)
    assert scan_ahead(clusters.parent)
    child = ahead._pending[0][1]
    found = scan(other)
    assert [m.name for m in found.members] == ["api-1"]
    assert not ahead._pending
    with pytest.raises(ChildProcessError):
        os.waitpid(child._pid, os.WNOHANG)  # reaped
    assert scan(clusters) == scan(clusters)  # and that path scans as usual


@needs_two_cpus
def test_the_same_directory_by_another_path_is_another_path(clusters: Path, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(clusters.parent)
    assert scan_ahead(tmp_path / "link")
    assert ahead.take(os.fspath(clusters)) is None  # not the same string: not taken
    assert not ahead._pending


@needs_two_cpus
@pytest.mark.parametrize(
    "listing",
    [
        pytest.param(lambda: 1 / 0, id="listing-raises"),
        pytest.param(lambda: os.kill(os.getpid(), signal.SIGKILL), id="child-killed"),
        pytest.param(lambda: "not a scan", id="not-a-listing"),
        pytest.param(lambda: ([("web", "web-1", (1, 2), None)], []), id="short-signature"),
        pytest.param(lambda: ([("web", "web-1")], []), id="short-member"),
    ],
)
def test_a_child_that_does_not_list_leaves_the_scan_to_the_parent(clusters: Path, listing) -> None:  # type: ignore[no-untyped-def]
    assert ahead.start(os.fspath(clusters), listing)
    assert scan(clusters) == scan(clusters)
    assert not ahead._pending


@needs_two_cpus
def test_a_child_killed_mid_listing_leaves_the_scan_to_the_parent(clusters: Path) -> None:
    assert ahead.start(os.fspath(clusters), lambda: time.sleep(60))
    os.kill(ahead._pending[0][1]._pid, signal.SIGKILL)
    assert typed(found := scan(clusters))
    assert found == scan(clusters)


@needs_two_cpus
def test_an_unreadable_root_raises_as_a_scan_does(tmp_path: Path) -> None:
    (tmp_path / "clusters").write_text("not a directory")
    assert scan_ahead(tmp_path) is False  # nothing a child could list
    with pytest.raises(fleetbox_db.StorageRootError, match="cannot read the clusters"):
        scan(tmp_path / "clusters")
    assert not ahead._pending


def test_no_child_for_a_missing_clusters_directory_or_a_small_tree(tmp_path: Path) -> None:
    assert scan_ahead(tmp_path) is False
    assert scan(tmp_path / "clusters") == Scan([], [])
    for n in range(AHEAD_CLUSTERS - 1):
        (tmp_path / "clusters" / f"c{n}" / f"c{n}-1").mkdir(parents=True)
    assert scan_ahead(tmp_path) is False  # its scan costs less than a fork
    (tmp_path / "clusters" / "one-more").mkdir()
    assert scan_ahead(tmp_path) is MULTI_CPU
    assert len(scan(tmp_path / "clusters").members) == AHEAD_CLUSTERS - 1


def run_python(code: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-c", code, *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def test_no_child_on_one_cpu(clusters: Path) -> None:
    code = (
        "import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from fleetbox_db import scan_ahead\n"
        "print(scan_ahead(sys.argv[1]))"
    )
    assert run_python(code, str(clusters)).stdout == "False\n"


@needs_two_cpus
def test_the_child_holds_none_of_the_callers_output(clusters: Path) -> None:
    """A caller reading the command's output to its end is not kept waiting by a child
    still listing (here: one that would sleep a minute)."""
    code = (
        "import sys, time; from fleetbox_db.disk import ahead\n"
        "ahead.start(sys.argv[1], lambda: time.sleep(60)); print('done')"
    )
    done = run_python(code, str(clusters), timeout=30)  # TimeoutExpired if it were kept
    assert done.stdout == "done\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ls"], (True, None)),
        (["--root", "/r", "ls", "--json"], (True, "/r")),
        (["--root=/r", "-vv", "--json", "who-has", "10.0.0.2"], (True, "/r")),
        (["--now", "2026-01-01T00:00:00Z", "--verbose", "free-ips", "10.0.0.0/24"], (True, None)),
        (["--now=2026-01-01T00:00:00Z", "show", "web-1"], (True, None)),
        (["--root", "/r", "check"], (True, "/r")),
        (["create", "web-1"], (False, None)),
        (["--root", "/r", "rm", "web-1"], (False, "/r")),
        (["reconcile"], (False, None)),
        (["--root", "", "ls"], (False, "")),
        (["--root"], (False, "")),
        (["--help"], (False, None)),
        (["--root", "/r"], (False, "/r")),
        ([], (False, None)),
        (["--unknown", "ls"], (False, None)),
    ],
)
def test_which_command_lines_start_a_scan_ahead(
    args: list[str], expected: tuple[bool, str | None]
) -> None:
    assert scan_first(args) == expected


CLI_TAKES = """
import sys
from fleetbox_db.disk import ahead
taken = []
take = ahead.take
def counted(path):
    listing = take(path)
    taken.append((path, listing is not None))
    return listing
ahead.take = counted
from fleetbox_db.cli import main
try:
    main(sys.argv[1:])
finally:
    print("taken:", taken, "pending:", len(ahead._pending), file=sys.stderr)
"""


@needs_two_cpus
def test_ls_and_who_has_answer_from_the_childs_listing_as_from_their_own(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with Store.open(root) as store:
        store.create(VM("web-1", ip="10.0.0.2"))
        store.create(VM("db-1", ip="10.0.0.3"))
        expected = [e.name for e in store.entries()]
    (root / "clusters" / "db" / "db-1" / "config.json").write_text('{"name": "db-1", "ip": "')
    grow(root / "clusters")
    with Store.open(root) as store:
        expected_states = {e.name: e.state for e in store.entries()}
    done = run_python(CLI_TAKES, "--root", f"{root}/", "ls", "--json")
    assert [e["name"] for e in json.loads(done.stdout)] == expected
    assert {e["name"]: e["state"] for e in json.loads(done.stdout)} == expected_states
    assert f"taken: [('{root}/clusters', True)] pending: 0" in done.stderr
    done = run_python(CLI_TAKES, "--root", str(root), "who-has", "10.0.0.2")
    assert done.stdout == "web-1\n"
    assert f"taken: [('{root}/clusters', True)] pending: 0" in done.stderr


def test_writing_commands_start_no_child(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run_python(CLI_TAKES, "--root", str(root), "create", "web-1")
    grow(root / "clusters")
    done = run_python(CLI_TAKES, "--root", str(root), "rm", "web-1")
    assert "True" not in done.stderr
    assert "pending: 0" in done.stderr
