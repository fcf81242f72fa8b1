"""The fleetbox-db command line: exact output, exact error lines, exit codes, real processes."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from fleetbox_db import VM, Fixture, Store
from fleetbox_db.cli import cli, progress
from fleetbox_db.cli.text import age, display, memory, parse_fixtures
from fleetbox_db.errors import InvalidValueError
from fleetbox_db.index.schema import HEAD
from fleetbox_db.rules.targets import resolve_targets

PROJECT = Path(__file__).resolve().parent.parent
DOCS = Path(__file__).resolve().parent.parent / "README.md"
CREATED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
NOW = "2024-01-04T05:04:05+00:00"  # CREATED + 2 days 2 hours
NAME_RULE = (
    "a VM name must be non-empty, not '.' or '..', contain no '/' or NUL, be at most 255 "
    "bytes in UTF-8, and not start a cluster named '.' or '..'"
)


# `root` and `store` come from conftest.py.

Run = Callable[..., Result]


@pytest.fixture
def run(root: Path) -> Run:
    """Invoke the CLI in-process on *root*, with "now" fixed so AGE is deterministic."""

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--root", str(root), "--now", NOW, *args])

    return invoke


def add(store: Store, name: str, **fields: object) -> VM:
    return store.create(VM(name, created_at=CREATED, **fields))  # type: ignore[arg-type]


@pytest.fixture
def fleet(store: Store, tmp_path: Path) -> Path:
    """web-1, web-2 (a fixture, 1.5 GiB), db-1 (no IP) and dev (configless)."""
    data = tmp_path / "data"
    data.mkdir()
    add(store, "web-1", ip="10.0.0.2")
    add(
        store,
        "web-2",
        ip="10.0.0.3",
        cpus=4,
        memory_mb=1536,
        fixtures=[Fixture(str(data), "/srv/data", "FBFIX0")],
    )
    store.create(VM("db-1", created_at=datetime(2024, 1, 4, 5, 0, 0, tzinfo=UTC)))
    store.ensure_dir("dev")
    return data


def ok(result: Result) -> str:
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    return result.stdout


# -- ls -------------------------------------------------------------------------------------

LS_TABLE = """\
NAME   CLUSTER  IP        MAC                CPUS  MEMORY  IMAGE      AGE  STATE
db-1   db       -         4e:d4:2f:98:bb:9e  2     4G      debian-12  4m   ok
dev    dev      -         -                  -     -       -          -    configless
web-1  web      10.0.0.2  c2:e2:65:d7:2f:93  2     4G      debian-12  2d   ok
web-2  web      10.0.0.3  52:c4:d8:6c:d9:e6  4     1536M   debian-12  2d   ok
"""


def test_ls_prints_an_aligned_table_in_list_order(fleet: Path, run: Run) -> None:
    assert ok(run("ls")) == LS_TABLE


def test_ls_cluster_keeps_only_that_cluster(fleet: Path, run: Run) -> None:
    assert ok(run("ls", "--cluster", "web")).splitlines() == [
        LS_TABLE.splitlines()[0],
        *LS_TABLE.splitlines()[3:],
    ]


def test_ls_of_one_cluster_asks_for_that_cluster_alone(
    fleet: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its rows alone (Store.entries(cluster)), not every member's VM; an impossible cluster
    name lists nothing, as filtering every entry did; several clusters ask for all."""
    asked: list[tuple[str, ...]] = []
    real = Store.entries

    def entries(self: Store, cluster: str | None = None) -> Any:
        asked.append(() if cluster is None else (cluster,))
        return real(self, cluster)

    monkeypatch.setattr(Store, "entries", entries)
    assert ok(run("ls", "--cluster", "web", "--cluster", "web")).splitlines() == [
        LS_TABLE.splitlines()[0],
        *LS_TABLE.splitlines()[3:],
    ]
    assert ok(run("ls", "-q", "--cluster", "..")) == ""
    assert ok(run("ls", "-q", "--cluster", "web", "--cluster", "dev")) == "dev\nweb-1\nweb-2\n"
    assert asked == [("web",), ("..",), ()]


def test_ls_of_an_empty_store_prints_the_header(store: Store, run: Run) -> None:
    assert ok(run("ls")) == "NAME  CLUSTER  IP  MAC  CPUS  MEMORY  IMAGE  AGE  STATE\n"


