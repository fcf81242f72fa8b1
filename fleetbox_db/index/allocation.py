"""Who may hold which address: uniqueness and allocation, decided inside the write lock.

Everything here runs inside the caller's write transaction, which is what makes the
answers hold across processes: no one else can claim an address between the check and
the write.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from fleetbox_db.disk import leases, owners
from fleetbox_db.errors import (
    AddressUnknownError,
    IPConflictError,
    MACConflictError,
    SubnetExhaustedError,
)
from fleetbox_db.index import reservations
from fleetbox_db.index.answers import (
    address_unknown,
    free_ranges,
    holders_of_ip,
    holders_of_mac,
    ip_in_range,
)
from fleetbox_db.records import VM, Key
from fleetbox_db.rules.ipam import Subnet
from fleetbox_db.rules.layout import cluster_name, is_stray, member_file, member_label

__all__ = ["allocate", "check_unique"]


def check_unique(conn: sqlite3.Connection, vm: VM, ip: int | None, path: Path) -> None:
    """Refuse an IP (*ip*, vm.ip parsed) or MAC another member, or another name's
    reservation, holds."""
    key = Key(cluster_name(vm.name), vm.name)
    if ip is not None:
        holders = [k for k in holders_of_ip(conn, ip) if k != key]
        reserver = reservations.holder(conn, ip)
        if holders or reserver not in (None, vm.name):
            who = _holder(holders[0]) if holders else f"a reservation for {reserver!r}"
            raise IPConflictError(
                f"ip {vm.ip} for vm {vm.name!r} is already held by {who}; choose another "
                "address or pass a subnet to allocate one",
                name=vm.name,
                value=vm.ip,
                path=path,
            )
    if vm.mac:
        holders = [k for k in holders_of_mac(conn, vm.mac) if k != key]
        if holders:
            raise MACConflictError(
                f"mac {vm.mac} for vm {vm.name!r} is already held by {_holder(holders[0])}; "
                "leave mac empty to derive one from the name",
                name=vm.name,
                value=vm.mac,
                path=path,
            )


def _holder(key: Key) -> str:
    """The member holding an address, as an error names it: a stray (its own stale copy,
    often) by cluster/name with the command that removes it."""
    if not is_stray(*key):
        return key.name
    label = member_label(key)
    return f"{label} (a stray directory; `fleetbox-db rm {label}` removes it)"


def allocate(
    conn: sqlite3.Connection,
    clusters_dir: str,
    leases_dir: Path,
    name: str,
    net: Subnet,
    changes: reservations.LeaseChanges,
) -> int:
    """Reserve the lowest free host of *net* for *name* (or return what it already holds):
    a lease file this process holds (disk/leases.py) and its row, noted in *changes*.

    Raises SubnetExhaustedError, AddressUnknownError.
    """
    key = Key(cluster_name(name), name)
    reserved = reservations.for_name(conn, name, net.text)
    if reserved is not None:
        if all(holder == key for holder in holders_of_ip(conn, reserved)):
            return reserved
        # A config written behind our back (Go, a hand edit) took the address: let go.
        changes.dropped += reservations.release(conn, name, subnet=net.text)
    own = ip_in_range(conn, key, net)
    if own is not None:
        return own
    unknown = address_unknown(conn)
    if unknown is not None:
        path = member_file(clusters_dir, *unknown)
        raise AddressUnknownError(
            f"cannot allocate an address in {net} for vm {name!r}: the config of vm "
            f"{unknown.name!r} at {path} could not be read, so the address it holds is "
            "unknown; fix its permissions (or remove it) and retry",
            name=unknown.name,
            path=path,
            value=net.text,
        )
    while True:
        gaps = free_ranges(conn, net, 1)
        if not gaps:
            raise SubnetExhaustedError(
                f"no free address left in subnet {net} for vm {name!r}; delete a member or "
                "use a larger subnet",
                name=name,
                value=net.text,
            )
        ip = gaps[0][0]
        if leases.take(leases_dir, ip, name, net.text):
            break
        # A live lease the index lacks (rebuilt while its owner lived): mirror it, go on.
        held = leases.read(leases_dir, ip) or leases.Lease(ip, f"(lease {ip})", net.text)
        reservations.mirror(conn, [held])
    changes.taken.append(ip)
    reservations.add(conn, name, net.text, ip, owners.current_owner(), time.time_ns())
    return ip
