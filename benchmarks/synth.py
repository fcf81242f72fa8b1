"""Synthetic stores in the Go tool's byte format, built once per size and cached.

The tree is written directly (not through Store.create, which would reconcile and fsync per
member and take minutes at 100,000) under ``<cache>/v<FORMAT>-n<N>/root``. Runs mutate their
store (index files, in-place rewrites), so every run works on a copy made by ``copy_store``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleetbox_db import VM, Fixture, generate_mac
from fleetbox_db.rules.config import encode_config, restore_created_at

#: Bump whenever the generated tree changes, so stale caches are never reused.
FORMAT_VERSION: Final = 1
MEMBERS_PER_CLUSTER: Final = 4
#: Host addresses of a /16 (network+2 .. broadcast-1, SPEC section 7); members past this
#: many spill into the next /16.
BLOCK_HOSTS: Final = 65533
PROBE_LIMIT: Final = 10

_ROLES: Final = ("web", "api", "db", "cache", "worker", "batch", "edge", "build")
_IMAGES: Final = ("debian-12", "ubuntu-24.04", "fedora-40")
_MEMORY: Final = (2048, 4096, 8192)


def cluster_of(i: int) -> str:
    c = i // MEMBERS_PER_CLUSTER
    return f"{_ROLES[c % len(_ROLES)]}{c:05d}"


def member_name(i: int) -> str:
    return f"{cluster_of(i)}-{i % MEMBERS_PER_CLUSTER + 1}"


def ip_of(i: int) -> str:
    """Member i holds the i-th host address, as lowest-free allocation would hand them out."""
    block, offset = divmod(i, BLOCK_HOSTS)
    host = 2 + offset
    return f"10.{20 + block}.{host >> 8}.{host & 0xFF}"


def subnet_for(n: int) -> str:
    """The /16 holding the last member's address: the one whose free addresses are probed."""
    return f"10.{20 + (n - 1) // BLOCK_HOSTS}.0.0/16"


def config_bytes(i: int) -> bytes:
    """Member i's config.json, as the Go tool writes it (nanosecond created_at, one fixture)."""
    name = member_name(i)
    vm = VM(
        name=name,
        mac=generate_mac(name),
        cpus=2 if i % 2 else 4,
        memory_mb=_MEMORY[i % len(_MEMORY)],
        disk_mb=20480 if i % 5 else 40960,
        image=_IMAGES[i % len(_IMAGES)],
        fixtures=[Fixture(f"/home/dev/src/{cluster_of(i)}", "/mnt/src", "src")],
        ip=ip_of(i),
    )
    day, minute = divmod(i // 60, 24 * 60)
    stamp = f"2024-{3 + day // 28:02d}-{1 + day % 28:02d}T{minute // 60:02d}:{minute % 60:02d}"
    restore_created_at(vm, f"{stamp}:{i % 60:02d}.{(i * 7919) % 10**9:09d}+01:00")
    return encode_config(vm)


@dataclass(frozen=True)
class Cached:
    """One cached tree: ``root`` is a storage root holding only clusters/."""

    path: Path
    n: int

    @property
    def root(self) -> Path:
        return self.path / "root"


def cached_store(cache_dir: Path, n: int, log: bool = True) -> Cached:
    """The cached tree of n members, built first if missing (never rebuilt once complete)."""
    final = cache_dir / f"v{FORMAT_VERSION}-n{n}"
    if (final / "meta.json").is_file():
        return Cached(final, n)
    cache_dir.mkdir(parents=True, exist_ok=True)
    building = cache_dir / f".building-n{n}-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    started = time.perf_counter()
    if log:
        print(f"building a {n:,}-member store in {final} ...", file=sys.stderr, flush=True)
    clusters = building / "root" / "clusters"
    for i in range(n):
        member = clusters / cluster_of(i) / member_name(i)
        if i % MEMBERS_PER_CLUSTER == 0:
            member.parent.mkdir(parents=True)
        member.mkdir()
        (member / "config.json").write_bytes(config_bytes(i))
    meta = {"format": FORMAT_VERSION, "n": n, "subnet": subnet_for(n)}
    (building / "meta.json").write_text(json.dumps(meta))
    try:
        os.rename(building, final)  # atomic: a half-built tree is never taken for a cache
    except OSError:
        shutil.rmtree(building, ignore_errors=True)  # another run finished it first
        if not (final / "meta.json").is_file():
            raise
    if log:
        took = time.perf_counter() - started
        print(f"built in {took:.1f} s", file=sys.stderr, flush=True)
    return Cached(final, n)


def copy_store(cached: Cached, dest: Path) -> Path:
    """Copy the cached tree to *dest* (mtimes kept, as a long-lived store has) and return it."""
    shutil.copytree(cached.root, dest, symlinks=True)
    return dest


def config_path(root: Path, i: int) -> str:
    return f"{root}/clusters/{cluster_of(i)}/{member_name(i)}/config.json"


def rewrite_in_place(path: str) -> None:
    """Rewrite a config the way Go's os.WriteFile does: truncate in place, one changed field.

    Flipping cpus between 2 and 4 keeps the size, so only the timestamps tell.
    """
    with open(path, "rb") as f:
        data = f.read()
    if b'"cpus": 2,' in data:
        data = data.replace(b'"cpus": 2,', b'"cpus": 4,', 1)
    else:
        data = data.replace(b'"cpus": 4,', b'"cpus": 2,', 1)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
