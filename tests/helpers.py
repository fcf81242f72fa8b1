"""Editing a tree behind the library's back the way the Go tool does: configs written in
place (no rename), backdated so the racy guard plays no part, read by a clock an hour on.

Shared by the suites that edit disk without the Store (check, reconcile, sweep, permissions
and the stress suites). Nothing here uses the Store: only its public record and the config
encoder (whose byte-exactness against Go is proven in test_config.py).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from fleetbox_db import VM, cluster_name
from fleetbox_db.rules.config import encode_config

SECOND: Final = 1_000_000_000
HOUR: Final = 3600 * SECOND
#: created_at of every config put() writes.
CREATED: Final = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def go_write(path: Path | str, data: bytes, create: bool = True) -> None:
    """os.WriteFile: open with O_TRUNC and write in place - same inode, no rename, no fsync."""
    flags = os.O_WRONLY | os.O_TRUNC | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def config(name: str, ip: str = "", mac: str = "", cpus: int = 2) -> bytes:
    """The bytes Go writes for a member created at CREATED."""
    return encode_config(VM(name, mac=mac, cpus=cpus, created_at=CREATED, ip=ip))


def config_path(root: Path, name: str, cluster: str | None = None) -> Path:
    """<root>/clusters/<cluster>/<name>/config.json; the cluster defaults to the name's own."""
    return (
        root
        / "clusters"
        / (cluster_name(name) if cluster is None else cluster)
        / name
        / "config.json"
    )


def later() -> int:
    """The clock of a process reading an hour after put() wrote: put() backdates mtime, but
    ctime cannot be set back and the racy guard looks at both, so this is how a test makes
    its files old."""
    return time.time_ns() + HOUR


def put(
    root: Path,
    name: str,
    ip: str = "",
    mac: str = "",
    *,
    cluster: str | None = None,
    data: bytes | None = None,
    age_ns: int | None = HOUR,
) -> Path:
    """Write a member's config as Go does; backdated by *age_ns* so it is not racy.

    *data* replaces the encoded config; *cluster* puts the member elsewhere (a stray).
    """
    path = config_path(root, name, cluster)
    path.parent.mkdir(parents=True, exist_ok=True)
    go_write(path, config(name, ip, mac) if data is None else data)
    if age_ns is not None:
        when = os.stat(path).st_mtime_ns - age_ns
        os.utime(path, ns=(when, when))
    return path
