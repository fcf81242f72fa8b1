"""A VM as the columns of its member row in the index, and back. Pure: no I/O.

members.py and answers.py run the SQL; this module only says which value goes in which
column, so the mapping can be read (and changed, with a migration) in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from fleetbox_db.records import VM, ZERO_TIME, Fixture
from fleetbox_db.rules.config import created_at_text, restore_created_at
from fleetbox_db.rules.gojson import decode_json_value, encode_json_value
from fleetbox_db.rules.ipam import ip_key, mac_key

__all__ = [
    "CONFIG_COLUMNS",
    "CONFIG_FIELDS",
    "FIXTURE_COLUMNS",
    "MEMBER_FIELDS",
    "SIGNATURE_FIELDS",
    "config_values",
    "fixture_rows",
    "placeholders",
    "vm_from_row",
]

SIGNATURE_FIELDS: Final = ("state", "ino", "size", "mtime_ns", "ctime_ns", "verified_ns", "digest")
CONFIG_FIELDS: Final = (
    "config_name", "mac", "mac_key", "cpus", "memory_mb", "disk_mb", "image", "created_at", "ip",
    "ip_int", "extra",
)  # fmt: skip
CONFIG_COLUMNS: Final = ", ".join(CONFIG_FIELDS)
#: A whole member row as insert_members writes it.
MEMBER_FIELDS: Final = ("id", "cluster", "name", *SIGNATURE_FIELDS, *CONFIG_FIELDS)
FIXTURE_COLUMNS: Final = "member_id, position, host_path, guest_path, label, extra"


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
    )


def vm_from_row(row: Sequence[Any], fixtures: list[Fixture]) -> VM:
    name, mac, _, cpus, memory_mb, disk_mb, image, created_at, ip, _, extra = row
    vm = VM(
        name=name,
        mac=mac,
        cpus=cpus,
        memory_mb=memory_mb,
        disk_mb=disk_mb,
        image=image,
        created_at=ZERO_TIME,
        fixtures=fixtures,
        ip=ip,
        extra=decode_json_value(extra) if extra else {},
    )
    restore_created_at(vm, created_at)
    return vm


def fixture_rows(mid: int, fixtures: Iterable[Fixture]) -> Iterator[tuple[Any, ...]]:
    for i, f in enumerate(fixtures):
        extra = encode_json_value(f.extra, compact=True) if f.extra else None
        yield (mid, i, f.host_path, f.guest_path, f.label, extra)
