"""A VM as the columns of its member row in the index, and back. Pure: no I/O.

queries.py runs the SQL; this module only says which value goes in which column, so the
mapping can be read (and changed, with a migration) in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from fleetbox_db.config import (
    VM,
    Fixture,
    created_at_text,
    decode_json_value,
    encode_json_value,
    restore_created_at,
)
from fleetbox_db.ipam import parse_ipv4

SIGNATURE_FIELDS: Final = ("state", "ino", "size", "mtime_ns", "ctime_ns", "verified_ns", "digest")
CONFIG_FIELDS: Final = (
    "config_name", "mac", "mac_key", "cpus", "memory_mb", "disk_mb", "image", "created_at", "ip",
    "ip_int", "extra",
)  # fmt: skip
CONFIG_COLUMNS: Final = ", ".join(CONFIG_FIELDS)
_PLACEHOLDER_TIME: Final = datetime(1, 1, 1, tzinfo=UTC)


def ip_key(ip: str) -> int | None:
    """The address as an integer, or None when the config holds no valid IPv4 address."""
    if not ip:
        return None
    try:
        return parse_ipv4(ip)
    except ValueError:
        return None


def mac_key(mac: str) -> str | None:
    return mac.lower() if mac else None


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
        created_at=_PLACEHOLDER_TIME,
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
