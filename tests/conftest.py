"""Shared fixtures: real storage roots in tmp_path, real SQLite files, no mocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetbox_db import Store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A storage root that does not exist yet."""
    return tmp_path / "fleetbox"


@pytest.fixture
def store(root: Path) -> Iterator[Store]:
    with Store.open(root) as opened:
        yield opened
