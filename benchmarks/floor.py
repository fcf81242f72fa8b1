"""The baselines: what a program without an index pays, with no caching.

``walk`` is the floor every reconciling call pays (Go's List() plus one stat per config),
written lean: directory descriptors and relative stats, names sorted rather than paths, as
Go's ReadDir + Stat would do it. ``walk_old`` is the first floor, written the plain obvious
way (a full path joined and stat-ed per member): kept so figures stay comparable with older
runs, it is ~15% slower than ``walk`` and flattered every ratio taken against it.
``parse`` and ``naive_free_ips`` are what a program without an index would do.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def walk(clusters_dir: str) -> list[tuple[str, str, os.stat_result | None]]:
    """(cluster, member, stat of its config.json or None) for every member, in List() order:
    scandir of each directory through its descriptor, one relative stat per member."""
    found: list[tuple[str, str, os.stat_result | None]] = []
    append, stat = found.append, os.stat
    top = os.open(clusters_dir, _DIR_FLAGS)
    try:
        with os.scandir(top) as it:
            clusters = sorted([e.name for e in it if e.is_dir(follow_symlinks=False)])
        for cluster in clusters:
            cfd = os.open(cluster, _DIR_FLAGS, dir_fd=top)
            try:
                with os.scandir(cfd) as it:
                    names = sorted([e.name for e in it if e.is_dir(follow_symlinks=False)])
                for name in names:
                    try:
                        st: os.stat_result | None = stat(f"{name}/config.json", dir_fd=cfd)
                    except FileNotFoundError:
                        st = None
                    append((cluster, name, st))
            finally:
                os.close(cfd)
    finally:
        os.close(top)
    return found


def walk_old(clusters_dir: str) -> list[tuple[str, os.stat_result | None]]:
    """(member dir, stat of its config.json or None) for every member, in List() order."""
    found: list[tuple[str, os.stat_result | None]] = []
    with os.scandir(clusters_dir) as top:
        cluster_dirs = sorted(e.path for e in top if e.is_dir(follow_symlinks=False))
    for cluster_dir in cluster_dirs:
        with os.scandir(cluster_dir) as it:
            member_dirs = sorted(e.path for e in it if e.is_dir(follow_symlinks=False))
        for member_dir in member_dirs:
            try:
                st: os.stat_result | None = os.stat(os.path.join(member_dir, "config.json"))
            except FileNotFoundError:
                st = None
            found.append((member_dir, st))
    return found


def parse(clusters_dir: str) -> list[dict[str, Any]]:
    """The same walk, then read and json.loads every config.json."""
    configs = []
    for member_dir, st in walk_old(clusters_dir):
        if st is None:
            continue
        with open(os.path.join(member_dir, "config.json"), "rb") as f:
            configs.append(json.loads(f.read()))
    return configs


def naive_free_ips(clusters_dir: str, subnet: str, limit: int) -> list[str]:
    """Parse every config, then scan the subnet's hosts (skipping the gateway) for free ones."""
    net = ipaddress.IPv4Network(subnet)
    taken = {ipaddress.IPv4Address(c["ip"]) for c in parse(clusters_dir) if c.get("ip")}
    gateway = net.network_address + 1
    free: list[str] = []
    for host in net.hosts():
        if host != gateway and host not in taken:
            free.append(str(host))
            if len(free) == limit:
                break
    return free
