"""The command line an operator can trust (issue 14): exact output, exact error lines and
exit codes for safe removal, no accidental stores, every holder, `set`, bounded reports,
ls filters and formats, escaped messages and Ctrl-C. Real files, real processes."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import put
from test_operators import running

from fleetbox_db import VM, Store, generate_mac
from fleetbox_db.cli import cli

CREATED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
NOW = "2024-01-04T05:04:05+00:00"
Run = Callable[..., Result]


@pytest.fixture
def run(root: Path) -> Run:
    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, ["--root", str(root), "--now", NOW, *args], input=input)

    return invoke


def add(store: Store, name: str, **fields: object) -> VM:
    return store.create(VM(name, created_at=CREATED, **fields))  # type: ignore[arg-type]


def outcome(result: Result) -> tuple[int, str, str]:
    return result.exit_code, result.stdout, result.stderr


# -- rm -------------------------------------------------------------------------------------


def test_rm_refuses_a_running_member_and_keeps_its_disk(store: Store, run: Run) -> None:
    add(store, "web-1")
    store.disk_path("web-1").write_bytes(b"disk")
    lock = store.vm_dir("web-1") / ".lock"
    with running(store.vm_dir("web-1"), pid=77):
        result = run("rm", "web-1")
    assert outcome(result) == (
        1,
        "",
        f"fleetbox-db: error: vm 'web-1' is running (its lock {lock} is held by pid 77); "
        "stop it first\n",
    )
    assert store.disk_path("web-1").read_bytes() == b"disk"


def test_rm_of_several_members_needs_yes_when_not_on_a_terminal(store: Store, run: Run) -> None:
    add(store, "web-1")
    add(store, "web-2")
    assert outcome(run("rm", "web")) == (
        1,
        "",
        "fleetbox-db: error: rm would remove 2 members (web-1, web-2); pass --yes to remove "
        "them, or --dry-run to only list them\n",
    )
    assert store.list() == ["web-1", "web-2"]
    assert outcome(run("rm", "web", "--yes")) == (0, "web-1\nweb-2\n", "")
    assert store.list() == []


def test_rm_of_one_member_needs_no_yes(store: Store, run: Run) -> None:
    add(store, "web-1")
    assert outcome(run("rm", "web")) == (0, "web-1\n", "")


def test_rm_dry_run_prints_what_would_go_and_removes_nothing(store: Store, run: Run) -> None:
    add(store, "web-1")
    add(store, "web-2")
    assert outcome(run("rm", "--all", "--dry-run")) == (
        0,
        "would remove web-1\nwould remove web-2\n",
        "",
    )
    assert store.list() == ["web-1", "web-2"]


def _in_a_terminal(argv: list[str], answer: bytes | None) -> tuple[int, str]:
    """Run *argv* with a pseudo-terminal as stdin, stdout and stderr; answer its prompt
    (None: press Ctrl-C there instead)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 30
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/N]" in seen:
            if answer is None:
                proc.send_signal(signal.SIGINT)
            else:
                os.write(leader, answer)
            answered = True
        if proc.poll() is not None and not ready:
            break
    os.close(leader)
    return proc.wait(timeout=30), seen.decode().replace("\r\n", "\n")


@pytest.mark.parametrize(("answer", "left"), [(b"n\n", ["web-1", "web-2"]), (b"y\n", [])])
def test_rm_on_a_terminal_previews_and_asks(
    store: Store, root: Path, answer: bytes, left: list[str]
) -> None:
    add(store, "web-1")
    add(store, "web-2")
    argv = [sys.executable, "-m", "fleetbox_db", "--root", str(root), "rm", "web"]
    code, shown = _in_a_terminal(argv, answer)
    prompt = (
        "fleetbox-db: would remove 2 members: web-1, web-2\n"
        f"Remove these 2 members? [y/N]: {answer.decode()}"
    )
    if left:
        assert (code, shown) == (1, prompt + "fleetbox-db: error: nothing removed\n")
    else:
        assert (code, shown) == (0, prompt + "web-1\nweb-2\n")
    assert store.list() == left


def test_ctrl_c_at_the_prompt_exits_130_and_removes_nothing(store: Store, root: Path) -> None:
    add(store, "web-1")
    add(store, "web-2")
    argv = [sys.executable, "-m", "fleetbox_db", "--root", str(root), "rm", "web"]
    code, shown = _in_a_terminal(argv, None)
    assert (code, shown.splitlines()[-1]) == (130, "fleetbox-db: interrupted")
    assert store.list() == ["web-1", "web-2"]


def test_rm_cluster_slash_name_removes_a_stray(root: Path, store: Store, run: Run) -> None:
    put(root, "web-3", cluster="db")
    assert outcome(run("rm", "web-3")) == (
        1,
        "",
        "fleetbox-db: error: no member named 'web-3'; it exists only as a stray at db/web-3: "
        "name it as 'db/web-3' (`fleetbox-db rm db/web-3` removes it)\n",
    )
    assert outcome(run("rm", "db/web-3")) == (0, "db/web-3\n", "")
    assert store.list() == []


