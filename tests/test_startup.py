"""What the command line imports before it answers: `--version` answers before the commands
are defined, with the same line click's eager option prints. Real subprocesses."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from fleetbox_db.cli import cli


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
