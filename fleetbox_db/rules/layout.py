"""Pure path logic shared with the Go tool: root resolution, layout, names, socket hash.

Nothing here touches the filesystem; every function is safe to call from any thread or
process. The layout must match the Go store byte for byte, because both programs write
the same tree without telling each other.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from fleetbox_db.errors import InvalidNameError, InvalidValueError, StorageRootError
from fleetbox_db.keys import Key

__all__ = [
    "CONFIG_NAME",
    "MAX_NAME_BYTES",
    "Layout",
    "cluster_name",
    "go_join",
    "is_stray",
    "member_file",
    "member_key",
    "member_label",
    "name_bytes",
    "resolve_home",
    "resolve_root",
    "socket_hash",
    "validate_cluster",
    "validate_name",
]

CONFIG_NAME: Final = "config.json"
"""The canonical record in every member directory."""

MAX_NAME_BYTES: Final = 255
"""A directory entry name is limited to 255 bytes on every filesystem we care about."""

ENV_HOME: Final = "FLEETBOX_HOME"
ROOT_DIRNAME: Final = ".fleetbox"
SOCKET_HASH_CHARS: Final = 16

_ASCII_DIGITS: Final = frozenset("0123456789")
_NAME_RULE: Final = (
    "a VM name must be non-empty, not '.' or '..', contain no '/' or NUL, "
    f"be at most {MAX_NAME_BYTES} bytes in UTF-8, and not start a cluster named '.' or '..'"
)
_REPR_LIMIT: Final = 80


def cluster_name(name: str) -> str:
    """Return the cluster segment of a member name (Go's ``ClusterName``).

    Strips one trailing ``-<ASCII digits>`` group unless the dash is the first character.
    ``str.isdigit`` is deliberately not used: it accepts Unicode digits such as ``٣`` that
    Go does not, and the two tools would then disagree on where a VM lives.
    """
    dash = name.rfind("-")
    if dash <= 0:
        return name
    tail = name[dash + 1 :]
    if tail and all(ch in _ASCII_DIGITS for ch in tail):
        return name[:dash]
    return name


def go_join(*parts: str) -> str:
    """Go's ``filepath.Join``: drop empty parts, join with ``/``, then clean lexically.

    Cleaning resolves ``..`` against the text, not the filesystem: ``/x/lnk/../root`` is
    ``/x/root`` even when ``lnk`` is a symlink, where the kernel would go through the link.
    Every path Go derives from its root is made this way, so ours must be too.
    ``posixpath.normpath`` cleans as Go's ``Clean`` does, except that it keeps a leading
    ``//`` (POSIX lets it mean something else) where Go writes ``/``.
    """
    joined = "/".join(part for part in parts if part)
    if not joined:
        return ""
    cleaned = posixpath.normpath(joined)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def is_stray(cluster: str, name: str) -> bool:
    """True when clusters/<cluster>/<name> is not where the Go tool looks for *name*.

    Such a directory is listed (Go's List() shows it) but never found by name: its config
    still claims its IP and MAC, and `show` or `rm` by name reach the other copy.
    """
    return cluster_name(name) != cluster


def member_key(target: str) -> Key:
    """The member directory *target* names: ``name`` is where the Go tool looks for it
    (clusters/<cluster_name(name)>/<name>); ``cluster/name`` is any member directory, so a
    stray (a directory under another cluster, which Go lists but never finds by name) can
    be shown, changed and removed. Raises InvalidNameError.
    """
    if isinstance(target, str) and target.count("/") == 1:
        cluster, name = target.split("/")
        for part, problem in (
            ("cluster", _segment_problem(cluster)),
            ("name", _name_problem(name)),
        ):
            if problem is not None:
                raise InvalidNameError(
                    f"invalid VM name {_short_repr(target)}: as cluster/name, its {part} "
                    f"{problem.removeprefix('it ')}; {_NAME_RULE}",
                    name=target,
                )
        return Key(cluster, name)
    return Key(cluster_name(validate_name(target)), target)


def member_label(key: Key) -> str:
    """How a member directory is named back to a person: its name, or ``cluster/name`` for
    a stray, the form member_key() reads back."""
    return f"{key.cluster}/{key.name}" if is_stray(*key) else key.name


def member_file(clusters_dir: Path | str, cluster: str, name: str, leaf: str = CONFIG_NAME) -> str:
    """``<clusters_dir>/<cluster>/<name>/<leaf>`` as a str, for a directory the scan found.

    No validation: the names come from a listing (a stray's cluster is not cluster_name(name)).
    """
    return f"{clusters_dir}/{cluster}/{name}/{leaf}"


def name_bytes(name: str) -> bytes:
    """Encode a name as the bytes Go sees (UTF-8, undecodable bytes kept via surrogateescape).

    Raises InvalidNameError for a string no filesystem name could have produced (a lone
    surrogate outside U+DC80..U+DCFF).
    """
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidNameError(
            f"invalid VM name {_short_repr(name)}: it cannot be encoded as bytes; {_NAME_RULE}",
            name=name,
        ) from None


def validate_name(name: str) -> str:
    """Return ``name`` unchanged if it is a safe member name, else raise InvalidNameError.

    The Go store validates nothing, so ``delete("")`` there would remove every VM; we check
    before any path is built. Spaces, newlines and other Unicode are allowed because a
    directory can have them and the Go tool may already have created such members.
    A name whose cluster segment would be ``.`` or ``..`` (``..-1``, ``.-3``) is refused
    too: its member directory would land outside ``clusters/``.
    """
    if not isinstance(name, str):
        raise InvalidNameError(
            f"invalid VM name {_short_repr(name)}: expected a str, got {type(name).__name__}; "
            f"{_NAME_RULE}"
        )
    reason = _name_problem(name)
    if reason is not None:
        raise InvalidNameError(
            f"invalid VM name {_short_repr(name)}: {reason}; {_NAME_RULE}", name=name
        )
    return name


def validate_cluster(cluster: str) -> str:
    """Return ``cluster`` if it can name a directory under clusters/, else InvalidNameError.

    Looser than validate_name: ``..-1`` is the cluster of the valid member ``..-1-2``.
    """
    if not isinstance(cluster, str):
        raise InvalidNameError(f"invalid cluster name {_short_repr(cluster)}: expected a str")
    reason = _segment_problem(cluster)
    if reason is not None:
        raise InvalidNameError(
            f"invalid cluster name {_short_repr(cluster)}: {reason}; {_NAME_RULE}", name=cluster
        )
    return cluster


def _name_problem(name: str) -> str | None:
    """Say what is wrong with a str name, or None when it is acceptable."""
    reason = _segment_problem(name)
    if reason is None and cluster_name(name) in (".", ".."):
        return f"its cluster segment would be {cluster_name(name)!r}"
    return reason


def _segment_problem(name: str) -> str | None:
    """What stops *name* being one path segment under clusters/, or None."""
    if name == "":
        return "it is empty"
    if name in (".", ".."):
        return "it is a relative directory reference"
    if "/" in name:
        return "it contains '/'"
    if "\x00" in name:
        return "it contains NUL"
    try:
        size = len(name.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return "it holds a surrogate that no file name can hold"
    if size > MAX_NAME_BYTES:
        return f"it is {size} bytes long"
    return None


def _short_repr(value: object) -> str:
    """repr() capped in length, so a hostile multi-megabyte name cannot flood a log line."""
    text = repr(value)
    if len(text) <= _REPR_LIMIT:
        return text
    return text[: _REPR_LIMIT - 3] + "..."


def socket_hash(name: str) -> str:
    """Return the 16 lowercase hex characters naming a member's sockets under ``run/``.

    Hashing keeps socket paths a fixed length, under macOS's 104-byte ``sun_path`` limit,
    for any name. Does not validate: ``socket_hash("")`` is defined (Go computes it too).
    """
    import hashlib  # here, not at the top: see disk/observe.py

    return hashlib.sha256(name_bytes(name)).hexdigest()[:SOCKET_HASH_CHARS]


def resolve_home(
    environ: Mapping[str, str], euid: int, lookup_home: Callable[[str], str | None]
) -> str:
    """Return the home directory the Go tool would use (its ``resolveBaseHome``).

    Under ``sudo`` (euid 0 and ``SUDO_USER`` set) the invoking user's passwd home wins so
    that elevated and plain runs share one tree. A lookup that raises or returns nothing
    is not an error: it falls back to ``$HOME``. Raises StorageRootError when ``$HOME`` is
    unset or empty; unlike ``os.path.expanduser`` we do not consult passwd then, because
    Go does not and the two tools would pick different roots.
    """
    sudo_user = environ.get("SUDO_USER", "")
    if euid == 0 and sudo_user:
        try:
            home = lookup_home(sudo_user)
        except Exception:
            # Go ignores every lookup failure here (unknown user, unreadable passwd).
            home = None
        if home:
            return home
    home = environ.get("HOME", "")
    if not home:
        raise StorageRootError(
            "cannot resolve the fleetbox storage root: $HOME is not set; "
            f"set HOME or {ENV_HOME}, or give the root explicitly (Store.open(path), --root)"
        )
    return home


def _passwd_home(user: str) -> str | None:
    """Look up a user's home in the passwd database; None when there is no such user."""
    import pwd  # Unix-only; imported here so the module still imports elsewhere.

    try:
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        return None


def resolve_root(
    environ: Mapping[str, str] | None = None,
    euid: int | None = None,
    lookup_home: Callable[[str], str | None] | None = None,
) -> Path:
    """Return the storage root exactly as the Go tool resolves it (SPEC §2).

    A non-empty ``FLEETBOX_HOME`` is used verbatim: no ``~`` expansion, no absolutising and
    no cleaning, because Go does none of them and must land on the same directory.
    Otherwise the root is ``filepath.Join(home, ".fleetbox")`` (cleaned, see go_join) with
    home from :func:`resolve_home`.
    Arguments default to the process environment, effective uid and passwd database.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    override = env.get(ENV_HOME, "")
    if override:
        return Path(override)
    uid = os.geteuid() if euid is None else euid
    lookup = _passwd_home if lookup_home is None else lookup_home
    return Path(go_join(resolve_home(env, uid, lookup), ROOT_DIRNAME))


class Layout:
    """Every path of the shared tree under one root; pure, immutable and cheap to build.

    The root stays as given (Go's ``BaseDir``); every path under it is ``filepath.Join``'s,
    cleaned (see go_join), so a root spelled ``lnk/../root`` leads where Go's paths lead.
    Accessors validate the name first (InvalidNameError) and never touch the filesystem.
    A plain class rather than a frozen dataclass so that Store can subclass it and keep
    its own state.
    """

    __slots__ = ("_base", "_root")

    def __init__(self, root: Path | str) -> None:
        self._root = Path(root)
        # Joining a clean base with the fixed leaves and a valid name (one segment, never
        # "." or "..", and neither is its cluster) gives a clean path: no per-call cleaning.
        self._base = Path(go_join(os.fspath(self._root)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._root)!r})"

    # --- the root and its fixed children ---------------------------------------------

    @property
    def root(self) -> Path:
        """The storage root, as given."""
        return self._root

    @property
    def base_dir(self) -> Path:
        """Same as ``root``; named after Go's ``BaseDir``."""
        return self._root

    @property
    def clusters_dir(self) -> Path:
        return self._base / "clusters"

    @property
    def images_dir(self) -> Path:
        return self._base / "images"

    @property
    def bin_dir(self) -> Path:
        """``<root>/bin``; created by the Go tool on first download, never by us."""
        return self._base / "bin"

    @property
    def network_state_dir(self) -> Path:
        """``<root>/networks``; Linux network records, created by the Go tool only."""
        return self._base / "networks"

    @property
    def run_dir(self) -> Path:
        return self._base / "run"

    @property
    def ssh_key_path(self) -> Path:
        return self._base / "id_ed25519"

    @property
    def index_path(self) -> Path:
        """The SQLite index; at the root, where the Go tool never looks."""
        return self._base / "index.db"

    @property
    def index_lock_path(self) -> Path:
        return self._base / "index.lock"

    @property
    def leases_dir(self) -> Path:
        """``<root>/leases``: one file per address allocate_ip() handed out (disk/leases.py);
        ours alone, outside clusters/, made on the first allocation."""
        return self._base / "leases"

    # --- per member ------------------------------------------------------------------

    def vm_dir(self, name: str) -> Path:
        """``<root>/clusters/<cluster_name(name)>/<name>``."""
        validate_name(name)
        return self._base / "clusters" / cluster_name(name) / name

    def config_path(self, name: str) -> Path:
        return self.vm_dir(name) / CONFIG_NAME

    def key_dir(self, key: Key) -> Path:
        """``<root>/clusters/<cluster>/<name>`` of a member_key(), stray or not; the key is
        trusted to have been validated."""
        return self._base / "clusters" / key.cluster / key.name

    def disk_path(self, name: str) -> Path:
        return self.vm_dir(name) / "disk.raw"

    def seed_path(self, name: str) -> Path:
        return self.vm_dir(name) / "seed.iso"

    def efi_path(self, name: str) -> Path:
        return self.vm_dir(name) / "efi.nvram"

    def pidfile_path(self, name: str) -> Path:
        return self.vm_dir(name) / "pid"

    def serial_log_path(self, name: str) -> Path:
        return self.vm_dir(name) / "serial.log"

    def fixture_path(self, name: str, i: int) -> Path:
        """``<m>/fixture-<i>.img``; raises InvalidValueError unless ``i`` is an int >= 0.

        bool is refused although it is an int: ``True`` would format as ``fixture-True``.
        """
        vm_dir = self.vm_dir(name)
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise InvalidValueError(
                f"invalid fixture index {i!r} for VM {name!r}: expected an int >= 0",
                name=name,
                value=repr(i),
            )
        return vm_dir / f"fixture-{i:d}.img"

    def lock_path(self, name: str) -> Path:
        """``<m>/.lock``, the file ``try_lock`` flocks (the same one Go's ``TryLock`` uses)."""
        return self.vm_dir(name) / ".lock"

    def socket_path(self, name: str) -> Path:
        """``<root>/run/<h>.sock``; hashed so the length does not depend on the name."""
        validate_name(name)
        return self._base / "run" / f"{socket_hash(name)}.sock"

    def control_socket_path(self, primary: str) -> Path:
        """``<root>/run/<h>.ctl``, keyed on the first (primary) member of a helper."""
        validate_name(primary)
        return self._base / "run" / f"{socket_hash(primary)}.ctl"
