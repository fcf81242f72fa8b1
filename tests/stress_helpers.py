"""Oracles shared by the stress suites: a fresh walk of disk, brute-force answers, seeds.

Everything here reads the tree with plain os calls and answers the questions the Store
answers (list, vms, free_ips, who_has, check, reconcile's conflicts) by brute force, so the
suites can compare the library with disk after every step, kill or soak. Nothing here
imports the library's scanner, index or reconciler: only its public records and its
config parser (whose byte-exactness against Go is proven in test_config.py).

FLEETBOX_STRESS=1 scales every loop up; FLEETBOX_SEED=<n> replays a seeded run.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import stat
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from fleetbox_db import VM, ConfigError, FleetboxError, Store, cluster_name
from fleetbox_db.rules.config import decode_config

STRESS: Final = os.environ.get("FLEETBOX_STRESS", "") not in ("", "0")
IS_ROOT: Final = os.geteuid() == 0
NOBODY: Final = 65534
#: What fleetbox_db imports on first use (where used: a settled `ls` needs none of them).
#: A child about to drop to nobody imports them first: the stdlib here is under /root.
LAZY_IMPORTS: Final = "import hashlib, shutil, tempfile\n"
#: Code a child runs, after importing what it needs, to become user nobody.
DROP_PRIVILEGES: Final = (
    LAZY_IMPORTS + f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
)
#: The checkout, for children started with -c (the package is installed editable anyway).
REPO: Final = Path(__file__).resolve().parent.parent

Key = tuple[str, str]  # (cluster directory, member directory)
UNREADABLE: Final = b"\x00<unreadable: stat or open failed>"

_IPV4: Final = re.compile(
    r"(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})"
)


def scaled(default: int, stress: int) -> int:
    """*stress* under FLEETBOX_STRESS=1, else *default* (the CI budget)."""
    return stress if STRESS else default


def seed_for(label: str) -> int:
    """FLEETBOX_SEED if set, else a fresh random seed; printed so a failure can be replayed."""
    text = os.environ.get("FLEETBOX_SEED", "")
    seed = int(text) if text else random.randrange(2**32)
    print(f"{label}: seed {seed} (replay with FLEETBOX_SEED={seed})", file=sys.stderr)
    return seed


# -- roots another user can reach ------------------------------------------------------------


@contextmanager
def shared_tmp(prefix: str = "fleetbox-stress-") -> Iterator[Path]:
    """A scratch directory (mode 0711) outside pytest's root-only tmp tree.

    SQLite opens files by absolute path, so a child dropped to nobody needs every parent of
    the root searchable; /tmp/pytest-of-root is 0700.
    """
    top = Path(tempfile.mkdtemp(prefix=prefix))
    top.chmod(0o711)
    try:
        yield top
    finally:
        for directory, _, _ in os.walk(top):
            os.chmod(directory, 0o755)
        shutil.rmtree(top)


# -- a fresh walk of disk ---------------------------------------------------------------------


def _dirs(path: str) -> list[str]:
    with os.scandir(path) as it:
        return sorted((e.name for e in it if e.is_dir(follow_symlinks=False)), key=os.fsencode)


def walk(root: Path) -> list[Key]:
    """Every member directory in Go's List() order: clusters then members, by name bytes.

    Symlinks are not directories (Go's d_type check); an unlistable cluster is skipped.
    """
    top = os.path.join(root, "clusters")
    if not os.path.isdir(top):
        return []
    found: list[Key] = []
    for cluster in _dirs(top):
        try:
            names = _dirs(os.path.join(top, cluster))
        except OSError:
            continue
        found.extend((cluster, name) for name in names)
    return found


def config_file(root: Path, key: Key) -> Path:
    return Path(root, "clusters", key[0], key[1], "config.json")


def read_config(root: Path, key: Key) -> bytes | None:
    """The bytes of a member's config.json; None when absent, UNREADABLE when it cannot be read."""
    path = config_file(root, key)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return UNREADABLE
    if not stat.S_ISREG(st.st_mode):
        return UNREADABLE
    try:
        return path.read_bytes()
    except OSError:
        return UNREADABLE


def parse(data: bytes | None) -> VM | None:
    """The VM a config's bytes hold, or None when absent or unreadable."""
    if data is None or data == UNREADABLE:
        return None
    try:
        return decode_config(data)
    except ConfigError:
        return None


def disk_configs(root: Path) -> dict[Key, bytes | None]:
    """Every member directory on disk (walk order) with its config bytes."""
    return {key: read_config(root, key) for key in walk(root)}


# -- addresses, by brute force ----------------------------------------------------------------


def ip_int(text: str) -> int | None:
    """A strict dotted quad as an int (no leading zeros, ASCII only), else None."""
    match = _IPV4.fullmatch(text) if text.isascii() else None
    if match is None:
        return None
    parts = [int(p) for p in match.groups()]
    if any(p > 255 for p in parts):
        return None
    return (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]


def ip_text(value: int) -> str:
    return ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))


def hosts(subnet: str) -> list[int]:
    """network+2 .. broadcast-1 of a CIDR, by brute force."""
    address, prefix = subnet.split("/")
    base = ip_int(address)
    assert base is not None
    size = 1 << (32 - int(prefix))
    network = base & ~(size - 1) & 0xFFFFFFFF
    return list(range(network + 2, network + size - 1))


