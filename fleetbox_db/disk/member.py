"""One member directory, by name: read, make, write and remove it, with the typed errors a
caller handles (VMNotFoundError, ConfigError, DiskError).

Every path comes from the Layout (rules.layout), so these agree with the Go tool on where
a member lives; nothing is written through a symlinked cluster or member directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fleetbox_db.disk import files, locks
from fleetbox_db.disk.scan import Signature
from fleetbox_db.errors import ConfigError, DiskError, LockedError, VMNotFoundError
from fleetbox_db.records import VM, Key
from fleetbox_db.rules.config import decode_config
from fleetbox_db.rules.layout import Layout, cluster_name, is_stray, member_label

__all__ = [
    "ensure_dir",
    "hold_for_removal",
    "load",
    "remove",
    "stray_hint",
    "try_lock",
    "write_config",
]

log = logging.getLogger("fleetbox_db")


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
    """mkdir -p the member directory; idempotent. Raises DiskError for a symlink."""
    path = layout.vm_dir(name)
    _refuse_symlinks(layout, name)
    files.make_dirs(path)
    return path


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


def _refuse_symlinks(layout: Layout, name: str) -> None:
    link = files.symlink_on_the_way(layout.clusters_dir, cluster_name(name), name)
    if link is not None:
        raise DiskError(
            f"{link} is a symlink; vm {name!r} is not written through it (the Go tool does "
            "not list it either): replace it with a real directory",
            name=name,
            path=link,
        )
