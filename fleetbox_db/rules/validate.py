"""What a write accepts: a checked copy of the caller's VM and the bytes to write.

Pure. Every refusal here is an InvalidInputError raised before any file or the index is
touched, so a bad argument never creates a store, a directory or a reservation.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

from fleetbox_db.errors import InvalidValueError
from fleetbox_db.records import VM
from fleetbox_db.rules.config import writable_config
from fleetbox_db.rules.ipam import Subnet, format_ipv4, generate_mac, normalize_mac, parse_ipv4
from fleetbox_db.rules.layout import validate_name

__all__ = ["Accepted", "accept"]


class Accepted(NamedTuple):
    """A VM as it will be written, with its config.json bytes and its address as an int."""

    vm: VM
    data: bytes
    ip: int | None


def accept(vm: VM, net: Subnet | None = None, *, fill_mac: bool = False) -> Accepted:
    """A validated copy of *vm* and its bytes: name checked, MAC lowercased (or derived from
    the name when empty and *fill_mac*), IP a host of *net* when one is given, every field
    encodable. Raises InvalidNameError, InvalidValueError.
    """
    _check_containers(vm)
    validate_name(vm.name)
    # copy, not dataclasses.replace: replace() would drop the created_at text read from disk,
    # and with it the nanoseconds a save must write back unchanged.
    vm = copy.copy(vm)
    vm.fixtures, vm.extra = list(vm.fixtures), dict(vm.extra)
    if vm.mac:
        vm.mac = normalize_mac(vm.mac)
    elif fill_mac:
        vm.mac = generate_mac(vm.name)
    ip = parse_ipv4(vm.ip) if vm.ip else None
    if ip is not None and net is not None and not net.is_host(ip):
        raise InvalidValueError(
            f"ip {vm.ip} of vm {vm.name!r} is not a host address of subnet {net}; "
            f"use one of {format_ipv4(net.first_host)}..{format_ipv4(net.last_host)}",
            name=vm.name,
            value=vm.ip,
        )
    return Accepted(vm, writable_config(vm), ip)


def _check_containers(vm: VM) -> None:
    """InvalidValueError for the types the copy below and the MAC fill would trip over
    (a TypeError, or a None mac silently replaced); writable_config checks the rest."""
    if not isinstance(vm, VM):
        raise InvalidValueError(f"expected a VM, not {type(vm).__name__} ({vm!r})")
    name = vm.name if isinstance(vm.name, str) else None
    for field, value, kind in (
        ("fixtures", vm.fixtures, list),
        ("extra", vm.extra, dict),
        ("mac", vm.mac, str),
        ("ip", vm.ip, str),
    ):
        if not isinstance(value, kind):
            raise InvalidValueError(
                f"{field} of vm {vm.name!r} must be a {kind.__name__}, not "
                f"{type(value).__name__} ({value!r})",
                name=name,
            )