def test_ls_json_has_config_keys_cluster_and_state(fleet: Path, run: Run) -> None:
    config = {"cpus": 2, "memory_mb": 4096, "disk_mb": 20480, "image": "debian-12"}
    at = "2024-01-02T03:04:05Z"
    assert json.loads(ok(run("--json", "ls"))) == [
        {
            "name": "db-1",
            "cluster": "db",
            "state": "ok",
            "reason": None,
            "mac": "4e:d4:2f:98:bb:9e",
            **config,
            "created_at": "2024-01-04T05:00:00Z",
            "fixtures": [],
            "ip": "",
        },
        {"name": "dev", "cluster": "dev", "state": "configless", "reason": None}
        | dict.fromkeys(["mac", "cpus", "memory_mb", "disk_mb", "image", "created_at"])
        | {"fixtures": None, "ip": None},
        {
            "name": "web-1",
            "cluster": "web",
            "state": "ok",
            "reason": None,
            "mac": "c2:e2:65:d7:2f:93",
            **config,
            "created_at": at,
            "fixtures": [],
            "ip": "10.0.0.2",
        },
        {
            "name": "web-2",
            "cluster": "web",
            "state": "ok",
            "reason": None,
            "mac": "52:c4:d8:6c:d9:e6",
            **config,
            "cpus": 4,
            "memory_mb": 1536,
            "created_at": at,
            "fixtures": [{"host_path": str(fleet), "guest_path": "/srv/data", "label": "FBFIX0"}],
            "ip": "10.0.0.3",
        },
    ]


def test_json_flag_works_after_the_command_name(fleet: Path, run: Run) -> None:
    assert ok(run("ls", "--json")) == ok(run("--json", "ls"))


def test_ls_shows_conflict_unreadable_and_stray_states(store: Store, root: Path, run: Run) -> None:
    add(store, "web-1", ip="10.0.0.2")
    shutil.copytree(store.vm_dir("web-1"), store.vm_dir("web-2"))
    add(store, "db-1")
    store.config_path("db-1").write_text("{not json")
    (root / "clusters" / "other" / "web-7").mkdir(parents=True)
    states = [line.split()[-1] for line in ok(run("ls")).splitlines()[1:]]
    assert states == ["unreadable", "stray", "conflict", "conflict"]


def test_ls_escapes_control_characters_in_names(store: Store, run: Run) -> None:
    store.ensure_dir("new\nline")
    assert ok(run("ls")).splitlines()[1].split() == ["new\\nline"] * 2 + ["-"] * 6 + ["configless"]


def test_ls_answers_from_disk_when_the_index_is_newer(store: Store, root: Path, run: Run) -> None:
    add(store, "web-1", ip="10.0.0.2")
    store.close()
    with sqlite3.connect(root / "index.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'fleetbox_9999'")
    conn.close()
    result = run("ls")
    assert result.exit_code == 0
    assert "web-1" in result.stdout


# -- show, create ---------------------------------------------------------------------------


def show_text(data: Path) -> str:
    return f"""\
name        web-2
cluster     web
state       ok
mac         52:c4:d8:6c:d9:e6
cpus        4
memory_mb   1536
disk_mb     20480
image       debian-12
created_at  2024-01-02T03:04:05Z
ip          10.0.0.3
fixtures    FBFIX0 {data}:/srv/data
"""


def test_show_prints_one_member_in_full(fleet: Path, run: Run) -> None:
    assert ok(run("show", "web-2")) == show_text(fleet)


def test_show_json_is_one_ls_object(fleet: Path, run: Run) -> None:
    assert json.loads(ok(run("show", "web-2", "--json"))) == json.loads(ok(run("ls", "--json")))[3]


def test_show_of_a_configless_member(fleet: Path, run: Run) -> None:
    lines = ok(run("show", "dev")).splitlines()
    assert lines[:3] == ["name        dev", "cluster     dev", "state       configless"]
    assert {line.split()[1] for line in lines[3:]} == {"-"}


