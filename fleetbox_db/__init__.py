"""fleetbox_db: the fleetbox VM store on disk, with a SQLite index that disk always overrides.

Public API: the records (VM, Fixture, Entry, Problem, Conflict, ReconcileReport, Removal),
the Store, the pure helpers the Go tool also has (cluster_name, generate_mac), the member
Lock, and the error tree under FleetboxError. ARCHITECTURE.md maps the parts behind it.
"""

from __future__ import annotations

from fleetbox_db.disk.locks import Lock
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
]
