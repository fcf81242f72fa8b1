"""What the command line imports before it answers: `--version` answers before the commands
are defined, with the same line click's eager option prints. Real subprocesses."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from helpers import put

from fleetbox_db import Store, logs
from fleetbox_db.cli import cli
from fleetbox_db.index.reconcile import DEFAULT_GRANULARITY_NS


def run_python(code: str, *args: str) -> str:
    argv = [sys.executable, "-c", code, *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def test_fast_version_prints_what_the_option_prints() -> None:
    fast = run_python("from fleetbox_db.cli import main; main(['--version'])")
    assert fast == CliRunner().invoke(cli, ["--version"]).output


def test_version_imports_neither_the_commands_nor_the_store() -> None:
    code = (
        "import sys; from fleetbox_db.cli import main; main(['--version']);"
        " print(sorted(m for m in sys.modules if m.startswith('fleetbox_db')))"
    )
    lines = run_python(code).splitlines()
    assert lines[0].startswith("fleetbox-db ")
    assert lines[1] == "['fleetbox_db', 'fleetbox_db.cli', 'fleetbox_db.errors']"
    assert run_python(code + "; print('click' in sys.modules)").splitlines()[-1] == "False"


def test_importing_the_package_loads_the_store_on_first_use() -> None:
    code = (
        "import sys, fleetbox_db; before = 'fleetbox_db.store' in sys.modules;"
        " fleetbox_db.Store; print(before, 'fleetbox_db.store' in sys.modules)"
    )
    assert run_python(code).split() == ["False", "True"]


def test_ls_imports_no_other_command_module_nor_what_only_writes_need(tmp_path: Path) -> None:
    """`ls` on a settled store: no other command's module, no hashlib (OpenSSL), shutil,
    tempfile or random (a tenth of its imports together), no logging (another tenth)."""
    root = tmp_path / "fleetbox"
    put(root, "web-1", ip="10.0.0.2")
    # Settled: past the racy window, one ls verifies the config, the measured one reads none.
    time.sleep(DEFAULT_GRANULARITY_NS / 1e9 + 0.2)
    CliRunner().invoke(cli, ["--root", str(root), "ls"])
    unwanted = (
        "fleetbox_db.cli.writes",
        "fleetbox_db.cli.upkeep",
        "fleetbox_db.cli.history",
        "hashlib",
        "shutil",
        "tempfile",
        "random",
        "logging",
    )
    code = (
        "import sys; from fleetbox_db.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {unwanted!r} if m in sys.modules))"
    )
    lines = run_python(code, "--root", str(root), "ls").splitlines()
    assert lines[1].startswith("web-1 ")
    assert lines[-1] == "[]"


@pytest.mark.parametrize("command", [["ls"], ["who-has", "10.9.9.9"]])
def test_the_command_line_runs_without_the_collector_and_ends_frozen(
    tmp_path: Path, command: list[str]
) -> None:
    """main() runs its one command without the cyclic collector and hands the objects to the
    OS at exit (gc.freeze), whether the command succeeds or fails; the output and exit
    status are click's as before."""
    root = tmp_path / "fleetbox"
    put(root, "web-1", ip="10.0.0.2")
    code = (
        "import gc, sys; from fleetbox_db.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n"
        "    print('exit', exc.code, gc.get_freeze_count() > 0, gc.isenabled())\n"
    )
    lines = run_python(code, "--root", str(root), *command).splitlines()
    if command == ["ls"]:
        assert lines[0].startswith("NAME")
        assert lines[1].startswith("web-1 ")
        assert lines[-1] == "exit 0 True False"
    else:
        assert lines == ["exit 1 True False"]


@pytest.mark.parametrize(
    "command",
    [
        ["ls", "--json"],
        ["who-has", "10.0.0.2"],
        ["free-ips", "10.0.0.0/29"],
        ["check"],
        ["reconcile", "--full"],
        ["create", "db-1", "--subnet", "10.0.0.0/29"],
        ["log"],
    ],
    ids=lambda c: c[0] if len(c) == 1 or c[0] != "ls" else "ls-json",
)
def test_commands_leave_no_cyclic_garbage(tmp_path: Path, command: list[str]) -> None:
    """What lets main() run without the collector: a command makes no reference cycles, so
    nothing it leaves waits for one (frozen objects are unfrozen and collected here)."""
    root = tmp_path / "fleetbox"
    put(root, "web-1", ip="10.0.0.2")
    put(root, "web-2", data=b'{"name": "web-2", "ip": "10.0')  # unreadable: its error too
    code = (
        "import gc, io, sys, contextlib; from fleetbox_db.cli import main\n"
        "try:\n    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(sys.argv[1:])\nexcept SystemExit as exc:\n    status = exc.code\n"
        "gc.unfreeze()\nprint(status, gc.collect())\n"
    )
    needs_a_person = command[0] in ("check", "reconcile")  # web-2 is unreadable: exit 1
    status = "1" if needs_a_person else "0"
    assert run_python(code, "--root", str(root), *command).split() == [status, "0"]


def test_every_command_listed_is_the_command_of_that_name() -> None:
    """The lazily imported commands: a wrong module or attribute fails here, not for a user."""
    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    assert {"create", "set", "rm", "reconcile", "check", "log", "sql", "ls"} <= set(names)
    for name in names:
        command = cli.get_command(ctx, name)
        assert command is not None
        assert command.name == name


def test_a_warning_made_after_start_up_gets_the_cli_format(tmp_path: Path) -> None:
    """Without -v the CLI's stderr handler waits for the first record (fleetbox_db.logs):
    in a fresh process, where nothing imported logging before, the warning still comes out
    as the one formatted line."""
    root = tmp_path / "fleetbox"
    put(root, "web-1", ip="10.0.0.2")
    with Store.open(root) as store:
        store.list()
    with sqlite3.connect(root / "index.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'fleetbox_9999'")
    conn.close()
    code = (
        "import sys; from fleetbox_db.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    )
    argv = [sys.executable, "-c", code, "--root", str(root), "who-has", "10.0.0.2"]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout == "web-1\n"
    assert done.stderr.startswith("fleetbox-db: warning: index ")
    assert done.stderr.endswith("; answering from disk\n")
    assert done.stderr.count("\n") == 1


def test_a_deferred_setup_runs_once_at_the_first_record_unless_cancelled() -> None:
    code = """
import sys
from fleetbox_db import logs
ran = []
cancel = logs.when_made(lambda logger: ran.append("cancelled"))
logs.when_made(lambda logger: ran.append(logger.name))
cancel()
print("logging" in sys.modules, ran)
logs.log.info("dropped: nothing could have asked for it")
print("logging" in sys.modules, ran)
logs.log.warning("one")
logs.log.warning("two")
print("logging" in sys.modules, ran)
logs.when_made(lambda logger: ran.append("now"))
print(ran)
"""
    assert run_python(code).splitlines() == [
        "False []",
        "False []",
        "True ['fleetbox_db']",
        "['fleetbox_db', 'now']",
    ]


def test_the_deferred_logger_names_its_caller(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=logs.NAME)
    logs.log.info("via %s", "info")
    logs.log.log(logging.DEBUG, "via log")
    logs.log.warning("via warning")
    assert [(r.getMessage(), r.funcName) for r in caplog.records] == [
        ("via info", "test_the_deferred_logger_names_its_caller"),
        ("via log", "test_the_deferred_logger_names_its_caller"),
        ("via warning", "test_the_deferred_logger_names_its_caller"),
    ]