def test_rm_of_a_cluster_takes_its_strays(root: Path, store: Store, run: Run) -> None:
    put(root, "db-1")
    put(root, "web-3", cluster="db")
    assert outcome(run("rm", "db", "--yes")) == (0, "db-1\ndb/web-3\n", "")


# -- no store, no new store -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["show", "web-1"],
        ["who-has", "10.0.0.2"],
        ["free-ips", "10.0.0.0/24"],
        ["check"],
        ["reconcile"],
        ["migrate"],
        ["rm", "web-1"],
        ["set", "web-1", "cpus=4"],
    ],
    ids=lambda args: args[0],
)
def test_commands_other_than_create_refuse_a_root_without_a_store(
    tmp_path: Path, args: list[str]
) -> None:
    typo = tmp_path / "fleetbx"
    result = CliRunner().invoke(cli, ["--root", str(typo), *args])
    assert outcome(result) == (
        1,
        "",
        f"fleetbox-db: error: no fleetbox store at {typo} (use `create` to start one)\n",
    )
    assert not typo.exists()


def test_create_starts_a_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--root", str(tmp_path / "new"), "create", "web-1"])
    assert result.exit_code == 0
    assert (tmp_path / "new" / "clusters" / "web" / "web-1" / "config.json").exists()


def test_an_empty_root_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["--root", "", "ls"])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == "Error: Invalid value for '--root': must not be empty"


# -- who-has --------------------------------------------------------------------------------


def test_who_has_prints_every_holder_and_warns_of_a_conflict(
    root: Path, store: Store, run: Run
) -> None:
    put(root, "web-1", ip="10.0.0.3")
    put(root, "web-2", ip="10.0.0.3")
    assert outcome(run("who-has", "10.0.0.3")) == (
        1,
        "web-1\nweb-2\n",
        "fleetbox-db: warning: 10.0.0.3 is claimed by 2 members; give all but one another "
        "address with `fleetbox-db set NAME ip=...`\n",
    )
    result = run("who-has", "10.0.0.3", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"value": "10.0.0.3", "holders": ["web-1", "web-2"]}


def test_who_has_json_with_no_holder_still_prints_a_document(store: Store, run: Run) -> None:
    result = run("who-has", "10.0.0.9", "--json")
    assert (result.exit_code, result.stderr) == (1, "")
    assert json.loads(result.stdout) == {"value": "10.0.0.9", "holders": []}


@pytest.mark.parametrize("value", ["banana", "c2-e2-65-d7-2f-93"])
def test_who_has_names_input_that_is_neither(store: Store, run: Run, value: str) -> None:
    assert outcome(run("who-has", value)) == (
        1,
        "",
        f"fleetbox-db: error: {value!r} is not an IPv4 address or a MAC address (like "
        "10.0.0.2 or c2:e2:65:d7:2f:93)\n",
    )


# -- set ------------------------------------------------------------------------------------


def test_set_changes_fields_through_save(store: Store, run: Run) -> None:
    add(store, "web-1", ip="10.0.0.2")
    result = run("set", "web-1", "ip=10.0.0.7", "cpus=4", "image=ubuntu-24.04")
    assert (result.exit_code, result.stderr) == (0, "")
    vm = store.load("web-1")
    assert (vm.ip, vm.cpus, vm.image, vm.created_at) == ("10.0.0.7", 4, "ubuntu-24.04", CREATED)
    assert "ip          10.0.0.7\n" in result.stdout


def test_set_refuses_an_address_another_member_holds(store: Store, run: Run) -> None:
    add(store, "web-1", ip="10.0.0.2")
    add(store, "web-2", ip="10.0.0.3")
    assert outcome(run("set", "web-2", "ip=10.0.0.2")) == (
        1,
        "",
        "fleetbox-db: error: ip 10.0.0.2 for vm 'web-2' is already held by web-1; choose "
        "another address or pass a subnet to allocate one\n",
    )
    assert store.load("web-2").ip == "10.0.0.3"


def test_set_fixes_the_conflict_check_reports(root: Path, store: Store, run: Run) -> None:
    put(root, "web-1", ip="10.0.0.3", mac="02:00:00:00:00:01")
    put(root, "web-2", ip="10.0.0.3", mac="02:00:00:00:00:02")
    assert "`fleetbox-db set NAME ip=...`" in run("check").stdout
    assert run("set", "web-2", "ip=10.0.0.4").exit_code == 0
    assert outcome(run("check")) == (0, "no problems\n", "")


