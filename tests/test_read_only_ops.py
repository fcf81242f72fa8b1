"""check() and reconcile(dry_run=True) change nothing at all: no index created, no migration,
no quarantine, no new file. Before, check() upgraded an old index (an older fleetbox_db
still running then saw a "newer" index and refused writes), moved a corrupt one aside, and a
dry run created a missing index.db.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers import config, config_path

from fleetbox_db import VM, Store
from fleetbox_db.index import schema


def state(root: Path) -> dict[str, str]:
    """Every file in the root (not clusters/) with a digest of its bytes."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.iterdir())
    }


@pytest.fixture
def populated(root: Path) -> Path:
    with Store.open(root) as store:
        store.create(VM("web-1", ip="10.0.0.2"))
        store.create(VM("db-1", ip="10.0.0.3"))
    (root / "clusters" / "web" / "web-2").mkdir()
    config_path(root, "web-2").write_bytes(config("web-2", ip="10.0.0.4"))
    return root


def run_both(root: Path) -> tuple[list[str], list[str]]:
    with Store.open(root) as store:
        problems = [p.message for p in store.check()]
        added = store.reconcile(dry_run=True).added
    return problems, added


def test_a_missing_index_is_not_created(populated: Path) -> None:
    (populated / "index.db").unlink()
    before = state(populated)
    _, added = run_both(populated)
    assert state(populated) == before
    assert added == ["db-1", "web-1", "web-2"]


def test_an_older_index_is_read_as_it_is_and_reported(populated: Path) -> None:
    index = populated / "index.db"
    schema.run_alembic(index, "downgrade", schema.KNOWN_REVISIONS[0])
    before = state(populated)
    problems, added = run_both(populated)
    assert state(populated) == before
    assert any("needs migration" in p and schema.KNOWN_REVISIONS[0] in p for p in problems)
    assert added == ["db-1", "web-1", "web-2"]  # as a rebuild from disk would
    with Store.open(populated) as store:  # a write still upgrades it
        store.reconcile()
        assert store.migrate() == schema.HEAD


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not a database at all" * 300, id="not-sqlite"),
        pytest.param(None, id="truncated"),
    ],
)
def test_a_corrupt_index_is_not_moved_aside(populated: Path, garbage: bytes | None) -> None:
    index = populated / "index.db"
    data = index.read_bytes()
    index.write_bytes(data[: len(data) // 2] if garbage is None else garbage)
    before = state(populated)
    problems, added = run_both(populated)
    assert state(populated) == before
    assert not list(populated.glob("index.db.corrupt-*"))
    assert any(p.startswith("index not used") for p in problems)
    assert added == ["db-1", "web-1", "web-2"]


def test_a_current_index_reports_drift_and_changes_nothing(populated: Path) -> None:
    before = state(populated)
    problems, added = run_both(populated)
    assert state(populated) == before
    assert any("index lacks vm 'web-2'" in p for p in problems)
    assert added == ["web-2"]


def test_a_full_dry_run_removes_no_temp_file(populated: Path) -> None:
    tmp = populated / "clusters" / "web" / "web-1" / ".config.json.0123456789abcdef.tmp"
    tmp.write_bytes(b"{")
    before = state(populated)
    with Store.open(populated) as store:
        store.reconcile(full=True, dry_run=True)
    assert tmp.exists()
    assert state(populated) == before


def test_a_dry_run_of_a_bare_tree_creates_no_file(root: Path) -> None:
    """Not even index.lock, which the filesystem clock touches to read the time."""
    (root / "clusters" / "web" / "web-1").mkdir(parents=True)
    config_path(root, "web-1").write_bytes(config("web-1", ip="10.0.0.2"))
    with Store.open(root) as store:
        before = state(root)
        assert store.reconcile(full=True, dry_run=True).added == ["web-1"]
        assert store.check() == []
        assert state(root) == before
