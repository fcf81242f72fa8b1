"""The README's examples run as written: its ``pycon`` blocks are doctests, run in order in
one namespace, on the scratch root they make themselves."""

from __future__ import annotations

import doctest
import re
import shlex
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
