"""A VM as the columns of its member row in the index, and back. Pure: no I/O.

members.py and answers.py run the SQL; this module only says which value goes in which
column, so the mapping can be read (and changed, with a migration) in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from fleetbox_db.records import FIXTURE_FIELDS, VM, Fixture, built_vm
from fleetbox_db.rules.config import created_at_text
from fleetbox_db.rules.gojson import decode_json_value, encode_json_value
from fleetbox_db.rules.gotime import parse_go_time
from fleetbox_db.rules.ipam import ip_key, mac_key
from fleetbox_db.rules.spelling import Spelled

__all__ = [
    "CONFIG_COLUMNS",
    "CONFIG_FIELDS",
    "FIXTURE_COLUMNS",
    "MEMBER_FIELDS",
    "SIGNATURE_FIELDS",
    "config_values",
    "fixture_rows",
    "placeholders",
    "respell",
    "vm_from_row",
]

SIGNATURE_FIELDS: Final = (
    "state", "ino", "size", "mtime_ns", "ctime_ns", "verified_ns", "digest", "reason",
)  # fmt: skip
CONFIG_FIELDS: Final = (
    "config_name", "mac", "mac_key", "cpus", "memory_mb", "disk_mb", "image", "created_at", "ip",
    "ip_int", "extra", "spelling",
)  # fmt: skip
CONFIG_COLUMNS: Final = ", ".join(CONFIG_FIELDS)
#: A whole member row as insert_members writes it.
MEMBER_FIELDS: Final = ("id", "cluster", "name", *SIGNATURE_FIELDS, *CONFIG_FIELDS)
FIXTURE_COLUMNS: Final = "member_id, position, host_path, guest_path, label, extra"
#: The VM's str fields that sit in plain columns (its fixtures' sit in the fixtures table).
_VM_STRINGS: Final = ("name", "mac", "image", "ip")


def placeholders(count: int) -> str:
    """``?, ?, ...`` for *count* values."""
    return ", ".join("?" * count)


def config_values(vm: VM) -> tuple[Any, ...]:
    """The config columns of a member row, in CONFIG_COLUMNS order."""
    extra = encode_json_value(vm.extra, compact=True) if vm.extra else None
    return (
        vm.name,
        vm.mac,
        mac_key(vm.mac),
        vm.cpus,
        vm.memory_mb,
        vm.disk_mb,
        vm.image,
        created_at_text(vm),
        vm.ip,
        ip_key(vm.ip),
        extra,
        _spelling(vm),
    )


def _spelling(vm: VM) -> str | None:
    """The spelling column: the VM's Spelled strs (rules.spelling) that sit in plain columns,
    by field (``image``, ``fixtures.0.host_path``), in JSON that keeps their escapes; None
    when there are none. The ``extra`` columns need no entry: their JSON keeps them."""
    # Spelled out, not looped: this runs for every row a rebuild writes, and almost always
    # finds nothing.
    if (
        type(vm.image) is not Spelled
        and type(vm.name) is not Spelled
        and type(vm.mac) is not Spelled
        and type(vm.ip) is not Spelled
        and (not vm.fixtures or all(map(_plain_fixture, vm.fixtures)))
    ):
        return None
    found = {f: v for f in _VM_STRINGS if type(v := getattr(vm, f)) is Spelled}
    for i, fixture in enumerate(vm.fixtures):
        for f in FIXTURE_FIELDS:
            if type(value := getattr(fixture, f)) is Spelled:
                found[f"fixtures.{i}.{f}"] = value
    return encode_json_value(found, compact=True)


def _plain_fixture(f: Fixture) -> bool:
    return (
        type(f.host_path) is not Spelled
        and type(f.guest_path) is not Spelled
        and (type(f.label) is not Spelled)
    )


def respell(vm: VM, spelling: str) -> None:
    """Give *vm*'s strings (its fixtures' too) the spellings its spelling column recorded."""
    for where, value in decode_json_value(spelling).items():
        *fixture, name = where.split(".")
        target: VM | Fixture = vm.fixtures[int(fixture[1])] if fixture else vm
        if getattr(target, name) == value:  # a spelling of this very value, and of no other
            setattr(target, name, value)


def vm_from_row(row: Sequence[Any], fixtures: list[Fixture]) -> VM:
    """The VM of a row's CONFIG_COLUMNS, built without the dataclass __init__ (records.built_vm:
    the values were checked when the row was written), once per member of `ls`."""
    name, mac, _, cpus, memory_mb, disk_mb, image, created_at, ip, _, extra, spelling = row
    when = parse_go_time(created_at)
    vm = built_vm(
        name, mac, cpus, memory_mb, disk_mb, image, when, fixtures, ip,
        decode_json_value(extra) if extra else {},
    )  # fmt: skip
    vm._created_at_raw = (created_at, when)  # as restore_created_at() remembers it
    if spelling is not None:
        respell(vm, spelling)
    return vm


def fixture_rows(mid: int, fixtures: Iterable[Fixture]) -> Iterator[tuple[Any, ...]]:
    for i, f in enumerate(fixtures):
        extra = encode_json_value(f.extra, compact=True) if f.extra else None
        yield (mid, i, f.host_path, f.guest_path, f.label, extra)
