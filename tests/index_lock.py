"""Another process holding the index's write lock, for tests of what may not wait on it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def write_locked(root: Path) -> Iterator[None]:
    """Another process holds the index's write lock (BEGIN IMMEDIATE) until the block ends."""
    code = textwrap.dedent(
        """
        import sqlite3, sys
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        sys.stdin.read()
        conn.execute("ROLLBACK")
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(root / "index.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield
    finally:
        proc.stdin.close()
        proc.stdout.close()
        if proc.wait(timeout=30) != 0:  # pragma: no cover - the holder itself failed
            pytest.fail("lock holder failed")