def test_create_prints_the_member_as_created(run: Run, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    args = ["--cpus", "4", "--memory-mb", "1536", "--ip", "10.0.0.3"]
    out = ok(run("create", "web-2", *args, "--fixture", f"{data}:/srv/data"))
    # --now is also the creation time.
    assert out == show_text(data).replace("2024-01-02T03:04:05Z", "2024-01-04T05:04:05Z")


def test_create_allocates_from_a_subnet_and_takes_mac(store: Store, run: Run) -> None:
    add(store, "web-1", ip="10.0.0.2")
    record = json.loads(
        ok(
            run(
                "--json", "create", "web-2", "--subnet", "10.0.0.0/24", "--mac", "AA:BB:CC:00:11:22"
            )
        )
    )
    assert (record["ip"], record["mac"]) == ("10.0.0.3", "aa:bb:cc:00:11:22")
    assert store.load("web-2").ip == "10.0.0.3"


def test_fixtures_split_on_the_last_colon_and_keep_their_order() -> None:
    dirs = {"/w/a:b", "/w/c", "/abs"}
    assert parse_fixtures(["a:b:/x", "./c/../c:/y", "/abs:/z"], "/w", dirs.__contains__) == [
        Fixture("/w/a:b", "/x", "FBFIX0"),
        Fixture("/w/c", "/y", "FBFIX1"),
        Fixture("/abs", "/z", "FBFIX2"),
    ]


def test_create_makes_relative_host_paths_absolute(
    run: Run, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    ok(run("create", "web-1", "--fixture", "data:/srv/data"))
    assert store.load("web-1").fixtures == [Fixture(str(tmp_path / "data"), "/srv/data", "FBFIX0")]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param("nocolon", "expected HOST:GUEST, like ./data:/srv/data", id="no-colon"),
        pytest.param(":/x", "expected HOST:GUEST, like ./data:/srv/data", id="no-host"),
        pytest.param("{d}:", "expected HOST:GUEST, like ./data:/srv/data", id="no-guest"),
        pytest.param("{d}:x", "guest path 'x' must be absolute", id="relative-guest"),
        pytest.param("{d}/nope:/x", "host path '{d}/nope' is not a directory", id="no-host-dir"),
        pytest.param("{d}/file:/x", "host path '{d}/file' is not a directory", id="host-file"),
    ],
)
def test_create_rejects_bad_fixtures(
    spec: str, message: str, run: Run, root: Path, tmp_path: Path
) -> None:
    (tmp_path / "file").touch()
    spec, message = spec.format(d=tmp_path), message.format(d=tmp_path)
    result = run("create", "web-1", "--fixture", spec)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"fleetbox-db: error: invalid fixture {spec!r}: {message}\n"
    assert not (root / "clusters" / "web").exists()


def test_create_rejects_duplicate_guest_paths() -> None:
    with pytest.raises(InvalidValueError, match="duplicate guest path '/x'"):
        parse_fixtures(["/a:/x", "/b:/x"], "/", lambda _: True)


# -- free-ips, who-has ----------------------------------------------------------------------


def test_free_ips_one_per_line(fleet: Path, run: Run) -> None:
    assert ok(run("free-ips", "10.0.0.0/29")) == "10.0.0.4\n10.0.0.5\n10.0.0.6\n"
    assert ok(run("free-ips", "10.0.0.0/24", "--limit", "2")) == "10.0.0.4\n10.0.0.5\n"
    assert ok(run("free-ips", "10.0.0.0/31")) == ""
    assert json.loads(ok(run("--json", "free-ips", "10.0.0.0/29"))) == [
        "10.0.0.4",
        "10.0.0.5",
        "10.0.0.6",
    ]


def test_free_ips_json_matches_the_list_to_json_would_print(
    fleet: Path, store: Store, run: Run
) -> None:
    for cidr in ("10.0.0.0/29", "10.0.0.0/30", "10.0.0.0/31", "10.0.0.4/32", "10.0.0.0/26"):
        expected = json.dumps(store.free_ips(cidr), indent=2) + "\n"
        assert ok(run("--json", "free-ips", cidr)) == expected, cidr


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_free_ips_of_a_slash_8_streams_in_bounded_memory(tmp_path: Path, as_json: bool) -> None:
    """16 million addresses as a list of str need ~1 GB; the child may map 600 MB."""
    root = tmp_path / "fleetbox"
    with Store.open(root) as store:
        store.create(VM("web-1", ip="10.0.0.1"))
    code = (
        "import resource, sys;"
        " resource.setrlimit(resource.RLIMIT_AS, (600 << 20, 600 << 20));"
        " from fleetbox_db.cli import main; main(sys.argv[1:])"
    )
    argv = [sys.executable, "-c", code, "--root", str(root), "free-ips", "10.0.0.0/8"]
    argv += ["--json"] if as_json else []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        head = [proc.stdout.readline() for _ in range(3)]
        proc.kill()
    first = ["[\n", '  "10.0.0.2",\n', '  "10.0.0.3",\n'] if as_json else ["10.0.0.2\n"]
    assert head[: len(first)] == first
    if not as_json:
        assert head == ["10.0.0.2\n", "10.0.0.3\n", "10.0.0.4\n"]


