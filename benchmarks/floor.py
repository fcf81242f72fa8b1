"""The baselines, written the plain obvious way: no dir_fd tricks, no caching, no index.

``walk`` is the floor every reconciling call pays (Go's List() plus one stat per config);
``parse`` and ``naive_free_ips`` are what a program without an index would do.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any


def walk(clusters_dir: str) -> list[tuple[str, os.stat_result | None]]:
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
    for member_dir, st in walk(clusters_dir):
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
