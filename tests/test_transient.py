"""An OS error while reading a config is never recorded as the file's state (issue 12).

The scan can stat a config.json that the reader then fails to open (EACCES that is later
fixed, EMFILE, EIO). Recording "unreadable" under the file's unchanged signature would mean
it is never read again: its address would stay unknown, who_has would miss it and create()
would hand its address to another VM. Instead such a read records no signature (so every
listing retries it), keeps the member's last good config if it had one, and while a
member's address is unknown that way, allocation refuses with a typed error naming it.

The error is real: the config is mode 000 and the reader runs as user nobody (as root,
whom no mode stops, this suite can only run where it is root: CI is).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import put
from stress_helpers import DROP_PRIVILEGES, IS_ROOT, NOBODY

from fleetbox_db import Store

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root to act as user nobody")

CHILD = textwrap.dedent(
    """
    import json, os, sys
    import encodings.ascii, filelock, platform, sqlite3  # nobody cannot read /root later
    from fleetbox_db import FleetboxError, Store, VM
    root, steps = sys.argv[1], json.loads(sys.argv[2])
    {drop}
    out = []
    with Store.open(root) as store:
        for step in steps:
            try:
                if step == "list":
                    out.append(store.list())
                elif step == "who_has":
                    out.append(store.who_has("10.0.0.2"))
                elif step == "create":
                    out.append(store.create(VM("new-1"), subnet="10.0.0.0/24").ip)
                elif step == "allocate":
                    out.append(store.allocate_ip("new-2", "10.0.0.0/24"))
                elif step == "states":
                    out.append({{e.name: e.state for e in store.entries()}})
            except FleetboxError as exc:
                out.append([type(exc).__name__, exc.name, str(exc)])
    print(json.dumps(out))
    """
).format(drop=DROP_PRIVILEGES)


def as_nobody(root: Path, *steps: str) -> list[Any]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), json.dumps(steps)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: list[Any] = json.loads(proc.stdout)
    return result


def empty_index(root: Path) -> None:
    """The index at head with no members, made as root (Alembic cannot load as nobody)."""
    with Store.open(root) as store:
        store.list()


def chown_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        os.chown(directory, NOBODY, NOBODY)
        for name in files:
            os.chown(os.path.join(directory, name), NOBODY, NOBODY)


def test_a_config_that_cannot_be_opened_is_retried_and_blocks_blind_allocation(
    shared_root: Path,
) -> None:
    empty_index(shared_root)
    put(shared_root, "web-1", "10.0.0.2")
    put(shared_root, "db-1", "10.0.0.3")
    chown_tree(shared_root)
    config = shared_root / "clusters" / "web" / "web-1" / "config.json"
    config.chmod(0o000)  # stat works, open fails with EACCES for its owner, nobody
    first = as_nobody(shared_root, "list", "who_has", "states", "create", "allocate")
    assert first[0] == ["db-1", "web-1"]
    assert first[1] is None  # its address is unknown for now
    assert first[2] == {"db-1": "ok", "web-1": "unreadable"}
    # Allocating blind could hand out 10.0.0.2 again: refused, naming the member.
    for refused in first[3:]:
        assert refused[0] == "AddressUnknownError"
        assert refused[1] == "web-1"
        assert str(config) in refused[2]
    config.chmod(0o644)  # fixed: the next listing, in any process, reads it
    second = as_nobody(shared_root, "who_has", "states", "create")
    assert second[0] == "web-1"
    assert second[1] == {"db-1": "ok", "web-1": "ok"}
    assert second[2] == "10.0.0.4"


def test_an_open_error_keeps_the_last_good_config(shared_root: Path) -> None:
    empty_index(shared_root)
    put(shared_root, "web-1", "10.0.0.2")
    chown_tree(shared_root)
    assert as_nobody(shared_root, "who_has") == ["web-1"]
    config = shared_root / "clusters" / "web" / "web-1" / "config.json"
    config.chmod(0o000)
    # Its last good config still holds 10.0.0.2, so allocation is not blind: it goes on.
    after = as_nobody(shared_root, "states", "who_has", "allocate")
    assert after == [{"web-1": "unreadable"}, "web-1", "10.0.0.3"]
