"""Shared fixtures: real storage roots, real SQLite files, no mocks.

Each fixture name means one thing across the suite:

- ``root``: a storage root in tmp_path that does not exist yet.
- ``store``: a Store opened on ``root``.
- ``head_index``: a template index.db at head with no members, made once per session.
- ``seeded_root``: ``root`` created, holding a copy of ``head_index`` (no Alembic upgrade).
- ``shared_root``: a storage root that does not exist yet, reachable by other users.
- ``full_loads``: counts the reads of every row's signature (the index read whole).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stress_helpers import shared_tmp

import fleetbox_db.index.recorded as recorded_module
from fleetbox_db import Store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A storage root that does not exist yet."""
    return tmp_path / "fleetbox"


@pytest.fixture
def store(root: Path) -> Iterator[Store]:
    with Store.open(root) as opened:
        yield opened


@pytest.fixture(scope="session")
def head_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty index at head: copying it saves every test the Alembic upgrade (~2 s).

    Only copy it: it is one file shared by every test of the session.
    """
    template = tmp_path_factory.mktemp("template")
    with Store.open(template) as store:
        store.list()
    return template / "index.db"


@pytest.fixture
def seeded_root(root: Path, head_index: Path) -> Path:
    """``root``, created, with an empty index at head already in it."""
    root.mkdir()
    shutil.copyfile(head_index, root / "index.db")
    return root


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A storage root (not created yet) that a child dropped to user nobody can reach.

    pytest's tmp_path is private to its user, and SQLite opens files by absolute path, so
    every parent directory must be searchable (a relative path from a cwd inside the tree is
    not enough): the root sits under a 0711 directory outside pytest's tmp tree.
    """
    with shared_tmp("fleetbox-shared-") as top:
        yield top / "fleetbox"


@pytest.fixture
def full_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the reads of every row's signature (the real function still runs)."""
    calls: list[int] = []
    real = recorded_module.signatures

    def counted(conn: sqlite3.Connection, order: str | None = None) -> list[tuple[Any, ...]]:
        calls.append(1)
        return real(conn, order)

    monkeypatch.setattr(recorded_module, "signatures", counted)
    return calls