def test_set_on_a_copied_directory_changes_the_copy_not_the_original(
    store: Store, run: Run
) -> None:
    add(store, "web-2", ip="10.0.0.3")
    shutil.copytree(store.vm_dir("web-2"), store.vm_dir("web-3"))  # its config says web-2
    assert run("set", "web-3", "ip=10.0.0.7", "mac=").exit_code == 0
    assert (store.load("web-2").ip, store.load("web-2").mac) == ("10.0.0.3", generate_mac("web-2"))
    web_3 = store.load("web-3")
    assert (web_3.name, web_3.ip, web_3.mac) == ("web-3", "10.0.0.7", generate_mac("web-3"))
    assert outcome(run("check")) == (0, "no problems\n", "")


def test_set_refuses_a_stray(root: Path, store: Store, run: Run) -> None:
    put(root, "web-3", cluster="db")
    assert outcome(run("set", "db/web-3", "cpus=4")) == (
        1,
        "",
        "fleetbox-db: error: set does not write a stray directory (db/web-3): the Go tool "
        "never reads it; move it under clusters/web/, or remove it with "
        "`fleetbox-db rm db/web-3`\n",
    )


def test_set_replaces_fixtures(store: Store, run: Run, tmp_path: Path) -> None:
    add(store, "web-1")
    assert run("set", "web-1", "--fixture", f"{tmp_path}:/data").exit_code == 0
    assert [f.guest_path for f in store.load("web-1").fixtures] == ["/data"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["nope=1"],
            "unknown key 'nope': choose from ip, mac, cpus, memory_mb, disk_mb, image",
            id="unknown-key",
        ),
        pytest.param(["cpus"], "expected KEY=VALUE, not 'cpus'", id="no-equals"),
        pytest.param(["cpus=0"], "cpus must be a whole number >= 1, not '0'", id="zero"),
        pytest.param([], "give at least one KEY=VALUE or --fixture", id="nothing"),
    ],
)
def test_set_usage_errors_exit_2(store: Store, run: Run, args: list[str], message: str) -> None:
    add(store, "web-1")
    result = run("set", "web-1", *args)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == f"Error: {message}"


# -- check and reconcile --------------------------------------------------------------------


def test_check_on_drift_alone_reports_it_and_exits_0(root: Path, store: Store, run: Run) -> None:
    put(root, "web-1")
    store.list()
    put(root, "web-2")  # a Go-tool write: the next listing records it
    assert outcome(run("check")) == (
        0,
        "problems: 1 (drift 1)\nindex lacks vm 'web-2'; run reconcile\n",
        "",
    )


def test_check_limits_its_lines_after_a_summary(root: Path, store: Store, run: Run) -> None:
    for i in range(1, 5):
        put(root, f"web-{i}", ip="10.0.0.2")  # one IP, four claims; four MACs
    put(root, "web-9", cluster="db")
    store.list()
    result = run("check", "--limit", "1")
    assert outcome(result) == (
        1,
        "problems: 2 (conflict 1, stray 1)\n"
        f"stray directory {root}/clusters/db/web-9: vm 'web-9' belongs under clusters/web/; "
        "move it there, or remove it with `fleetbox-db rm db/web-9`\n"
        "... and 1 more (--limit 0 shows all, --json too)\n",
        "",
    )
    assert len(json.loads(run("check", "--json", "--limit", "1").stdout)) == 2


def test_check_names_why_a_config_is_unreadable(root: Path, store: Store, run: Run) -> None:
    put(root, "web-1", data=b'{"name": "web-1", "cpus": "two"}')
    config = root / "clusters" / "web" / "web-1" / "config.json"
    assert outcome(run("check")) == (
        1,
        "problems: 1 (unreadable 1)\n"
        f"unreadable config {config} of vm 'web-1': wrong type for \"cpus\": expected an "
        "integer, got a string; fix or remove it\n",
        "",
    )


def test_reconcile_prints_counts_and_bounded_lists(root: Path, store: Store, run: Run) -> None:
    for i in range(1, 6):
        put(root, f"web-{i}")
    put(root, "db-1", data=b"{not json")
    put(root, "web-9", cluster="db")
    result = run("reconcile", "--limit", "2")
    assert outcome(result) == (
        1,
        "added 7, changed 0, removed 0, unreadable 1, conflicts 0, strays 1\n"
        "added: db-1, web-9 ... and 5 more\n"
        "unreadable: db-1: not valid JSON (line 1 column 2: Expecting property name enclosed "
        "in double quotes)\n"
        "stray: db/web-9 belongs under clusters/web/; move it there, or remove it with "
        "`fleetbox-db rm db/web-9`\n",
        "",
    )


def test_reconcile_of_a_clean_store_exits_0(root: Path, store: Store, run: Run) -> None:
    put(root, "web-1")
    assert outcome(run("reconcile")) == (
        0,
        "added 1, changed 0, removed 0, unreadable 0, conflicts 0, strays 0\nadded: web-1\n",
        "",
    )


