"""Work done by a forked child on the second CPU, its results streamed back over a pipe.

Python runs one thread's bytecode at a time, so work that is mostly Python (stat-ing and
decoding thousands of configs) runs beside other work only in another process. A forked
child starts with this process's memory as it is, needs no start-up of its own, and sends
back what it makes as marshal frames (length, then marshal.dumps of plain values: marshal
refuses tuple and str subclasses). The parent reads the frames in order and stops at the
first one that is missing or cut short (a child that failed or was killed), so a caller
always knows how far it can trust the child and does the rest itself.

Only where it pays and is safe: with two CPUs or more, and no other Python thread (a fork
copies only the calling one, so a lock another thread held would stay held in the child).
The child runs nothing of the parent's on its way out (os._exit: no atexit handler, no
buffered output flushed twice) and holds none of the caller's stdio.
"""

from __future__ import annotations

import fcntl
import gc
import marshal
import os
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from typing import Any, Final, NoReturn

__all__ = ["Child"]

_HEADER: Final = struct.Struct("<I")
#: The pipe's buffer: what the child may write before the parent reads (Linux's default
#: /proc/sys/fs/pipe-max-size; 64 KiB otherwise, which kept a rebuild's child in lockstep).
_PIPE_BYTES: Final = 1 << 20
_SETPIPE_SZ: Final[int | None] = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
#: SIGKILL, which POSIX numbers 9: importing the signal module would build its enum classes
#: (and leave garbage for the collector a command runs without: tests/test_startup.py).
_KILL: Final = 9


class Child:
    """A forked child writing the frames of ``produce()`` to this process, in order."""

    __slots__ = ("_fd", "_pid", "_reaped")

    def __init__(self, pid: int, fd: int) -> None:
        self._pid, self._fd, self._reaped = pid, fd, False

    @classmethod
    def start(cls, produce: Callable[[], Iterable[Any]]) -> Child | None:
        """Fork a child that sends each value *produce()* yields as a frame; None when none
        was started (one CPU, another Python thread running, or the fork failed)."""
        threading = sys.modules.get("threading")
        if _cpus() < 2 or (threading and threading.active_count() > 1):
            return None
        read_fd, write_fd = os.pipe()
        if _SETPIPE_SZ is not None:  # the most Linux lets a user have: the child runs ahead
            with suppress(OSError):
                fcntl.fcntl(write_fd, _SETPIPE_SZ, _PIPE_BYTES)
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            return None
        if pid == 0:
            os.close(read_fd)
            _serve(write_fd, produce)
        os.close(write_fd)
        return cls(pid, read_fd)

    def frames(self) -> Iterator[Any]:
        """Each frame the child sent, in order, until it ended or one came cut short."""
        try:
            with os.fdopen(self._fd, "rb", closefd=False) as pipe:
                while len(header := pipe.read(_HEADER.size)) == _HEADER.size:
                    (size,) = _HEADER.unpack(header)
                    payload = pipe.read(size)
                    if len(payload) != size:
                        return
                    try:
                        frame = marshal.loads(payload)
                    except (EOFError, ValueError, TypeError):
                        return
                    yield frame
        finally:
            self.stop()

    def stop(self) -> None:
        """Kill the child if it still runs and reap it; its frames are no longer read."""
        if self._reaped:
            return
        self._reaped = True
        # Either error: someone else's wait() reaped it first.
        with suppress(ProcessLookupError):
            os.kill(self._pid, _KILL)
        os.close(self._fd)
        with suppress(ChildProcessError):
            os.waitpid(self._pid, 0)


def _cpus() -> int:
    """The CPUs this process may run on (all of them where that cannot be asked)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _serve(fd: int, produce: Callable[[], Iterable[Any]]) -> NoReturn:
    """The child: produce, write, and leave without running anything of the parent's."""
    try:
        gc.disable()  # a short-lived process that makes no cycles
        null = os.open(os.devnull, os.O_RDWR)
        for stdio in (0, 1, 2):
            os.dup2(null, stdio)
        for value in produce():
            payload = marshal.dumps(value)
            _write_all(fd, _HEADER.pack(len(payload)) + payload)
    except BaseException:  # whatever happens, never return into the parent's code
        os._exit(1)
    os._exit(0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
