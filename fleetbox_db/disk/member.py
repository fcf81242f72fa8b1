"""One member directory, by name: read, make, write and remove it, with the typed errors a
caller handles (VMNotFoundError, ConfigError, DiskError).

Every path comes from the Layout (rules.layout), so these agree with the Go tool on where
a member lives; nothing is written through a symlinked cluster or member directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from fleetbox_db.disk import files, locks
from fleetbox_db.disk.mounts import CrossesMountError
from fleetbox_db.disk.safeopen import NotRegularFileError
from fleetbox_db.disk.scan import Signature
from fleetbox_db.errors import (
    ConfigError,
    DiskError,
    LockedError,
    StorageRootError,
    VMNotFoundError,
)
from fleetbox_db.logs import log
from fleetbox_db.records import VM, Key
from fleetbox_db.rules.config import decode_config
from fleetbox_db.rules.layout import Layout, cluster_name, is_stray, member_label

__all__ = [
    "ensure_dir",
    "hold_for_removal",
    "load",
    "make_new_member_dir",
    "remove",
    "remove_made",
    "stray_hint",
    "try_lock",
    "write_config",
]


def load(layout: Layout, key: Key) -> VM:
    """Read config.json from disk. Raises VMNotFoundError, ConfigError."""
    path = layout.key_dir(key) / "config.json"
    label = member_label(key)
    try:
        data, _ = files.read_config_bytes(path)
    except FileNotFoundError:
        raise VMNotFoundError(
            f"vm {label!r} has no config at {path}; create it first", name=key.name, path=path
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"config of vm {label!r} at {path} cannot be read: {exc.strerror or exc}; "
            "check its permissions",
            name=key.name,
            path=path,
        ) from exc
    return decode_config(data, path)


def ensure_dir(layout: Layout, name: str) -> Path:
    """mkdir -p the member directory; idempotent. Raises DiskError (a symlink on the way, or
    the OS refused)."""
    path = layout.vm_dir(name)
    _refuse_symlinks(layout, name)
    try:
        files.make_dirs(path)
    except StorageRootError as exc:
        raise DiskError(
            f"cannot create the directory of vm {name!r}: {exc}", name=name, path=path
        ) from exc
    return path


def make_new_member_dir(layout: Layout, name: str) -> list[Path]:
    """ensure_dir() for create(): the directories it made (cluster, member), for
    remove_made() to take away again if the write then fails."""
    member_dir = layout.vm_dir(name)
    absent = [d for d in (member_dir.parent, member_dir) if not os.path.lexists(d)]
    try:
        ensure_dir(layout, name)
    except BaseException:
        remove_made(absent)
        raise
    return absent


def remove_made(made: list[Path]) -> None:
    """rmdir what make_new_member_dir() made, innermost first; never recursive, so a
    directory someone has put a file into meanwhile stays. Best effort."""
    for directory in reversed(made):
        try:
            os.rmdir(directory)
        except OSError:
            log.debug("could not remove %s after a failed create", directory, exc_info=True)


def write_config(layout: Layout, name: str, data: bytes) -> Signature:
    """Write config.json atomically; the signature of the file written. Raises DiskError."""
    path = layout.config_path(name)
    _refuse_symlinks(layout, name)
    try:
        return files.atomic_write(path, data)
    except OSError as exc:
        raise DiskError(
            f"cannot write the config of vm {name!r} at {path}: {exc.strerror or exc}; "
            "check who owns the tree (a sudo run may have created it)",
            name=name,
            path=path,
        ) from exc


def remove(layout: Layout, key: Key) -> None:
    """Remove the member directory (never following symlinks out of it), the cluster
    directory if now empty, and, unless it is a stray, the member's sockets (a stray's name
    is another directory's, whose sockets are not ours to take). Raises VMNotFoundError,
    DiskError."""
    member_dir = layout.key_dir(key)
    label = member_label(key)
    try:
        removed = files.remove_member(layout.clusters_dir, key.cluster, key.name)
    except CrossesMountError as exc:
        raise DiskError(
            f"vm {label!r} at {member_dir} has a filesystem mounted at {exc.filename}; delete "
            f"never crosses a mount point and removed nothing: unmount it (umount "
            f"{exc.filename}) and retry",
            name=key.name,
            path=member_dir,
        ) from exc
    except OSError as exc:
        raise DiskError(
            f"cannot remove vm {label!r} at {member_dir}: {exc.strerror or exc}"
            f"{f' ({exc.filename})' if exc.filename else ''}; check permissions, or "
            "retry if another process was writing into it",
            name=key.name,
            path=member_dir,
        ) from exc
    if not removed:
        raise VMNotFoundError(
            f"vm {label!r} does not exist (no directory at {member_dir}, or its "
            "cluster directory is a symlink, which delete never follows)",
            name=key.name,
            path=member_dir,
        )
    if is_stray(*key):
        return
    for socket in (layout.socket_path(key.name), layout.control_socket_path(key.name)):
        try:
            files.remove_quietly(socket)
        except OSError as exc:  # best effort, as in Go: the member itself is gone
            log.warning("could not remove %s: %s", socket, exc.strerror or exc)


def hold_for_removal(layout: Layout, key: Key, probe: bool = False) -> locks.Lock | None:
    """The member's .lock, taken (non-blocking) so that no holder starts it while it goes;
    with *probe* (a dry run) only tested, creating nothing, and None returned.

    Raises LockedError naming the holder's pid (from <m>/pid, when it parses) when the VM
    is running: removing it would pull its disk image from under it. None when the member
    directory or its cluster is a symlink (removal unlinks it and never enters it).
    """
    member_dir = layout.key_dir(key)
    if files.symlink_on_the_way(layout.clusters_dir, key.cluster, key.name) is not None:
        return None
    lock_path = member_dir / ".lock"
    label = member_label(key)
    try:
        if not probe:
            return locks.try_lock(lock_path, key.name)
        if locks.is_held(lock_path):
            raise LockedError(key.name)
        return None
    except LockedError:
        pid = _holder_pid(member_dir / "pid")
        holder = f" by pid {pid}" if pid is not None else ""
        raise LockedError(
            f"vm {label!r} is running (its lock {lock_path} is held{holder}); stop it first",
            name=key.name,
            path=lock_path,
        ) from None
    except FileNotFoundError:
        raise VMNotFoundError(
            f"vm {label!r} does not exist (no directory at {member_dir})",
            name=key.name,
            path=member_dir,
        ) from None
    except OSError as exc:
        raise DiskError(
            f"cannot take the lock {lock_path} of vm {label!r} to remove it: "
            f"{exc.strerror or exc}; check permissions",
            name=key.name,
            path=lock_path,
        ) from exc


def stray_hint(layout: Layout, name: str) -> str:
    """ "; it exists only as a stray at ..." for a name whose directory sits under another
    cluster, telling how to name it; "" when none does. For error messages only: one lstat
    per cluster directory."""
    clusters = layout.clusters_dir
    try:
        found = sorted(os.listdir(clusters))
    except OSError:
        return ""
    strays = [
        f"{cluster}/{name}"
        for cluster in found
        if is_stray(cluster, name) and os.path.isdir(clusters / cluster / name)
    ]
    if not strays:
        return ""
    return (
        f"; it exists only as a stray at {', '.join(strays)}: name it as "
        f"{strays[0]!r} (`fleetbox-db rm {strays[0]}` removes it)"
    )


def _holder_pid(pidfile: Path) -> int | None:
    """The pid the Go holder wrote (decimal, no newline), or None if absent or malformed."""
    try:
        text = pidfile.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and text.isascii() else None


def try_lock(layout: Layout, name: str) -> locks.Lock:
    """Non-blocking exclusive flock on <m>/.lock. Raises LockedError, VMNotFoundError."""
    path = layout.lock_path(name)
    _refuse_symlinks(layout, name)
    try:
        return locks.try_lock(path, name)
    except FileNotFoundError:
        raise VMNotFoundError(
            f"vm {name!r} has no directory at {path.parent}; create it first",
            name=name,
            path=path.parent,
        ) from None
    except NotRegularFileError as exc:
        raise DiskError(
            f"lock file {path} of vm {name!r} {exc.strerror}; it is never followed or "
            "replaced: remove it (a stopped VM does not need it) and retry",
            name=name,
            path=path,
        ) from exc
    except OSError as exc:
        raise DiskError(
            f"cannot open the lock file {path} of vm {name!r}: {exc.strerror or exc}; "
            "check the permissions of its directory",
            name=name,
            path=path,
        ) from exc


def _refuse_symlinks(layout: Layout, name: str) -> None:
    try:
        link = files.symlink_on_the_way(layout.clusters_dir, cluster_name(name), name)
    except OSError as exc:
        raise DiskError(
            f"cannot examine the directory of vm {name!r} at {layout.vm_dir(name)}: "
            f"{exc.strerror or exc}; check the disk and the tree's permissions",
            name=name,
            path=layout.vm_dir(name),
        ) from exc
    if link is not None:
        raise DiskError(
            f"{link} is a symlink; vm {name!r} is not written through it (the Go tool does "
            "not list it either): replace it with a real directory",
            name=name,
            path=link,
        )
