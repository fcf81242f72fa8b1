"""The README's examples run as written: its ``pycon`` blocks are doctests, run in order in
one namespace, on the scratch root they make themselves."""

from __future__ import annotations

import doctest
import re
import shlex
import shutil
from pathlib import Path

from click.testing import CliRunner

from fleetbox_db.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_library_examples_run_as_written() -> None:
    blocks = re.findall(r"```pycon\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4
    parser = doctest.DocTestParser()
    test = parser.get_doctest("\n".join(blocks), {}, "README.md", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    results = runner.summarize(verbose=False)
    assert (results.failed, results.attempted > 20) == (0, True)


def test_readme_command_lines_use_only_options_that_exist() -> None:
    """Every `$ fleetbox-db ...` line of the README parses (with --help added, so nothing
    runs): no renamed or removed option, no unknown command."""
    lines = re.findall(r"^\$ fleetbox-db (.*)$", README.read_text(encoding="utf-8"), re.M)
    assert len(lines) >= 10
    for line in lines:
        result = CliRunner().invoke(cli, [*shlex.split(line), "--help"])
        assert (result.exit_code, result.stderr) == (0, ""), line
        assert result.stdout.startswith("Usage: "), line


# -- the console examples, run in the order of a session -----------------------------------

CREATED = "2024-05-03T12:00:00Z"
NOW = "2024-05-05T12:00:00+00:00"  # two days later: the AGE the examples show


def console_blocks() -> dict[str, str]:
    """Each README console example with output: its `fleetbox-db` argument line -> output."""
    blocks = re.findall(r"```console\n\$ fleetbox-db (.*?)\n(.*?)```", README.read_text(), re.S)
    return {line: output for line, output in blocks if output and not _illustrative(line)}


def _illustrative(line: str) -> bool:
    """`log` and `sql` examples show times and pids of the run they were taken from (their
    exact output is tested in tests/test_cli_history.py; their options are checked above)."""
    return line.split()[0] in ("log", "sql")


def test_readme_console_examples_print_what_they_show(tmp_path: Path) -> None:
    """The fleet of the `ls` example (db-1, dev, web-1, web-2, made two days ago), then
    every example with output, in the order a session would run them."""
    from datetime import datetime

    from fleetbox_db import VM, Fixture, Store

    root = tmp_path / "fleetbox"
    created = datetime.fromisoformat(CREATED)
    with Store.open(root) as store:
        fixture = Fixture("/srv/data", "/data", "FBFIX0")
        store.create(VM("db-1", cpus=4, memory_mb=8192, created_at=created, fixtures=[fixture]))
        store.ensure_dir("dev")
        store.create(VM("web-1", created_at=created), subnet="10.0.0.0/24")
        store.create(VM("web-2", created_at=created), subnet="10.0.0.0/24")
        vm = store.load("db-1")
        vm.ip = "10.0.0.4"
        store.save(vm)
    blocks = console_blocks()
    session = [
        "create web-4 --ip 10.0.0.2",
        "ls",
        "show db-1",
        "free-ips 10.0.0.0/24 --limit 3",
        "who-has C2:E2:65:D7:2F:93",
        "cp -r web-2 web-3",
        "reconcile",
        "check",
        "set web-3 ip=10.0.0.7 mac=",
        "migrate",
        "rm web nope --yes",
    ]
    for line in session:
        if line.startswith("cp "):  # what an operator's copy of a member directory does
            web = root / "clusters" / "web"
            shutil.copytree(web / "web-2", web / "web-3")
            continue
        result = CliRunner().invoke(cli, ["--root", str(root), "--now", NOW, *shlex.split(line)])
        assert result.output == blocks.pop(line), line
    assert blocks == {}, "README console examples the session does not run"
