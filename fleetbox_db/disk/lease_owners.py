"""One lock file per process that holds leases, so a listing probes an owner, not each lease.

``<root>/leases/.owners/<token>`` is made by a process's first lease in that directory and
held with an exclusive flock until the process exits; each lease file it writes names the
token. A listing beside an allocator holding 700 leases then probes one owner instead of
700 files (an open, fstat, flock and close each: 5 ms on every who_has). The file is
created under a temporary name, locked, then renamed, so it is never seen unlocked while
its owner lives; dead owners' files are removed when a process makes its own.

Each lease keeps its own flock too: that lock alone decides take() and remove_dead(), and
it is what versions without owners read. An owner file that is missing or cannot be probed
says nothing, and the lease's own lock is probed instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path
from typing import Final

from fleetbox_db.disk.files import chown_to_invoker
from fleetbox_db.disk.locks import shared_probe

__all__ = ["OWNERS_DIR", "alive", "is_token", "token"]

OWNERS_DIR: Final = ".owners"
_TOKEN: Final = re.compile(r"[0-9a-f]{16}")
_CREATE: Final = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PROBE: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: This process's owner file in each leases directory: (token, descriptor holding its lock).
_mine: dict[str, tuple[str, int]] = {}


def is_token(value: object) -> bool:
    """A token as token() makes them: nothing else is ever joined to a path."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def token(directory: Path) -> str:
    """This process's owner token in the leases *directory*, its locked file made at the
    first call. The caller holds the index write lock."""
    key = os.fspath(directory)
    mine = _mine.get(key)
    if mine is not None:
        return mine[0]
    owners = os.path.join(key, OWNERS_DIR)
    if not os.path.isdir(owners):
        os.makedirs(owners, 0o755, exist_ok=True)
        chown_to_invoker(Path(owners))  # under sudo: the user's, like the leases
    _sweep(key)
    made = os.urandom(8).hex()
    temporary = os.path.join(owners, f".tmp-{made}")
    final = os.path.join(owners, made)
    fd = os.open(temporary, _CREATE, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
        os.rename(temporary, final)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    chown_to_invoker(Path(final))
    _mine[key] = (made, fd)
    return made


def alive(leases_fd: int, owner: str) -> bool | None:
    """True while *owner* holds its file's lock, False once it does not; None when the
    file is missing or cannot be probed (the lease's own lock must say then)."""
    try:
        fd = os.open(f"{OWNERS_DIR}/{owner}", _PROBE, dir_fd=leases_fd)
    except OSError:
        return None
    try:
        return shared_probe(fd)
    finally:
        os.close(fd)  # also drops the shared lock taken to test it


def _sweep(directory: str) -> None:
    """Remove the files of owners that died: their leases died with them."""
    try:
        fd = os.open(directory, _DIR)
    except OSError:
        return
    try:
        for name in os.listdir(os.path.join(directory, OWNERS_DIR)):
            if is_token(name) and alive(fd, name) is False:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory, OWNERS_DIR, name))
    finally:
        os.close(fd)
