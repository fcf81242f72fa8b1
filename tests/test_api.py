"""The public surface: fleetbox_db.__all__, what importing it costs, and the error tree."""

from __future__ import annotations

import builtins
import inspect
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import fleetbox_db
from fleetbox_db import FleetboxError, Store
from fleetbox_db import errors as errors_module

# SPEC §5, by hand: records, functions, the Store and what try_lock returns, the errors.
SPEC_NAMES = {
    "VM",
    "Fixture",
    "cluster_name",
    "generate_mac",
    "Store",
    "Lock",
    "FleetboxError",
    "InvalidNameError",
    "VMNotFoundError",
    "VMExistsError",
    "ConfigError",
    "LockedError",
    "IPConflictError",
    "MACConflictError",
    "SubnetExhaustedError",
    "IndexBusyError",
    "IndexSchemaError",
}
# Present beyond SPEC §5: the version, the records reconcile()/check()/entries()/remove()
# return, four more errors (bad values, an unresolvable root, an unwritable index, a refused
# write or removal in a member directory), and the bases of three families callers catch.
EXTRA_NAMES = {
    "__version__",
    "Event",  # issue 17: history and read-only SQL
    "QueryResult",
    "QueryRefusedError",
    "QueryTimeoutError",
    "Conflict",
    "Entry",
    "Problem",
    "ReconcileReport",
    "Removal",
    "InvalidValueError",
    "StorageRootError",
    "IndexUnavailableError",
    "DiskError",
    "InvalidInputError",
    "AddressConflictError",
    "IndexAccessError",
    "AddressUnknownError",
    "NoStoreError",
    "scan_ahead",  # issue 15: a command's first scan beside its start-up
}

ERROR_CLASSES: list[type[FleetboxError]] = [
    getattr(errors_module, name) for name in errors_module.__all__
]


def public_names(module: ModuleType) -> set[str]:
    """Names a caller could take from the module: no submodules, no __future__ flags.

    dir(), not vars(): the package imports most of its names on first use (PEP 562), and
    lists them in its __dir__.
    """
    names = {"__version__"} if hasattr(module, "__version__") else set()
    for name in dir(module):
        if name.startswith("_"):
            continue
        value = getattr(module, name)
        if isinstance(value, ModuleType):
            continue
        if type(value).__module__ == "__future__":  # the `annotations` flag
            continue
        names.add(name)
    return names


# --- __all__ ----------------------------------------------------------------------------


def test_all_is_sorted_and_unique() -> None:
    assert fleetbox_db.__all__ == sorted(fleetbox_db.__all__)
    assert len(set(fleetbox_db.__all__)) == len(fleetbox_db.__all__)


def test_all_is_the_spec_names_plus_the_extras() -> None:
    assert set(fleetbox_db.__all__) == SPEC_NAMES | EXTRA_NAMES


def test_all_equals_the_public_names_present() -> None:
    assert set(fleetbox_db.__all__) == public_names(fleetbox_db)


def test_every_exported_name_is_ours_and_resolves() -> None:
    for name in fleetbox_db.__all__:
        value = getattr(fleetbox_db, name)
        if name == "__version__":
            assert isinstance(value, str)
            assert re.fullmatch(r"\d+\.\d+\.\d+\S*", value)
            continue
        assert inspect.isclass(value) or inspect.isfunction(value), name
        assert value.__module__.startswith("fleetbox_db."), name


def test_every_error_is_exported() -> None:
    assert set(errors_module.__all__) <= set(fleetbox_db.__all__)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from fleetbox_db import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(fleetbox_db.__all__)


def test_version_matches_the_distribution() -> None:
    from importlib.metadata import version

    assert fleetbox_db.__version__ == version("fleetbox-db")


def test_store_has_every_spec_method() -> None:
    methods = [
        *("open", "close", "ensure_dir", "create", "save", "load", "exists", "delete"),
        *("list", "vms", "members", "free_ips", "allocate_ip", "who_has", "reconcile"),
        *("check", "try_lock", "vm_dir", "config_path", "disk_path", "seed_path", "efi_path"),
        *("pidfile_path", "serial_log_path", "fixture_path", "socket_path"),
        "control_socket_path",
    ]
    for name in methods:
        assert callable(getattr(Store, name)), name
    for name in ("base_dir", "images_dir", "bin_dir", "network_state_dir", "ssh_key_path"):
        assert isinstance(getattr(Store, name), property), name


