"""fleetbox_db: the fleetbox VM store on disk, with a SQLite index that disk always overrides.

Public API: the records (VM, Fixture, Entry, Problem, Conflict, ReconcileReport, Removal),
the Store, the pure helpers the Go tool also has (cluster_name, generate_mac), the member
Lock, and the error tree under FleetboxError. ARCHITECTURE.md maps the parts behind it.
"""

from __future__ import annotations

import typing as _typing

from fleetbox_db.errors import (
    AddressConflictError,
    AddressUnknownError,
    ConfigError,
    DiskError,
    FleetboxError,
    IndexAccessError,
    IndexBusyError,
    IndexSchemaError,
    IndexUnavailableError,
    InvalidInputError,
    InvalidNameError,
    InvalidValueError,
    IPConflictError,
    LockedError,
    MACConflictError,
    NoStoreError,
    QueryRefusedError,
    QueryTimeoutError,
    StorageRootError,
    SubnetExhaustedError,
    VMExistsError,
    VMNotFoundError,
)

if _typing.TYPE_CHECKING:
    from fleetbox_db.disk.locks import Lock
    from fleetbox_db.disk.scan import scan_ahead
    from fleetbox_db.records import (
        VM,
        Conflict,
        Entry,
        Event,
        Fixture,
        Problem,
        QueryResult,
        ReconcileReport,
        Removal,
    )
    from fleetbox_db.rules.ipam import generate_mac
    from fleetbox_db.rules.layout import cluster_name
    from fleetbox_db.store import Store

#: Names imported on first use (PEP 562), so that `fleetbox-db --version`, which imports this
#: package before its CLI, does not pay for the Store, the index and the Go rules (measured:
#: ~100 ms of a 250 ms start). The errors are imported eagerly: they are small and every
#: command needs them.
_LAZY: dict[str, str] = {
    "Conflict": "fleetbox_db.records",
    "Entry": "fleetbox_db.records",
    "Event": "fleetbox_db.records",
    "Fixture": "fleetbox_db.records",
    "Lock": "fleetbox_db.disk.locks",
    "Problem": "fleetbox_db.records",
    "QueryResult": "fleetbox_db.records",
    "ReconcileReport": "fleetbox_db.records",
    "Removal": "fleetbox_db.records",
    "Store": "fleetbox_db.store",
    "VM": "fleetbox_db.records",
    "cluster_name": "fleetbox_db.rules.layout",
    "generate_mac": "fleetbox_db.rules.ipam",
    "scan_ahead": "fleetbox_db.disk.scan",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fleetbox_db' has no attribute {name!r}")
    # __import__, not importlib.import_module: the import statement's own path, which
    # `python -X importtime` reports (tests read it).
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = [
    "AddressConflictError",
    "AddressUnknownError",
    "ConfigError",
    "Conflict",
    "DiskError",
    "Entry",
    "Event",
    "Fixture",
    "FleetboxError",
    "IPConflictError",
    "IndexAccessError",
    "IndexBusyError",
    "IndexSchemaError",
    "IndexUnavailableError",
    "InvalidInputError",
    "InvalidNameError",
    "InvalidValueError",
    "Lock",
    "LockedError",
    "MACConflictError",
    "NoStoreError",
    "Problem",
    "QueryRefusedError",
    "QueryResult",
    "QueryTimeoutError",
    "ReconcileReport",
    "Removal",
    "StorageRootError",
    "Store",
    "SubnetExhaustedError",
    "VM",
    "VMExistsError",
    "VMNotFoundError",
    "__version__",
    "cluster_name",
    "generate_mac",
    "scan_ahead",
]
