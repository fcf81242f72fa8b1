"""Who may hold which address: input checks, uniqueness and allocation.

Everything here that reads the index runs inside the caller's write transaction, which is
what makes the answers hold across processes: no one else can claim an address between the
check and the write.
"""

from __future__ import annotations

import copy
import sqlite3
import time
from pathlib import Path

from fleetbox_db import owners, queries, reservations
from fleetbox_db.config import VM, encode_config
from fleetbox_db.errors import (
    InvalidValueError,
    IPConflictError,
    MACConflictError,
    SubnetExhaustedError,
)
from fleetbox_db.ipam import Subnet, format_ipv4, normalize_mac, parse_ipv4, parse_subnet
from fleetbox_db.paths import cluster_name, validate_name


def checked(vm: VM, net: Subnet | None) -> VM:
    """A validated copy of *vm*: name, MAC (lowercased), IP, and every field encodable."""
    validate_name(vm.name)
    # copy, not dataclasses.replace: replace() would drop the created_at text read from disk,
    # and with it the nanoseconds a save must write back unchanged.
    vm = copy.copy(vm)
    vm.fixtures, vm.extra = list(vm.fixtures), dict(vm.extra)
    if vm.mac:
        vm.mac = normalize_mac(vm.mac)
    if vm.ip:
        ip = parse_ipv4(vm.ip)
        if net is not None and not net.is_host(ip):
            raise InvalidValueError(
                f"ip {vm.ip} of vm {vm.name!r} is not a host address of subnet {net}; "
                f"use one of {format_ipv4(net.first_host)}..{format_ipv4(net.last_host)}",
                name=vm.name,
                value=vm.ip,
            )
    encode_config(vm)  # raises InvalidValueError before anything is written
    return vm


def check_unique(conn: sqlite3.Connection, vm: VM, path: Path) -> None:
    """Refuse an IP or MAC another member (or another name's reservation) holds.

    The caller holds the write transaction, so no other process can claim either meanwhile.
    """
    key = (cluster_name(vm.name), vm.name)
    if vm.ip:
        ip = parse_ipv4(vm.ip)
        holders = [k for k in queries.holders_of_ip(conn, ip) if k != key]
        reserver = reservations.holder(conn, ip)
        if holders or reserver not in (None, vm.name):
            who = holders[0][1] if holders else f"a reservation for {reserver!r}"
            raise IPConflictError(
                f"ip {vm.ip} for vm {vm.name!r} is already held by {who}; choose another "
                "address or pass a subnet to allocate one",
                name=vm.name,
                value=vm.ip,
                path=path,
            )
    if vm.mac:
        holders = [k for k in queries.holders_of_mac(conn, vm.mac) if k != key]
        if holders:
            raise MACConflictError(
                f"mac {vm.mac} for vm {vm.name!r} is already held by {holders[0][1]}; "
                "leave mac empty to derive one from the name",
                name=vm.name,
                value=vm.mac,
                path=path,
            )


def allocate(conn: sqlite3.Connection, name: str, net: Subnet) -> int:
    """Reserve the lowest free host of *net* for *name* (or return what it already holds).

    The caller holds the write transaction. Raises SubnetExhaustedError.
    """
    key = (cluster_name(name), name)
    reserved = reservations.for_name(conn, name, net.text)
    if reserved is not None:
        if all(holder == key for holder in queries.holders_of_ip(conn, reserved)):
            return reserved
        # A config written behind our back (Go, a hand edit) took the address: let go.
        reservations.release(conn, name, subnet=net.text)
    own = queries.ip_in_range(conn, key, net.first_host, net.last_host)
    if own is not None:
        return own
    gaps = queries.free_ranges(conn, net.first_host, net.last_host, 1)
    if not gaps:
        raise SubnetExhaustedError(
            f"no free address left in subnet {net} for vm {name!r}; delete a member or "
            "use a larger subnet",
            name=name,
            value=net.text,
        )
    ip = gaps[0][0]
    reservations.add(conn, name, net.text, ip, owners.current_owner(), time.time_ns())
    return ip


def optional_subnet(text: str | None) -> Subnet | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidValueError(f"subnet must be a CIDR string like 10.0.0.0/24, not {text!r}")
    return parse_subnet(text)


def required_subnet(text: str) -> Subnet:
    net = optional_subnet(text)
    if net is None:
        raise InvalidValueError("a subnet is required, as a CIDR string like 10.0.0.0/24")
    return net


def ip_or_mac(value: str) -> tuple[int | None, str | None]:
    if not isinstance(value, str):
        raise InvalidValueError(f"expected an IPv4 address or a MAC, not {value!r}")
    if value.count(":") == 5:
        return None, normalize_mac(value)
    return parse_ipv4(value), None