# --- importing is cheap -----------------------------------------------------------------


def test_import_does_not_load_alembic_or_sqlalchemy() -> None:
    code = (
        "import json, sys\n"
        "import fleetbox_db\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.partition('.')[0] in ('alembic', 'sqlalchemy'))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_package_is_marked_typed() -> None:
    """py.typed ships in the package so type checkers read our annotations (issue 2)."""
    assert (Path(fleetbox_db.__file__).parent / "py.typed").is_file()


# --- the error tree ---------------------------------------------------------------------


def test_every_error_derives_from_fleetbox_error() -> None:
    assert errors_module.__all__ == sorted(errors_module.__all__)
    for cls in ERROR_CLASSES:
        assert issubclass(cls, fleetbox_db.FleetboxError), cls
        assert issubclass(cls, Exception)


@pytest.mark.parametrize(
    ("name", "builtin"),
    [
        pytest.param("InvalidNameError", ValueError, id="InvalidNameError"),
        pytest.param("InvalidValueError", ValueError, id="InvalidValueError"),
        pytest.param("ConfigError", ValueError, id="ConfigError"),
        pytest.param("VMNotFoundError", LookupError, id="VMNotFoundError"),
        pytest.param("IndexBusyError", TimeoutError, id="IndexBusyError"),
    ],
)
def test_errors_subclass_the_natural_builtin(name: str, builtin: type[Exception]) -> None:
    cls = getattr(fleetbox_db, name)
    assert issubclass(cls, builtin)
    with pytest.raises(builtin):
        raise cls("boom")


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_errors_pickle_with_message_and_fields(cls: type[FleetboxError], protocol: int) -> None:
    message = "vm 'web-1' at /r/c.json is broken; fix it"
    error = cls(message, name="web-1", path="/r/c.json", value="v")
    copy = pickle.loads(pickle.dumps(error, protocol=protocol))
    assert type(copy) is cls
    assert str(copy) == str(error) == message
    assert copy.args == error.args
    assert (copy.name, copy.path, copy.value) == ("web-1", Path("/r/c.json"), "v")


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_errors_pickle_without_fields(cls: type[FleetboxError]) -> None:
    copy = pickle.loads(pickle.dumps(cls("plain")))
    assert (str(copy), copy.name, copy.path, copy.value) == ("plain", None, None, None)


def test_a_raised_error_pickles_with_its_fields(store: Store) -> None:
    with pytest.raises(fleetbox_db.VMNotFoundError) as info:
        store.load("web-1")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.name, copy.path) == ("web-1", store.config_path("web-1"))
    assert str(copy) == str(info.value)


def test_errors_docstring_draws_exactly_the_tree() -> None:
    doc = errors_module.__doc__
    assert doc is not None
    tree = re.compile(r"\s+(?:[│ ]   )*(?:[├└]── )?[A-Z]\w*Error\s")
    lines = [line for line in doc.splitlines() if tree.match(line)]
    drawn = [re.search(r"[A-Z]\w*Error", line).group() for line in lines]  # type: ignore[union-attr]
    assert drawn[0] == "FleetboxError"
    assert len(drawn) == len(set(drawn))
    assert set(drawn) == set(errors_module.__all__)
    # Each drawn child is a direct subclass of the class drawn one level up, and a builtin
    # named in brackets is a base.
    depth = [line.index(name) for line, name in zip(lines, drawn, strict=True)]
    for i, (line, name) in enumerate(zip(lines, drawn, strict=True)):
        if i == 0:
            continue
        parent = next(drawn[j] for j in range(i - 1, -1, -1) if depth[j] < depth[i])
        cls = getattr(errors_module, name)
        assert cls.__bases__[0] is getattr(errors_module, parent), name
        builtin = re.search(r"\((\w+Error)\)\s*$", line)
        if builtin is not None:
            assert issubclass(cls, getattr(builtins, builtin.group(1))), name
        assert len(line.split(None, 2)) == 3, f"{name} has no 'raised when' line"
