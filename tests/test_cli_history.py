"""`fleetbox-db log` and `fleetbox-db sql`: exact output, exact error lines, exit codes, and
the crash-and-recover story of issue 17 told by `log` from a real SIGKILLed writer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import config, config_path, go_write, later, put

from fleetbox_db import VM, Store
from fleetbox_db.cli import cli
from fleetbox_db.cli.history_text import parse_since
from fleetbox_db.errors import InvalidValueError

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
#: The CLI's --now: after every event a test makes, whatever day the suite runs (NOW itself
#: was, until the suite ran past it on its own date).
LATER = datetime(2100, 1, 1, 12, 0, tzinfo=UTC)
Run = Callable[..., Result]


@pytest.fixture
def run(root: Path) -> Run:
    Store.open(root).close()  # a store, as only `create` may start one (issue 14)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--root", str(root), "--now", LATER.isoformat(), *args])

    return invoke


def records(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_log_table_json_and_filters(root: Path, run: Run) -> None:
    with Store.open(root, clock=later) as store:
        store.list()
        store.create(VM("web-1", ip="10.0.0.2"))
        data = json.loads(config_path(root, "web-1").read_bytes())
        put(root, "web-1", data=json.dumps(data | {"ip": "10.0.0.3", "cpus": 4}).encode())
        store.list()
    result = run("log", "web-1")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TIME", "MEMBER", "EVENT", "WHO", "WHAT"]
    assert lines[1].split()[2:5] == ["web-1", "created", "fleetbox_db"]
    assert lines[1].endswith("ip 10.0.0.2, mac c2:e2:65:d7:2f:93")
    assert lines[2].split()[2:5] == ["web-1", "changed", "disk"]
    assert lines[2].endswith("  ip 10.0.0.2 -> 10.0.0.3, cpus 2 -> 4")
    [changed] = records(run("log", "--kind", "changed", "--format", "jsonl"))
    assert changed["fields"] == {"ip": ["10.0.0.2", "10.0.0.3"], "cpus": [2, 4]}
    assert changed["who"] == "disk"
    assert changed["cluster"] == "web"
    as_json = json.loads(run("log", "--json", "--ip", "10.0.0.3").stdout)
    assert [e["kind"] for e in as_json] == ["changed"]
    assert run("log", "--since", "1h").stdout == "no events\n"  # LATER is in the future
    assert run("log", "--since", "2026-01-01", "-n", "1").stdout.count("\n") == 2


def test_log_errors_are_one_line(run: Run) -> None:
    result = run("log", "--since", "yesterday")
    assert result.exit_code == 1
    assert result.stderr.startswith("fleetbox-db: error: --since 'yesterday' is neither")
    assert result.stderr.count("\n") == 1
    assert run("log", "--kind", "made").exit_code == 2
    result = run("log", "--ip", "10.0.0.010")
    assert result.exit_code == 1
    assert result.stderr.startswith("fleetbox-db: error: invalid IPv4 address '10.0.0.010'")


def test_parse_since() -> None:
    assert parse_since("90s", NOW) == datetime(2026, 11, 30, 11, 58, 30, tzinfo=UTC)
    assert parse_since("1h30m", NOW) == datetime(2026, 11, 30, 10, 30, tzinfo=UTC)
    assert parse_since("1w", NOW) == datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert parse_since("2026-11-29", NOW) == datetime(2026, 11, 29, tzinfo=UTC)
    assert parse_since("2026-11-29T08:00+02:00", NOW).hour == 8
    for bad in ("", "h", "2x", "1h 30m", "-1h"):
        with pytest.raises(InvalidValueError):
            parse_since(bad, NOW)


def test_sql_formats(root: Path, run: Run) -> None:
    with Store.open(root) as store:
        store.create(VM("web-1", ip="10.0.0.2", cpus=4))
        store.create(VM("db-1", cpus=8))
    query = "SELECT name, cpus, ip FROM vms ORDER BY name"
    assert run("sql", query).stdout == (
        "name   cpus  ip\ndb-1   8     NULL\nweb-1  4     10.0.0.2\n"
    )
    assert run("sql", "--csv", query).stdout == "name,cpus,ip\ndb-1,8,\nweb-1,4,10.0.0.2\n"
    assert run("sql", "--format", "jsonl", query).stdout == (
        '{"name":"db-1","cpus":8,"ip":null}\n{"name":"web-1","cpus":4,"ip":"10.0.0.2"}\n'
    )
    assert json.loads(run("sql", "--json", query, "-p", "x").stdout or "null") is None
    assert json.loads(run("--json", "sql", "SELECT ? AS v", "-p", "x").stdout) == [{"v": "x"}]
    schema = run("sql", "--schema").stdout.splitlines()
    assert [line.split()[0] for line in schema] == [
        "view", "vms", "fixtures", "addresses", "reservations", "events", "problems",
    ]  # fmt: skip


def test_sql_errors_are_one_line(run: Run) -> None:
    result = run("sql", "DELETE FROM main.members")
    assert result.exit_code == 1
    assert result.stderr == (
        "fleetbox-db: error: query refused: writes are refused: the index is changed only "
        "by the Store\n"
    )
    result = run(
        "sql", "--timeout", "0.2",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith("fleetbox-db: error: the query ran past its 0.2 s")
    assert run("sql").exit_code == 2
    assert run("sql", "--schema", "SELECT 1").exit_code == 2


# -- the crash-and-recover story ---------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from fleetbox_db import VM, Store
    store = Store.open(sys.argv[1])
    i = 0
    while True:
        i += 1
        name = f"web-{i}"
        print("try", name, flush=True)
        store.create(VM(name), subnet="10.9.0.0/16")
        print("ack", name, flush=True)
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.003, 0.02], ids=["at-once", "3ms", "20ms"])
def test_after_a_sigkill_and_hand_edits_log_tells_exactly_what_changed_in_order(
    root: Path, delay: float
) -> None:
    Store.open(root).close()
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acked: list[str] = []
    deadline = time.monotonic() + 60
    while len(acked) < 12 and time.monotonic() < deadline:
        word, name = child.stdout.readline().split()
        if word == "ack":
            acked.append(name)
    time.sleep(delay)  # into the next create: before, during or after its commit
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    pid = child.pid
    cli_run = CliRunner()

    def log(*args: str) -> list[dict[str, Any]]:
        result = cli_run.invoke(cli, ["--root", str(root), "log", "-n", "0", "--json", *args])
        assert result.exit_code == 0, result.output
        return list(json.loads(result.stdout))

    # Hand edits after the crash, as the Go tool and an editor make them.
    on_disk = sorted(p.name for p in (root / "clusters" / "web").iterdir())
    go_write(config_path(root, "web-2"), config("web-2", ip="10.9.0.4", cpus=8))  # web-3's
    go_write(config_path(root, "web-4"), b'{"name": "web-4", ')
    config_path(root, "web-5").unlink()
    (root / "clusters" / "web" / "web-6" / "config.json").rename(
        root / "clusters" / "web" / "web-6" / "moved.json"
    )
    result = cli_run.invoke(cli, ["--root", str(root), "reconcile"])
    assert result.exit_code == 1, result.output  # a conflict and an unreadable config remain
    events = log()
    assert events[0]["kind"] == "history-started"
    created = [e for e in events if e["kind"] == "created"]
    # Every acknowledged create is recorded as the child's, in order; the one in flight is
    # recorded only if its config landed (as the child's if its commit did, else as disk's),
    # and nothing is recorded for a member that is not on disk.
    assert [e["name"] for e in created][: len(acked)] == acked
    assert {e["who"] for e in created[: len(acked)]} == {f"fleetbox_db (pid {pid})"}
    assert {e["name"] for e in created} == set(on_disk)
    assert len(created) == len(on_disk)
    for extra in created[len(acked) :]:
        assert extra["who"] in (f"fleetbox_db (pid {pid})", "disk")
    after = [e for e in events if e["who"] == "disk" and e["kind"] != "created"]
    # One reconcile, in Go's order; the conflicts it found, after its changes.
    assert [(e["name"], e["kind"]) for e in after] == [
        ("web-2", "changed"),
        ("web-4", "became-unreadable"),
        ("web-5", "changed"),
        ("web-6", "changed"),
        ("web-2", "conflict-appeared"),
    ]
    assert after[0]["fields"]["ip"] == ["10.9.0.3", "10.9.0.4"]
    assert after[0]["fields"]["cpus"] == [2, 8]
    assert after[2]["fields"]["state"] == ["ok", "configless"]
    assert after[4]["detail"] == "ip 10.9.0.4 claimed by web-2, web-3"
    # Running reconcile again records nothing more.
    assert cli_run.invoke(cli, ["--root", str(root), "reconcile"]).exit_code == 1
    assert log() == events
