"""Which process made a reservation (read from /proc), recorded for the operator.

Whether the reservation lives is its lease's business (disk/leases.py): a lock its owner
holds, which needs none of this.

A pid alone is not an identity: after a reboot or enough forks it names another process.
An owner is (pid, boot id, start time), read from /proc where it exists; elsewhere the
boot id is "" and the start time 0.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Final, NamedTuple

__all__ = ["Owner", "current_owner"]


class Owner(NamedTuple):
    """A process, told apart from a later one with the same pid."""

    pid: int
    boot: str  # this boot's id, "" where /proc does not give one
    start: int  # start time in clock ticks since boot, 0 when unknown


_BOOT_ID_PATH: Final = "/proc/sys/kernel/random/boot_id"


@cache
def boot_id() -> str:
    """This boot's id, or "" where /proc does not give one."""
    try:
        with open(_BOOT_ID_PATH, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def start_time(pid: int) -> int:
    """The process's start time in ticks since boot (field 22), 0 when unknown."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else 0
    except (IndexError, ValueError):
        return 0


def current_owner() -> Owner:
    pid = os.getpid()
    return Owner(pid, boot_id(), start_time(pid))