@pytest.mark.parametrize("value", ["10.0.0.3", "52:c4:d8:6c:d9:e6", "52:C4:D8:6C:D9:E6"])
def test_who_has_prints_the_member(value: str, fleet: Path, run: Run) -> None:
    assert ok(run("who-has", value)) == "web-2\n"
    assert json.loads(ok(run("who-has", value, "--json"))) == {"value": value, "holders": ["web-2"]}


def test_who_has_nobody_exits_1(fleet: Path, run: Run) -> None:
    result = run("who-has", "10.0.0.9")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "fleetbox-db: error: no member holds 10.0.0.9\n"


# -- error lines ----------------------------------------------------------------------------


def _bad_ip(text: str) -> str:
    return (
        f"invalid IPv4 address {text!r}: expected four decimal numbers 0-255 joined by '.', "
        "without leading zeros or spaces, like 192.168.0.2"
    )


def _bad_cidr(text: str) -> str:
    return (
        f"invalid subnet {text!r}: expected an IPv4 CIDR like 192.168.5.0/24 "
        "(a dotted-quad address, '/', and a prefix length from 0 to 32)"
    )


ERROR_CASES = [
    pytest.param(
        ["show", "nope"],
        "vm 'nope' does not exist in {root}/clusters; see `fleetbox-db ls`",
        id="missing-member",
    ),
    pytest.param(
        ["show", "../x"],
        f"invalid VM name '../x': as cluster/name, its cluster is a relative directory "
        f"reference; {NAME_RULE}",
        id="show-../x",
    ),
    pytest.param(
        ["create", "a/b"], f"invalid VM name 'a/b': it contains '/'; {NAME_RULE}", id="create-a/b"
    ),
    pytest.param(
        ["create", ".."],
        f"invalid VM name '..': it is a relative directory reference; {NAME_RULE}",
        id="create-..",
    ),
    pytest.param(
        ["rm", "web-1", "a/b/c"],
        f"invalid VM name 'a/b/c': it contains '/'; {NAME_RULE}",
        id="rm-a/b/c",
    ),
    pytest.param(["free-ips", "10.0.0.0/33"], _bad_cidr("10.0.0.0/33"), id="cidr-/33"),
    pytest.param(["free-ips", "nonsense"], _bad_cidr("nonsense"), id="cidr-nonsense"),
    pytest.param(
        ["create", "x", "--subnet", "10.0.0.0/33"], _bad_cidr("10.0.0.0/33"), id="create-cidr"
    ),
    pytest.param(["create", "x", "--ip", "300.1.1.1"], _bad_ip("300.1.1.1"), id="ip-300"),
    pytest.param(["who-has", "10.0.0.010"], _bad_ip("10.0.0.010"), id="ip-leading-zero"),
    pytest.param(
        ["create", "x", "--ip", "10.0.0.2"],
        "ip 10.0.0.2 for vm 'x' is already held by web-1; choose another address or pass a "
        "subnet to allocate one",
        id="duplicate-ip",
    ),
    pytest.param(
        ["create", "x", "--mac", "c2:e2:65:d7:2f:93"],
        "mac c2:e2:65:d7:2f:93 for vm 'x' is already held by web-1; leave mac empty to derive "
        "one from the name",
        id="duplicate-mac",
    ),
    pytest.param(
        ["create", "x", "--mac", "c2-e2-65-d7-2f-93"],
        "invalid MAC address 'c2-e2-65-d7-2f-93': expected six two-digit hex groups joined by "
        "':', like 52:54:00:12:34:56",
        id="bad-mac",
    ),
]


@pytest.mark.parametrize(("args", "message"), ERROR_CASES)
def test_errors_are_one_line_and_exit_1(
    args: list[str], message: str, store: Store, root: Path, run: Run
) -> None:
    add(store, "web-1", ip="10.0.0.2")
    before = sorted(p.relative_to(root) for p in (root / "clusters").rglob("*"))
    result = run(*args)
    assert result.stderr == f"fleetbox-db: error: {message.format(root=root)}\n"
    assert (result.exit_code, result.stdout) == (1, "")
    assert sorted(p.relative_to(root) for p in (root / "clusters").rglob("*")) == before