def oracle_free(subnet: str, held: Iterable[int]) -> list[str]:
    taken = set(held)
    return [ip_text(v) for v in hosts(subnet) if v not in taken]


def held_ips(view: Mapping[Key, VM | None]) -> set[int]:
    return {v for vm in view.values() if vm is not None and (v := ip_int(vm.ip)) is not None}


def conflicts(claims: Iterable[tuple[Key, VM]]) -> set[tuple[str, str, tuple[str, ...]]]:
    """(kind, value, member names in (cluster, name) order) of every doubly claimed IP/MAC."""
    by: dict[tuple[str, Any], list[Key]] = defaultdict(list)
    for key, vm in claims:
        ip = ip_int(vm.ip)
        if ip is not None:
            by[("ip", ip)].append(key)
        if vm.mac:
            by[("mac", vm.mac.lower())].append(key)
    found = set()
    for (kind, value), keys in by.items():
        if len(keys) > 1:
            names = tuple(
                k[1] for k in sorted(keys, key=lambda k: (os.fsencode(k[0]), os.fsencode(k[1])))
            )
            found.add((kind, ip_text(value) if kind == "ip" else value, names))
    return found


def who_has(view: Mapping[Key, VM | None], reserved: Mapping[int, str], value: str) -> str | None:
    """The Store's who_has by brute force: first holder in list() order, else the reserver."""
    ordered = sorted(view.items(), key=lambda kv: (os.fsencode(kv[0][0]), os.fsencode(kv[0][1])))
    ip = ip_int(value)
    for key, vm in ordered:
        if vm is None:
            continue
        if ip is not None and ip_int(vm.ip) == ip:
            return key[1]
        if ip is None and vm.mac and vm.mac.lower() == value.lower():
            return key[1]
    return reserved.get(ip) if ip is not None else None


# -- the whole comparison ---------------------------------------------------------------------


def stray(key: Key) -> bool:
    return cluster_name(key[1]) != key[0]


def expected_problems(root: Path, configs: Mapping[Key, bytes | None]) -> set[tuple[Any, ...]]:
    """What check() must report for this disk once the index is reconciled (no drift)."""
    clusters = str(Path(root, "clusters"))
    found: set[tuple[Any, ...]] = set()
    parsed: list[tuple[Key, VM]] = []
    for key, data in configs.items():
        where = f"{clusters}/{key[0]}/{key[1]}"
        if stray(key):
            found.add(("stray", (key[1],), where))
        vm = parse(data)
        if data is not None and vm is None:
            found.add(("unreadable", (key[1],), f"{where}/config.json"))
        if vm is not None:
            parsed.append((key, vm))
    found |= {("conflict", names, value) for _, value, names in conflicts(parsed)}
    return found


def problems_of(store: Store) -> set[tuple[Any, ...]]:
    return {(p.kind, p.members, p.value) for p in store.check()}


def assert_matches_disk(
    store: Store,
    root: Path,
    subnets: Iterable[str],
    *,
    view: Mapping[Key, VM | None] | None = None,
    reserved: Mapping[int, str] | None = None,
    where: str = "",
) -> dict[Key, bytes | None]:
    """Every read answer of *store* equals the brute-force answer from disk.

    *view* is the config the index holds per member (default: what parses now; a torn file
    keeps its last good config, which only a model knows); *reserved* maps reserved
    addresses to their names. Returns the configs read.
    """
    reserved = reserved or {}
    configs = disk_configs(root)
    if view is None:
        view = {key: parse(data) for key, data in configs.items()}
    assert set(view) == set(configs), where
    assert store.list() == [name for _, name in configs], where
    expected_vms = [parse(d) for k, d in configs.items() if not stray(k)]
    assert store.vms() == [vm for vm in expected_vms if vm is not None], where
    held = held_ips(view) | set(reserved)
    for subnet in subnets:
        assert store.free_ips(subnet) == oracle_free(subnet, held), (where, subnet)
    for cluster in sorted({k[0] for k in configs}):
        assert store.members(cluster) == [k[1] for k in configs if k[0] == cluster], where
    claimed = [vm for vm in view.values() if vm is not None]
    for vm in claimed[:: max(1, len(claimed) // 12)]:  # a sample: each costs a reconcile
        if ip_int(vm.ip) is not None:
            assert store.who_has(vm.ip) == who_has(view, reserved, vm.ip), (where, vm.ip)
        if vm.mac and re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", vm.mac):
            assert store.who_has(vm.mac) == who_has(view, reserved, vm.mac), (where, vm.mac)
    report = store.reconcile()
    unreadable = [
        k[1] for k, d in configs.items() if not stray(k) and d is not None and parse(d) is None
    ]
    assert report.unreadable == unreadable, where
    claims = [(k, vm) for k, vm in view.items() if vm is not None]
    got = {(c.kind, c.value, c.members) for c in report.conflicts}
    assert got == conflicts(claims), where
    assert problems_of(store) == expected_problems(root, configs), where
    return configs


def no_temp_files(root: Path) -> list[str]:
    """Temporary files our atomic writes leave only if killed mid-write."""
    return sorted(str(p) for p in Path(root, "clusters").glob("*/*/.config.json.*.tmp"))


def typed(exc: BaseException) -> bool:
    """True for the errors the library may raise on purpose."""
    return isinstance(exc, FleetboxError) and bool(str(exc))
