"""The racy-timestamp guard reads "now" off the filesystem's clock, not the process's.

File times are stamped by the clock of the filesystem (an NFS server's, a VM share's host's);
a row counts as racy - re-read until a later read proves it settled - while its file changed
less than one granularity before the read. Measured with the process clock, a filesystem
that lags it by 10 s makes every fresh row look settled at once, and a same-size rewrite
within one tick is never seen. The skew is real here: libfaketime runs the reader's clock
10 s ahead of the kernel's, which stamps the files (NO_FAKE_STAT leaves their times alone).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import put

from fleetbox_db import Store
from fleetbox_db.index.reconcile import DEFAULT_GRANULARITY_NS

LIBFAKETIME = next(
    (
        p
        for p in (
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/faketime/libfaketime.so.1",
        )
        if os.path.exists(p)
    ),
    None,
)


def list_ahead(root: Path, seconds: int) -> None:
    """Store.list() in a process whose clock runs *seconds* ahead of the filesystem's."""
    assert LIBFAKETIME is not None
    env = dict(os.environ, LD_PRELOAD=LIBFAKETIME, FAKETIME=f"+{seconds}s", NO_FAKE_STAT="1")
    code = "import sys; from fleetbox_db import Store; Store.open(sys.argv[1]).list()"
    subprocess.run([sys.executable, "-c", code, str(root)], env=env, check=True, timeout=60)


def lag_of(root: Path, name: str) -> int:
    """verified_ns minus the file's last change, as the row records them."""
    with contextlib.closing(sqlite3.connect(root / "index.db")) as conn:
        row = conn.execute(
            "SELECT verified_ns - max(mtime_ns, ctime_ns) FROM members WHERE name = ?", (name,)
        ).fetchone()
    return int(row[0])


@pytest.mark.skipif(LIBFAKETIME is None, reason="libfaketime is not installed")
def test_a_fresh_row_stays_racy_when_the_filesystem_clock_lags(root: Path) -> None:
    with Store.open(root) as store:
        store.list()
    put(root, "web-1", "10.0.0.2", age_ns=None)  # written just now, by the kernel's clock
    list_ahead(root, 10)
    assert lag_of(root, "web-1") < DEFAULT_GRANULARITY_NS  # racy: it will be re-read


def test_the_default_clock_is_the_filesystems(root: Path) -> None:
    """Without skew the filesystem clock and the process clock agree (to a tick or two)."""
    with Store.open(root) as store:
        store.list()
        put(root, "web-1", "10.0.0.2", age_ns=None)
        store.list()
    assert 0 <= lag_of(root, "web-1") < DEFAULT_GRANULARITY_NS
