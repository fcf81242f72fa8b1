"""A command's first scan, listed by a forked child while the command loads (issue 15).

A `fleetbox-db` command over 10,000 members spends ~50 ms importing click and the library,
on one core, before it stats every config.json for another ~55 ms. A child forked first does
the stats on the second core meanwhile and hands the listing over a pipe, as the marshal of
plain values. The listing is taken at most once, by the first scan of the very same path
(disk.scan.scan); with one core, a child that failed or was killed, or another path, that
scan runs as it always does. A listing started early is still the command's own: nothing
in it is older than the command, and a scan is never one instant anyway (a member can go
or change between its stat and the reconcile; the index side allows for it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetbox_db.disk.forked import Child

__all__ = ["start", "take"]

_pending: list[tuple[str, Child]] = []


def start(path: str, listing: Callable[[], Any]) -> bool:
    """Fork a child that lists *path* with *listing* (plain values, for marshal) for
    take(path). False when none was started: one is pending already, or forked.Child
    declined. For a process's start-up: a child never taken is left to the process's exit."""
    if _pending:
        return False
    child = Child.start(lambda: (listing(),))
    if child is None:
        return False
    _pending.append((path, child))
    return True


def take(path: str) -> Any | None:
    """What the child started for *path* listed, once; None when there is nothing to take
    (no child, another path, or a child that did not finish its listing). Asked by every
    scan, so the usual answer (no child) costs one test."""
    if not _pending:
        return None
    try:
        started_for, child = _pending.pop()
    except IndexError:
        return None
    if started_for != path:
        child.stop()
        return None
    return next(child.frames(), None)
