"""Answers computed from disk alone, for when the index cannot be used.

Slower than the index (every config is parsed) but always right: this is what the library
falls back to when the index is read-only, at a newer schema, or locked for too long.
"""

from __future__ import annotations

from pathlib import Path

from fleetbox_db.config import VM, decode_config
from fleetbox_db.disk import Scan, read_config_bytes
from fleetbox_db.errors import ConfigError
from fleetbox_db.ipam import Subnet, free_hosts, parse_ipv4
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


def free_ips(clusters_dir: Path, scan: Scan, subnet: Subnet, limit: int | None) -> list[int]:
    return free_hosts(subnet, taken_ips(clusters_dir, scan), limit)


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
