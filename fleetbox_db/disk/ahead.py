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

import gc
import marshal
import os
from collections.abc import Callable
from typing import Any, Final, NamedTuple, NoReturn

__all__ = ["start", "take"]


class _Child(NamedTuple):
    path: str
    pid: int
    fd: int


_pending: list[_Child] = []

#: SIGKILL, which POSIX numbers 9: importing the signal module would build its enum classes
#: (and leave garbage for the collector a command runs without: tests/test_startup.py).
_KILL: Final = 9


def start(path: str, listing: Callable[[], Any]) -> bool:
    """Fork a child that writes ``marshal.dumps(listing())`` to a pipe for take(path).

    False when none was started: one is pending already, this process may run on one CPU
    only (the child would take the parent's turns), or the fork failed. For a process's
    start-up: a child never taken stays a zombie until the process exits.
    """
    if _pending or len(os.sched_getaffinity(0)) < 2:
        return False
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return False
    if pid == 0:
        os.close(read_fd)
        _serve(write_fd, listing)
    os.close(write_fd)
    _pending.append(_Child(path, pid, read_fd))
    return True


def _serve(fd: int, listing: Callable[[], Any]) -> NoReturn:
    """The child: list, write, and leave without running anything of the parent's (its
    atexit handlers, its buffered output) and without holding the caller's stdio open."""
    try:
        gc.disable()  # a short-lived process that makes no cycles
        null = os.open(os.devnull, os.O_RDWR)
        for stdio in (0, 1, 2):
            os.dup2(null, stdio)
        data = memoryview(marshal.dumps(listing()))
        while data:
            data = data[os.write(fd, data) :]
    except BaseException:  # whatever happens, never return into the parent's code
        os._exit(1)
    os._exit(0)


def take(path: str) -> Any | None:
    """What the child started for *path* listed, once; None when there is nothing to take
    (no child, another path, or a child that did not finish its listing)."""
    try:
        child = _pending.pop()
    except IndexError:
        return None
    try:
        if child.path != path:
            os.kill(child.pid, _KILL)
            return None
        chunks = []
        while chunk := os.read(child.fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(child.fd)
        _, status = os.waitpid(child.pid, 0)
    if status != 0:
        return None
    try:
        return marshal.loads(b"".join(chunks))
    except (EOFError, ValueError, TypeError):
        return None