def test_create_of_an_existing_member_is_refused(store: Store, run: Run) -> None:
    add(store, "web-1")
    result = run("create", "web-1")
    assert result.exit_code == 1
    assert result.stderr.startswith("fleetbox-db: error: vm 'web-1' already exists at ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["create", "x", "--ip", "10.0.0.2", "--subnet", "10.0.0.0/24"],
            "--ip and --subnet cannot be used together",
            id="ip-and-subnet",
        ),
        pytest.param(["rm"], "give member or cluster names, or --all (not both)", id="rm-nothing"),
        pytest.param(
            ["rm", "x", "--all"], "give member or cluster names, or --all (not both)", id="rm-both"
        ),
        pytest.param(
            ["create", "x", "--cpus", "0"],
            "Invalid value for '--cpus': 0 is not in the range x>=1.",
            id="zero-cpus",
        ),
        pytest.param(
            ["free-ips", "10.0.0.0/24", "--limit", "-1"],
            "Invalid value for '--limit': -1 is not in the range x>=0.",
            id="negative-limit",
        ),
        pytest.param(["show"], "Missing argument 'NAME...'.", id="missing-argument"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str, run: Run) -> None:
    result = run(*args)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == f"Error: {message}"


def test_unusable_root_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    result = CliRunner().invoke(cli, ["--root", str(tmp_path / "file" / "root"), "ls"])
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.startswith("fleetbox-db: error: ")
    assert result.stderr.count("\n") == 1


# -- rm -------------------------------------------------------------------------------------

# facts §2, from the Go tool's targets_test.go: members web-1, web-2, web-prod, dev.
TARGET_CASES = [
    pytest.param(["dev"], ["dev"], [], id="dev"),
    pytest.param(["web-1"], ["web-1"], [], id="exact"),
    pytest.param(["web"], ["web-1", "web-2"], [], id="cluster-not-web-prod"),
    pytest.param(["nope"], [], ["nope"], id="unknown"),
    pytest.param(["dev", "nope"], ["dev"], ["nope"], id="dev-nope"),
    pytest.param(["web", "web-1"], ["web-1", "web-2"], [], id="deduplicated"),
    pytest.param(["web-2", "web"], ["web-2", "web-1"], [], id="first-seen-order"),
]


@pytest.mark.parametrize(("patterns", "targets", "unknown"), TARGET_CASES)
def test_resolve_targets(patterns: list[str], targets: list[str], unknown: list[str]) -> None:
    names = ["dev", "web-1", "web-2", "web-prod"]
    assert resolve_targets(names, patterns) == (targets, unknown)


def test_resolve_targets_exact_member_wins_over_cluster() -> None:
    assert resolve_targets(["web", "web-1", "web-2"], ["web"]) == (["web"], [])


@pytest.mark.parametrize(("patterns", "targets", "unknown"), TARGET_CASES)
def test_rm_removes_the_resolved_targets(
    patterns: list[str], targets: list[str], unknown: list[str], store: Store, run: Run
) -> None:
    for name in ("web-1", "web-2", "web-prod", "dev"):
        add(store, name)
    result = run("rm", "--yes", *patterns)
    assert result.stdout == "".join(f"{name}\n" for name in targets)
    assert result.stderr == "".join(
        f"fleetbox-db: error: no member or cluster named {name!r}\n" for name in unknown
    )
    assert result.exit_code == (1 if unknown else 0)
    left = [n for n in ("dev", "web-1", "web-2", "web-prod") if n not in targets]
    assert store.list() == left


def test_rm_cluster_name_with_an_exact_member_removes_only_it(store: Store, run: Run) -> None:
    for name in ("web", "web-1", "web-2"):
        add(store, name)
    assert ok(run("rm", "web")) == "web\n"
    assert store.list() == ["web-1", "web-2"]


def test_rm_all_and_json(store: Store, run: Run) -> None:
    for name in ("web-1", "dev"):
        add(store, name)
    store.ensure_dir("db-1")  # configless members are listed, so removed too
    assert json.loads(ok(run("--json", "rm", "--all", "--yes"))) == {
        "removed": ["db-1", "dev", "web-1"],
        "unknown": [],
        "failed": [],
        "dry_run": False,
    }
    assert store.list() == []


