"""Answers computed from disk alone, for when the index cannot be used.

Slower than the index (every config is parsed) but always right: this is what the library
falls back to when the index is read-only, at a newer schema, or locked for too long.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

from fleetbox_db.checks import Entry
from fleetbox_db.config import VM, decode_config
from fleetbox_db.disk import Scan, read_config_bytes
from fleetbox_db.errors import ConfigError
from fleetbox_db.ipam import Subnet, free_ranges, parse_ipv4
from fleetbox_db.paths import cluster_name


def parsed(clusters_dir: Path, scan: Scan, *, stray: bool = True) -> list[tuple[str, VM]]:
    """(directory name, VM) for every member whose config parses now, in List() order."""
    found: list[tuple[str, VM]] = []
    for member in scan.members:
        if member.signature is None:
            continue
        if not stray and cluster_name(member.name) != member.cluster:
            continue
        path = f"{clusters_dir}/{member.cluster}/{member.name}/config.json"
        try:
            data, _ = read_config_bytes(path)
            found.append((member.name, decode_config(data, path)))
        except (OSError, ConfigError):
            continue
    return found


def entries(clusters_dir: Path, scan: Scan) -> list[Entry]:
    """Every member directory with its state and config, as Store.entries() gives them."""
    found: list[Entry] = []
    for member in scan.members:
        stray = cluster_name(member.name) != member.cluster
        vm: VM | None = None
        state = "configless"
        if member.signature is not None or member.error is not None:
            path = f"{clusters_dir}/{member.cluster}/{member.name}/config.json"
            try:
                vm = decode_config(read_config_bytes(path)[0], path)
                state = "ok"
            except (OSError, ConfigError):
                state = "unreadable"
        found.append(Entry(member.name, member.cluster, "stray" if stray else state, vm))
    clashing = conflicting(
        (e.name, e.vm) for e in found if e.vm is not None and e.state in ("ok", "stray")
    )
    return [
        Entry(e.name, e.cluster, "conflict", e.vm) if e.state == "ok" and e.name in clashing else e
        for e in found
    ]


def conflicting(claims: Iterable[tuple[str, VM]]) -> set[str]:
    """Names of members whose IP or MAC another member's config also claims."""
    holders: dict[tuple[str, object], list[str]] = defaultdict(list)
    for name, vm in claims:
        with suppress(ValueError):
            holders[("ip", parse_ipv4(vm.ip))].append(name)
        if vm.mac:
            holders[("mac", vm.mac.lower())].append(name)
    return {name for names in holders.values() if len(names) > 1 for name in names}


def vms(clusters_dir: Path, scan: Scan) -> list[VM]:
    return [vm for _, vm in parsed(clusters_dir, scan, stray=False)]


def taken_ips(clusters_dir: Path, scan: Scan) -> set[int]:
    taken: set[int] = set()
    for _, vm in parsed(clusters_dir, scan):
        try:
            taken.add(parse_ipv4(vm.ip))
        except ValueError:
            continue
    return taken


def free_ips(clusters_dir: Path, scan: Scan, subnet: Subnet) -> list[tuple[int, int]]:
    """The free runs of *subnet*'s hosts, inclusive, as ipam.free_ranges gives them."""
    return free_ranges(subnet, taken_ips(clusters_dir, scan))


def who_has(clusters_dir: Path, scan: Scan, ip: int | None, mac: str | None) -> str | None:
    for name, vm in parsed(clusters_dir, scan):
        if ip is not None and vm.ip:
            try:
                if parse_ipv4(vm.ip) == ip:
                    return name
            except ValueError:
                continue
        if mac is not None and vm.mac.lower() == mac:
            return name
    return None
