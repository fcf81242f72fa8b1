"""fleetbox_db: the fleetbox VM store on disk, with a SQLite index that disk always overrides.

Public API: the records (VM, Fixture), the Store, the pure helpers the Go tool also has
(cluster_name, generate_mac), and the error tree under FleetboxError.
"""

from __future__ import annotations

from fleetbox_db.checks import Entry, Problem
from fleetbox_db.config import VM, Fixture
from fleetbox_db.errors import (
    ConfigError,
    DiskError,
    FleetboxError,
    IndexBusyError,
    IndexSchemaError,
    IndexUnavailableError,
    InvalidNameError,
    InvalidValueError,
    IPConflictError,
    LockedError,
    MACConflictError,
    StorageRootError,
    SubnetExhaustedError,
    VMExistsError,
    VMNotFoundError,
)
from fleetbox_db.ipam import generate_mac
from fleetbox_db.locks import Lock
from fleetbox_db.paths import cluster_name
from fleetbox_db.queries import Conflict
from fleetbox_db.reconcile import ReconcileReport
from fleetbox_db.store import Store

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Conflict",
    "DiskError",
    "Entry",
    "Fixture",
    "FleetboxError",
    "IPConflictError",
    "IndexBusyError",
    "IndexSchemaError",
    "IndexUnavailableError",
    "InvalidNameError",
    "InvalidValueError",
    "Lock",
    "LockedError",
    "MACConflictError",
    "Problem",
    "ReconcileReport",
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