# -- reconcile, check, migrate --------------------------------------------------------------


COUNTS_ZERO = "added 0, changed 0, removed 0, unreadable 0, conflicts 0, strays 0\n"


def test_reconcile_reports_changes_and_conflicts(store: Store, run: Run) -> None:
    add(store, "web-1", ip="10.0.0.2")
    assert ok(run("reconcile")) == COUNTS_ZERO
    shutil.copytree(store.vm_dir("web-1"), store.vm_dir("web-2"))
    result = run("reconcile", "--dry-run")
    assert (result.exit_code, result.stderr) == (1, "")  # conflicts remain
    assert result.stdout == (
        "dry run: nothing written\n"
        "added 1, changed 0, removed 0, unreadable 0, conflicts 2, strays 0\n"
        "added: web-2\n"
        "conflict: ip 10.0.0.2 is claimed by web-1, web-2\n"
        "conflict: mac c2:e2:65:d7:2f:93 is claimed by web-1, web-2\n"
    )
    assert run("reconcile").stdout == (
        "added 1, changed 0, removed 0, unreadable 0, conflicts 2, strays 0\n"
        "added: web-2\n"
        "conflict: ip 10.0.0.2 is claimed by web-1, web-2\n"
        "conflict: mac c2:e2:65:d7:2f:93 is claimed by web-1, web-2\n"
    )
    assert json.loads(run("reconcile", "--full", "--json").stdout) == {
        "dry_run": False,
        "added": [],
        "updated": [],
        "removed": [],
        "released": [],
        "swept": [],
        "unreadable": [],
        "reasons": {},
        "conflicts": [
            {"kind": "ip", "value": "10.0.0.2", "members": ["web-1", "web-2"]},
            {"kind": "mac", "value": "c2:e2:65:d7:2f:93", "members": ["web-1", "web-2"]},
        ],
        "strays": [],
    }


def test_progress_bar_only_on_a_terminal_after_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    quick = progress.Progress("reconciling")
    quick(1, 2)  # under a second in: no bar yet
    assert quick.bar is None
    monkeypatch.setattr(progress, "PROGRESS_DELAY", 0.0)
    slow = progress.Progress("reconciling")
    slow(1, 2)
    slow(2, 2)
    slow.close()
    assert slow.bar is not None
    assert "reconciling 2 configs" in terminal.getvalue()
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: never
    piped = progress.Progress("reconciling")
    piped(1, 2)
    assert piped.bar is None


def test_check_clean_store_exits_0(store: Store, run: Run) -> None:
    add(store, "web-1", ip="10.0.0.2")
    assert ok(run("check")) == "no problems\n"
    assert json.loads(ok(run("check", "--json"))) == []


def test_check_with_a_conflict_exits_1(store: Store, run: Run) -> None:
    add(store, "web-1", ip="10.0.0.2")
    shutil.copytree(store.vm_dir("web-1"), store.vm_dir("web-2"))  # `cp -r`
    run("reconcile")
    result = run("check")
    assert (result.exit_code, result.stderr) == (1, "")
    assert result.stdout == (
        "problems: 2 (conflict 2)\n"
        "ip 10.0.0.2 is claimed by web-1, web-2; give all but one another address "
        "(`fleetbox-db set NAME ip=...`)\n"
        "mac c2:e2:65:d7:2f:93 is claimed by web-1, web-2; give all but one another address "
        "(`fleetbox-db set NAME mac=...`)\n"
    )
    problems = json.loads(run("--json", "check").stdout)
    assert [(p["kind"], p["members"], p["value"]) for p in problems] == [
        ("conflict", ["web-1", "web-2"], "10.0.0.2"),
        ("conflict", ["web-1", "web-2"], "c2:e2:65:d7:2f:93"),
    ]


def test_migrate_prints_the_head_revision(store: Store, run: Run) -> None:
    assert ok(run("migrate")) == f"{HEAD}\n"
    assert json.loads(ok(run("migrate", "--json"))) == {"revision": HEAD}


# -- global options, help, docs -------------------------------------------------------------


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert ok(result).startswith("fleetbox-db ")


