"""The canonical files: config reads, atomic writes, directories, removal by descriptor.

This module knows paths and bytes only; JSON and the index live elsewhere. Everything here
must stay correct while the Go tool writes the same tree without telling us.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from pathlib import Path
from typing import Any, Final

from fleetbox_db.disk.mounts import check_no_mounts
from fleetbox_db.disk.safeopen import open_regular
from fleetbox_db.disk.scan import Signature
from fleetbox_db.errors import StorageRootError
from fleetbox_db.logs import log as _log
from fleetbox_db.rules.config import MAX_CONFIG_BYTES

__all__ = [
    "MAX_CONFIG_BYTES",
    "ConfigTooLargeError",
    "atomic_write",
    "chown_to_invoker",
    "is_member_dir",
    "make_dirs",
    "read_config_bytes",
    "remove_member",
    "remove_member_dir",
    "remove_quietly",
    "symlink_on_the_way",
]

NEW_FILE_MODE: Final = 0o644
#: Matches no file's stat: recorded when a written file cannot be fstat-ed after its
#: rename, so the next scan sees a change and reads it.
UNKNOWN_SIGNATURE: Final = Signature(0, -1, 0, 0)


_TEMP_ATTEMPTS: Final = 8
# open(O_DIRECTORY|O_NOFOLLOW) of a symlink: ENOTDIR on Linux, ELOOP on macOS.
_GONE: Final = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_TEMP_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def read_config_bytes(path: Path | str, *, seen_regular: bool = False) -> tuple[bytes, Signature]:
    """Read a config file whole, with the signature of the bytes read.

    Never follows a symlink and never opens a FIFO, device or directory (NotRegularFileError,
    an OSError); a file over MAX_CONFIG_BYTES raises ConfigTooLargeError (an OSError) without
    being read. FileNotFoundError and other OSErrors propagate. *seen_regular*: the scan has
    just stat-ed it as a regular file (safeopen.open_regular).
    """
    fd, st = open_regular(path, os.O_RDONLY, seen_regular=seen_regular)
    try:
        # fstat before read: if a writer slips in between, the signature is the older one
        # and the next scan sees a change and re-reads. The other order would pin stale
        # bytes under a fresh signature forever.
        size = st.st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigTooLargeError(path, size)
        chunk = os.read(fd, max(size + 1, 65536))
        if len(chunk) == size:
            # Fewer bytes than asked from a regular file is its end, so no second read to
            # find it. A size that disagrees (a file growing, procfs) reads on to the end.
            return chunk, Signature.of(st)
        chunks = [chunk]
        total = len(chunk)
        # Bounded even if the file grows while we read: memory never exceeds the cap.
        while chunk:
            if total > MAX_CONFIG_BYTES:
                raise ConfigTooLargeError(path, total)
            chunk = os.read(fd, max(size + 1, 65536))
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks), Signature.of(st)
    finally:
        os.close(fd)


class ConfigTooLargeError(OSError):
    """A config.json larger than MAX_CONFIG_BYTES: not read (it would cost seconds and GBs)."""

    def __init__(self, path: Path | str, size: int) -> None:
        super().__init__(
            errno.EFBIG,
            f"{size} bytes, over the {MAX_CONFIG_BYTES} byte limit for a config",
            os.fspath(path),
        )


def _create_temp(directory: str, base: str) -> tuple[int, str]:
    for _ in range(_TEMP_ATTEMPTS):
        # Hidden and suffixed so neither Go nor our scan ever takes it for config.json.
        tmp = os.path.join(directory, f".{base}.{os.urandom(8).hex()}.tmp")
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", directory)


def _fsync_dir(directory: str) -> None:
    """Make a rename in *directory* durable. Never raises: it runs after the rename, when
    the write has happened and is visible; reporting it failed would make a retry see
    VMExistsError. A failure (or a filesystem that cannot fsync a directory) is logged."""
    try:
        fd = os.open(directory, _DIR_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            _log.warning(
                "wrote %s, but could not fsync the directory (%s): a power loss now could "
                "undo the write",
                directory,
                exc.strerror or exc,
            )


def atomic_write(path: Path, data: bytes) -> Signature:
    """Replace path with data so that readers see the old bytes or the new, never a mix.

    A new file gets mode 0644 whatever the umask; an existing one keeps its mode (and its
    owner when we are root). On failure (an OSError) the old file is untouched and no temp
    file is left; once the rename is done nothing raises. A symlink at path is replaced by a
    regular file; its target is not written. Returns the signature of the file written,
    taken after the rename (which changes its ctime): if another writer replaces it
    meanwhile, the next scan sees a different one (UNKNOWN_SIGNATURE if it cannot be
    taken, which makes the next scan re-read the file).
    """
    target = os.fspath(path)
    directory, base = os.path.split(target)
    directory = directory or "."
    try:
        st: os.stat_result | None = os.lstat(target)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        st = None  # a symlink's target (root's /etc/shadow under sudo) lends no owner or mode
    fd, tmp = _create_temp(directory, base)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if st is not None and os.geteuid() == 0:
                # Before fchmod: chown clears set-id bits. Root rewriting a user's file must
                # not hand it to root, or the user can no longer save it.
                os.fchown(fd, st.st_uid, st.st_gid)
            # fchmod, not the open() mode: the umask must not change a config's mode.
            os.fchmod(fd, stat.S_IMODE(st.st_mode) if st is not None else NEW_FILE_MODE)
            os.fsync(fd)  # data on disk before the rename makes it reachable
            os.rename(tmp, target)
        except BaseException:
            os.close(fd)
            raise
    except BaseException:
        with contextlib.suppress(OSError):  # the error that matters is the one above
            remove_quietly(Path(tmp))
        raise
    try:
        written = Signature.of(os.fstat(fd))
    except OSError:
        written = UNKNOWN_SIGNATURE
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    _fsync_dir(directory)  # make the rename itself survive a power loss
    return written


def _ignore_vanished(exc: BaseException, path: str) -> None:
    # A concurrent delete (or the Go holder cleaning up) may remove entries under us.
    if isinstance(exc, FileNotFoundError):
        return
    if isinstance(exc, OSError):
        exc.filename = path  # the path walked so far, not just the last name
    raise exc


def _onerror(func: Any, path: str, exc_info: Any) -> None:
    _ignore_vanished(exc_info[1], path)


def remove_member_dir(member_dir: Path) -> None:
    """Delete a member directory recursively without following symlinks out of it.

    A symlink at member_dir is unlinked, never followed. Raises FileNotFoundError if
    member_dir is absent, OSError if something inside cannot be removed.
    """
    parent = os.open(member_dir.parent, _DIR_FLAGS)
    try:
        _remove_entry(parent, member_dir.name)
    finally:
        os.close(parent)


def remove_member(clusters_dir: Path, cluster: str, name: str) -> bool:
    """Delete clusters/<cluster>/<name>, then the cluster directory if it is now empty.

    Walks by file descriptor from clusters/ down: a cluster directory that is a symlink
    (even one swapped in mid-call) is never entered, so no file outside the tree can go.
    False when there is no such member directory; CrossesMountError (removing nothing)
    when a filesystem is mounted inside it.
    """
    top = os.open(clusters_dir, _DIR_FLAGS)
    try:
        try:
            cluster_fd = os.open(cluster, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=top)
        except OSError as exc:
            if exc.errno in _GONE:
                return False
            raise
        try:
            # Checked whole before anything goes: a refused delete changes nothing.
            check_no_mounts(f"{clusters_dir}/{cluster}/{name}")
            _remove_entry(cluster_fd, name)
        except FileNotFoundError:
            return False
        except OSError as exc:
            # rmtree names what failed relative to the cluster fd; callers need a real path.
            if isinstance(exc.filename, str) and not exc.filename.startswith("/"):
                exc.filename = f"{clusters_dir}/{cluster}/{exc.filename}"
            raise
        finally:
            os.close(cluster_fd)
        # Best effort and never recursive, as Go's Delete: a sibling keeps the cluster.
        with contextlib.suppress(OSError):
            os.rmdir(cluster, dir_fd=top)
        return True
    finally:
        os.close(top)


def _remove_entry(parent_fd: int, name: str) -> None:
    st = os.lstat(name, dir_fd=parent_fd)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent_fd)  # a symlink (or file): its target is not ours
        return
    # rmtree walks by fd (rmtree.avoids_symlink_attacks): a symlink inside, even one
    # swapped in mid-walk, is unlinked, never descended into.
    import shutil  # here: with bz2 and lzma, a fifth of `ls`'s imports, for rm alone

    if sys.version_info >= (3, 12):
        shutil.rmtree(name, dir_fd=parent_fd, onexc=lambda f, p, e: _ignore_vanished(e, p))
    else:
        shutil.rmtree(name, dir_fd=parent_fd, onerror=_onerror)


def symlink_on_the_way(clusters_dir: Path, cluster: str, name: str) -> str | None:
    """The first of clusters/<cluster> and clusters/<cluster>/<name> that is a symlink.

    The store never writes through one: scan does not list such members, and writing there
    would put files outside the tree. None when neither is (absent counts as fine).
    """
    for path in (f"{clusters_dir}/{cluster}", f"{clusters_dir}/{cluster}/{name}"):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return path
    return None


def is_member_dir(clusters_dir: Path | str, cluster: str, name: str) -> bool:
    """clusters/<cluster>/<name> is a real directory under a real one, as scan sees members:
    a symlink in either place is not a member."""
    try:
        outer = os.lstat(f"{clusters_dir}/{cluster}")
        inner = os.lstat(f"{clusters_dir}/{cluster}/{name}")
    except OSError:
        return False
    return stat.S_ISDIR(outer.st_mode) and stat.S_ISDIR(inner.st_mode)


def remove_quietly(path: Path) -> None:
    """Unlink path; absent is fine. Other errors propagate."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def make_dirs(path: Path, mode: int = 0o755) -> None:
    """mkdir -p path (mode filtered by the umask, as Go's MkdirAll); idempotent.

    Raises StorageRootError naming the path when it cannot be created.
    """
    for attempt in range(2):
        try:
            os.makedirs(path, mode, exist_ok=True)
            return
        except FileNotFoundError as exc:
            # A Delete of the cluster's last member can rmdir the parent between
            # makedirs creating it and creating the child (facts §9.3): retry once.
            if attempt == 0:
                continue
            err: OSError = exc
        except ValueError as exc:  # an embedded NUL: no such path can exist
            raise StorageRootError(f"cannot create directory {path!r}: {exc}", path=None) from exc
        except OSError as exc:
            err = exc
        raise StorageRootError(
            f"cannot create directory {path}: {err.strerror or err}; "
            "check the ownership and permissions of the storage root",
            path=path,
        ) from err


def chown_to_invoker(*paths: Path) -> None:
    """Under sudo, give files we created back to the invoking user (SUDO_UID/SUDO_GID).

    Without this, a later non-root run could not write the index a sudo run created.
    """
    if os.geteuid() != 0:
        return
    uid, gid = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
    if not (uid.isascii() and uid.isdigit() and gid.isascii() and gid.isdigit()):
        return
    for path in paths:
        try:
            os.chown(path, int(uid), int(gid), follow_symlinks=False)
        except FileNotFoundError:
            continue
        except OSError:
            _log.warning("could not chown %s to %s:%s", path, uid, gid, exc_info=True)
