"""Every failure a caller can handle, under one base class.

    FleetboxError                   base of everything below; never raised itself
    ├── InvalidInputError           an argument is refused before any file is touched (ValueError)
    │   ├── InvalidNameError        a VM name could escape or clobber the tree (ValueError)
    │   ├── InvalidValueError       an IP, CIDR, MAC, fixture or field is malformed (ValueError)
    │   └── QueryRefusedError       SQL that would write, attach, load or is not one statement
    ├── StorageRootError            the storage root cannot be resolved or created
    │   └── NoStoreError            open(create=False) found no store (no clusters/) at the root
    ├── DiskError                   a member's files cannot be written or removed (OSError)
    ├── VMNotFoundError             the member directory or its config.json is absent (LookupError)
    ├── VMExistsError               create() found a config.json already there
    ├── ConfigError                 a config.json is not valid JSON or mistyped (ValueError)
    ├── LockedError                 a member's .lock is held (try_lock(); delete() when running)
    ├── AddressConflictError        an address another member (or a reservation) already holds
    │   ├── IPConflictError         the IP is held by another member or a live reservation
    │   └── MACConflictError        the MAC is held by another member (compared case-insensitively)
    ├── SubnetExhaustedError        no free host address is left in the subnet
    ├── AddressUnknownError         a member's config cannot be read now, so allocating is blind
    ├── QueryTimeoutError           a read-only query ran past its time limit (TimeoutError)
    └── IndexAccessError            the index cannot be used now: answers come from disk
        ├── IndexBusyError          the index stayed locked past the busy timeout (TimeoutError)
        ├── IndexSchemaError        the index is at a revision newer than this code; writes refused
        └── IndexUnavailableError   the index cannot be used now (permissions, full disk, I/O
                                    error, a symlink or special file in place of an index file)

Each error carries the fields it names (``name``, ``path``, ``value``) and pickles with them,
so it survives being sent from a worker process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "AddressConflictError",
    "AddressUnknownError",
    "ConfigError",
    "DiskError",
    "FleetboxError",
    "IPConflictError",
    "IndexAccessError",
    "IndexBusyError",
    "IndexSchemaError",
    "IndexUnavailableError",
    "InvalidInputError",
    "InvalidNameError",
    "InvalidValueError",
    "LockedError",
    "MACConflictError",
    "NoStoreError",
    "QueryRefusedError",
    "QueryTimeoutError",
    "StorageRootError",
    "SubnetExhaustedError",
    "VMExistsError",
    "VMNotFoundError",
]


class FleetboxError(Exception):
    """Base class of every error fleetbox_db raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        path: Path | str | None = None,
        value: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.path = Path(path) if path is not None else None
        self.value = value

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only fields would be lost by Exception's default reduce.
        return (self.__class__, (self.message,), self.__dict__)


class InvalidInputError(FleetboxError, ValueError):
    """Base of the errors for an argument refused before any file is touched."""


class InvalidNameError(InvalidInputError):
    """Raised when a VM name would escape or clobber the tree; before any file is touched."""


class InvalidValueError(InvalidInputError):
    """Raised when an IP, CIDR, MAC, fixture or field value is malformed; nothing written."""


class QueryRefusedError(InvalidInputError):
    """Raised by Store.query() for SQL that is not one read-only statement over the views
    (a write, ATTACH, a PRAGMA, load_extension, several statements) or does not compile."""


class QueryTimeoutError(FleetboxError, TimeoutError):
    """Raised by Store.query() when the query runs past its time limit; it was stopped."""


class StorageRootError(FleetboxError):
    """Raised when the storage root cannot be resolved ($HOME unset) or created."""


class NoStoreError(StorageRootError):
    """Raised by Store.open(path, create=False) when the root has no clusters/ directory:
    a mistyped --root must not become a new, empty store."""


class DiskError(FleetboxError, OSError):
    """Raised when the OS refuses a write or removal in a member directory, or when that
    directory (or its cluster) is a symlink, which the store never follows."""


class VMNotFoundError(FleetboxError, LookupError):
    """Raised when a member directory or its config.json does not exist."""


class VMExistsError(FleetboxError):
    """Raised by create() when the member already has a config.json."""


class ConfigError(FleetboxError, ValueError):
    """Raised when a config.json cannot be read or parsed; the file is left as it is.

    ``reason`` is what is wrong, without the path ('wrong type for "cpus": expected an
    integer, got a string'), as the index keeps it for an unreadable member.
    """

    reason: str | None = None


class LockedError(FleetboxError):
    """Raised by try_lock() when the member's lock is held by any open file description, and
    by delete() when the VM is running (the Go tool's holder keeps its lock)."""


class AddressConflictError(FleetboxError):
    """Base of the errors for an IP or MAC that another member already holds; nothing written."""


class IPConflictError(AddressConflictError):
    """Raised when an IP is already held by another member or a live reservation."""


class MACConflictError(AddressConflictError):
    """Raised when a MAC is already held by another member."""


class AddressUnknownError(FleetboxError):
    """Raised when allocation would be blind: a member's config could not be read (an OS
    error: permissions, too many open files, I/O) and no earlier read gave its address."""


class SubnetExhaustedError(FleetboxError):
    """Raised when a subnet has no free host address; nothing is reserved."""


class IndexAccessError(FleetboxError):
    """Base of the errors for an index that cannot be used now. Answers then come from disk
    (one warning per cause); writes, which need the index for uniqueness, raise."""


class IndexBusyError(IndexAccessError, TimeoutError):
    """Raised when the index stays locked by another process past the busy timeout."""


class IndexSchemaError(IndexAccessError):
    """Raised for writes when the index is at a revision newer than this code knows (and
    reported by check(), which never upgrades, for an older one)."""


class IndexUnavailableError(IndexAccessError):
    """Raised for writes when the index cannot be used now: permissions, a full disk or file
    size limit, an I/O error, or a symlink or special file where an index file belongs."""