def test_verbose_logs_library_activity_to_stderr(tmp_path: Path) -> None:
    for name in ("quiet", "loud"):
        Store.open(tmp_path / name).close()
    quiet = CliRunner().invoke(cli, ["--root", str(tmp_path / "quiet"), "migrate"])
    assert (quiet.exit_code, quiet.stderr) == (0, "")
    loud = CliRunner().invoke(cli, ["-v", "--root", str(tmp_path / "loud"), "migrate"])
    assert loud.exit_code == 0
    assert loud.stderr.startswith("fleetbox-db: info: upgrading index ")


def test_warnings_are_shown_without_verbose(store: Store, root: Path, run: Run) -> None:
    add(store, "web-1", ip="10.0.0.2")
    store.close()
    with sqlite3.connect(root / "index.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'fleetbox_9999'")
    conn.close()
    result = run("who-has", "10.0.0.2")
    assert result.stdout == "web-1\n"
    assert result.stderr.startswith("fleetbox-db: warning: index ")
    assert result.stderr.endswith("; answering from disk\n")


# list_commands, not cli.commands: the commands of writes, upkeep and history load lazily.
@pytest.mark.parametrize("name", cli.list_commands(click.Context(cli)))
def test_every_command_has_help_and_is_documented(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert command.help, f"{name} has no help text"
    assert command.get_short_help_str(limit=80).endswith(".")
    assert f"`fleetbox-db {name}" in DOCS.read_text(encoding="utf-8")
    assert CliRunner().invoke(cli, [name, "--help"]).exit_code == 0


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["show", "web-1"],
        ["create", "web-3"],
        ["free-ips", "10.0.0.0/30"],
        ["who-has", "10.0.0.2"],
        ["reconcile"],
        ["check"],
        ["migrate"],
        ["rm", "web-1"],
    ],
    ids=lambda args: args[0],
)
def test_every_command_prints_json(args: list[str], store: Store, run: Run) -> None:
    add(store, "web-1", ip="10.0.0.2")
    json.loads(ok(run("--json", *args)))


def test_age_and_memory_formats() -> None:
    now = datetime(2024, 1, 10, tzinfo=UTC)
    ago = [(0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (86399, "23h")]
    for seconds, text in [*ago, (86400, "1d"), (9 * 86400, "9d"), (-5, "0s")]:
        assert age(datetime.fromtimestamp(now.timestamp() - seconds, UTC), now) == text
    assert age(datetime(1, 1, 1, tzinfo=UTC), now) == "-"
    assert [memory(mb) for mb in (4096, 1536, 512, 0)] == ["4G", "1536M", "512M", "0M"]
    assert [display(s) for s in ("web-1", "a\tb", "caf\xe9", "x\udcff")] == [
        "web-1",
        "a\\tb",
        "caf\xe9",
        "x\\udcff",
    ]


# -- real processes -------------------------------------------------------------------------


def fleetbox_db(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetbox_db", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def test_python_m_runs_the_cli(fleet: Path, root: Path) -> None:
    proc = fleetbox_db("--root", str(root), "--now", NOW, "ls")
    assert (proc.returncode, proc.stderr, proc.stdout) == (0, "", LS_TABLE)


def test_python_m_default_root_is_fleetbox_home(fleet: Path, root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SUDO_USER", "HOME")}
    proc = fleetbox_db("who-has", "10.0.0.2", env=env | {"FLEETBOX_HOME": str(root)})
    assert (proc.returncode, proc.stderr, proc.stdout) == (0, "", "web-1\n")


def test_python_m_without_home_is_one_error_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FLEETBOX_HOME", "HOME")}
    proc = fleetbox_db("ls", env=env)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith("fleetbox-db: error: ")
    assert proc.stderr.count("\n") == 1


def test_python_m_error_has_no_traceback(root: Path) -> None:
    Store.open(root).close()
    proc = fleetbox_db("--root", str(root), "free-ips", "10.0.0.0/33")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"fleetbox-db: error: {_bad_cidr('10.0.0.0/33')}\n"


def test_ls_does_not_import_sqlalchemy_or_alembic(fleet: Path, root: Path) -> None:
    fleetbox_db("--root", str(root), "migrate")  # the index exists and is at head
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fleetbox_db", "--root", str(root), "ls"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    modules = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
    assert "fleetbox_db.store" in modules
    assert not {m for m in modules if m.split(".")[0] in ("sqlalchemy", "alembic")}