# -- ls and show ----------------------------------------------------------------------------


@pytest.fixture
def mixed(root: Path, store: Store) -> None:
    add(store, "web-1", ip="10.0.0.2")
    add(store, "db 1")  # a name with a space, cluster "db 1"
    store.ensure_dir("dev")
    put(root, "web-7", cluster="db")


def test_ls_quiet_names_one_per_line_strays_as_cluster_slash_name(mixed: None, run: Run) -> None:
    assert outcome(run("ls", "-q")) == (0, "db/web-7\ndb 1\ndev\nweb-1\n", "")


def test_ls_filters_by_clusters_and_states(mixed: None, run: Run) -> None:
    assert run("ls", "-q", "--cluster", "web", "--cluster", "dev").stdout == "dev\nweb-1\n"
    assert run("ls", "-q", "--state", "stray", "--state", "configless").stdout == (
        "db/web-7\ndev\n"
    )


def test_ls_without_headers(mixed: None, run: Run) -> None:
    out = run("ls", "--no-headers", "--state", "ok").stdout
    assert out == (
        "db 1   db 1  -         12:74:6c:1e:fc:82  2  4G  debian-12  2d  ok\n"
        "web-1  web   10.0.0.2  c2:e2:65:d7:2f:93  2  4G  debian-12  2d  ok\n"
    )


def test_ls_jsonl_is_one_record_per_line(mixed: None, run: Run) -> None:
    lines = run("ls", "--format", "jsonl").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["name"], r["cluster"], r["state"]) for r in records] == [
        ("web-7", "db", "stray"),
        ("db 1", "db 1", "ok"),
        ("dev", "dev", "configless"),
        ("web-1", "web", "ok"),
    ]
    assert run("ls", "--format", "json").stdout == run("ls", "--json").stdout


def test_ls_shows_why_in_json(root: Path, store: Store, run: Run) -> None:
    put(root, "web-1", data=b'{"name": "web-1", "cpus": "two"}')
    (record,) = json.loads(run("ls", "--json").stdout)
    assert (record["state"], record["reason"]) == (
        "unreadable",
        'wrong type for "cpus": expected an integer, got a string',
    )


def test_show_takes_several_names_and_reports_the_missing(mixed: None, run: Run) -> None:
    result = run("show", "dev", "db/web-7", "nope")
    assert result.exit_code == 1
    assert result.stdout.count("\n\n") == 1
    assert "cluster     db\nstate       stray\n" in result.stdout
    assert result.stderr.startswith("fleetbox-db: error: vm 'nope' does not exist in ")
    records = json.loads(run("show", "dev", "web-1", "--json").stdout)
    assert [r["name"] for r in records] == ["dev", "web-1"]
    missing = run("show", "nope", "--json")
    assert (missing.exit_code, missing.stdout) == (1, "")


# -- messages, interrupts, -v ---------------------------------------------------------------


def test_error_lines_escape_control_characters(tmp_path: Path) -> None:
    evil = tmp_path / "x\x1b[2Jy"
    result = CliRunner().invoke(cli, ["--root", str(evil), "ls"])
    assert outcome(result) == (
        1,
        "",
        f"fleetbox-db: error: no fleetbox store at {tmp_path}/x\\x1b[2Jy (use `create` to "
        "start one)\n",
    )


def test_ctrl_c_exits_130_with_one_line(store: Store, root: Path) -> None:
    add(store, "web-1", ip="10.0.0.1")
    argv = [sys.executable, "-m", "fleetbox_db", "--root", str(root), "free-ips", "10.0.0.0/8"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"10.0.0.2\n"  # running, and soon blocked on the pipe
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (130, b"fleetbox-db: interrupted\n")


def test_verbose_says_what_the_command_did(root: Path, store: Store) -> None:
    store.list()  # the index exists
    put(root, "web-1")
    result = CliRunner().invoke(cli, ["-v", "--root", str(root), "ls", "-q"])
    *lines, took = result.stderr.splitlines()
    assert lines == [
        f"fleetbox-db: info: scanned 1 member directories under {root}/clusters",
        "fleetbox-db: info: reconciling the index: 1 configs to read, 0 directories gone",
    ]
    assert took.startswith("fleetbox-db: info: ls took ")
    debug = CliRunner().invoke(cli, ["-vv", "--root", str(root), "reconcile", "--full"])
    assert "fleetbox-db: debug: read web/web-1: ok\n" in debug.stderr
    put(root, "web-1", data=b"[]")
    debug = CliRunner().invoke(cli, ["-vv", "--root", str(root), "reconcile"])
    assert (
        "fleetbox-db: debug: read web/web-1: unreadable (does not hold a JSON object (it holds "
        "an array))\n"
    ) in debug.stderr
