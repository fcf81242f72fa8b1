"""IP allocation, free addresses, uniqueness and conflicts (SPEC §5-7), single process.

Real storage roots, real SQLite files, configs written either through the Store or straight
to disk as the Go tool would. The oracle for free addresses is the stdlib ``ipaddress``
module, not fleetbox_db.ipam, so the library is never checked against itself.
Multi-process allocation and owner liveness with real child processes: test_allocation_procs.py.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from internals import drop_lease_locks

from fleetbox_db import (
    VM,
    Conflict,
    FleetboxError,
    InvalidNameError,
    InvalidValueError,
    IPConflictError,
    MACConflictError,
    Store,
    SubnetExhaustedError,
    VMExistsError,
    cluster_name,
    generate_mac,
)
from fleetbox_db.rules.config import decode_config, encode_config

SUBNET = "192.168.5.0/24"
STRESS = os.environ.get("FLEETBOX_STRESS", "") not in ("", "0")
FIXED_TIME = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


# -- helpers ----------------------------------------------------------------------------


def put_config(
    root: Path,
    name: str,
    *,
    ip: str = "",
    mac: str | None = None,
    cluster: str | None = None,
    raw: bytes | None = None,
) -> Path:
    """Write <m>/config.json straight to disk, as the Go tool does (no Store, no index)."""
    member = root / "clusters" / (cluster_name(name) if cluster is None else cluster) / name
    member.mkdir(parents=True, exist_ok=True)
    if raw is None:
        vm = VM(name, mac=generate_mac(name) if mac is None else mac, ip=ip, created_at=FIXED_TIME)
        raw = encode_config(vm)
    path = member / "config.json"
    path.write_bytes(raw)
    return path


def tree(root: Path) -> dict[str, tuple[int, int, bytes | None]]:
    """Everything under clusters/: relative path -> (mode, mtime_ns, bytes or None for dirs)."""
    found: dict[str, tuple[int, int, bytes | None]] = {}
    base = root / "clusters"
    for dirpath, dirnames, filenames in os.walk(base):
        for entry in (*dirnames, *filenames):
            path = Path(dirpath, entry)
            st = path.lstat()
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else None
            found[str(path.relative_to(base))] = (st.st_mode, st.st_mtime_ns, data)
    return found


def reservation_rows(root: Path) -> list[tuple[str, str, str]]:
    """(name, subnet, ip) of every reservation in the index, read with a separate connection."""
    index = root / "index.db"
    if not index.exists():
        return []
    with closing(sqlite3.connect(index)) as conn:
        rows = conn.execute(
            "SELECT name, subnet, ip_int FROM reservations ORDER BY ip_int"
        ).fetchall()
    return [(n, s, str(ipaddress.IPv4Address(i))) for n, s, i in rows]


def index_path(root: Path) -> Path:
    return root / "index.db"


def ip(subnet: str, offset: int) -> str:
    """The address *offset* above the network address of *subnet*."""
    return str(ipaddress.ip_network(subnet, strict=False).network_address + offset)


def oracle(subnet: str, taken: set[str], limit: int | None = None) -> list[str]:
    """Free host addresses by brute force: network+2 .. broadcast-1 minus taken."""
    net = ipaddress.ip_network(subnet, strict=False)
    first, last = int(net.network_address) + 2, int(net.broadcast_address) - 1
    taken_ints = {int(ipaddress.IPv4Address(t)) for t in taken}
    free: list[str] = []
    for value in range(first, last + 1):
        if limit is not None and len(free) >= limit:
            break
        if value not in taken_ints:
            free.append(str(ipaddress.IPv4Address(value)))
    return free


# -- free_ips: the host range -------------------------------------------------------------


@pytest.mark.parametrize(
    ("subnet", "expected"),
    [
        pytest.param("192.168.5.0/30", ["192.168.5.2"], id="slash30-one-address"),
        pytest.param("192.168.5.0/31", [], id="slash31-none"),
        pytest.param("192.168.5.0/32", [], id="slash32-none"),
        pytest.param("192.168.5.7/32", [], id="slash32-host-bits"),
        pytest.param(
            "192.168.5.8/29",
            ["192.168.5.10", "192.168.5.11", "192.168.5.12", "192.168.5.13", "192.168.5.14"],
            id="slash29",
        ),
        pytest.param("192.168.5.77/30", ["192.168.5.78"], id="host-bits-cleared"),
        pytest.param("255.255.255.252/30", ["255.255.255.254"], id="top-of-space"),
    ],
)
def test_free_ips_host_range(store: Store, subnet: str, expected: list[str]) -> None:
    assert store.free_ips(subnet) == expected


def test_free_ips_of_a_24_is_2_to_254(store: Store) -> None:
    free = store.free_ips(SUBNET)
    assert free == [f"192.168.5.{i}" for i in range(2, 255)]
    assert free == oracle(SUBNET, set())


def test_free_ips_of_the_whole_space_with_a_limit(store: Store) -> None:
    assert store.free_ips("0.0.0.0/0", limit=3) == ["0.0.0.2", "0.0.0.3", "0.0.0.4"]


@pytest.mark.parametrize(
    ("limit", "count"),
    [
        pytest.param(0, 0, id="zero"),
        pytest.param(1, 1, id="one"),
        pytest.param(2, 2, id="two"),
        pytest.param(252, 252, id="all-but-one"),
        pytest.param(253, 253, id="exactly-all"),
        pytest.param(10_000, 253, id="more-than-all"),
        pytest.param(None, 253, id="none"),
    ],
)
def test_free_ips_limit(store: Store, limit: int | None, count: int) -> None:
    assert store.free_ips(SUBNET, limit=limit) == oracle(SUBNET, set())[:count]


def test_free_ips_limit_counts_addresses_across_gaps(store: Store, root: Path) -> None:
    for offset in (3, 5, 6, 8):
        put_config(root, f"web-{offset}", ip=ip(SUBNET, offset))
    taken = {ip(SUBNET, o) for o in (3, 5, 6, 8)}
    for limit in range(8):
        assert store.free_ips(SUBNET, limit=limit) == oracle(SUBNET, taken, limit)


def test_iter_free_ips_of_the_whole_space_makes_addresses_on_demand(store: Store) -> None:
    store.create(VM("web-1", ip="0.0.0.3"))
    free = store.iter_free_ips("0.0.0.0/0")  # 4 billion: a list would not fit
    assert [next(free) for _ in range(3)] == ["0.0.0.2", "0.0.0.4", "0.0.0.5"]


def test_iter_free_ips_checks_and_reconciles_when_called_not_when_iterated(
    store: Store, root: Path
) -> None:
    with pytest.raises(InvalidValueError):
        store.iter_free_ips("10.0.0.0/33")  # no next() needed
    free = store.iter_free_ips(SUBNET)
    put_config(root, "db-1", ip=ip(SUBNET, 2))  # after the call: not seen by this iterator
    assert next(free) == ip(SUBNET, 2)
    assert next(store.iter_free_ips(SUBNET)) == ip(SUBNET, 3)


def test_free_ips_negative_limit_is_invalid(store: Store) -> None:
    with pytest.raises(InvalidValueError):
        store.free_ips(SUBNET, limit=-1)


# -- free_ips: what takes an address ------------------------------------------------------

TAKEN = ip(SUBNET, 3)
AFTER_TAKEN = [ip(SUBNET, 2), ip(SUBNET, 4), ip(SUBNET, 5)]


def test_member_in_any_cluster_takes_its_ip(store: Store, root: Path) -> None:
    put_config(root, "db-1", ip=TAKEN)
    assert store.free_ips(SUBNET, limit=3) == AFTER_TAKEN


def test_member_created_through_the_store_takes_its_ip(store: Store) -> None:
    store.create(VM("web-1", ip=TAKEN))
    assert store.free_ips(SUBNET, limit=3) == AFTER_TAKEN


def test_stray_member_takes_its_ip(store: Store, root: Path) -> None:
    # clusters/zz/web-1: the Go tool lists it, so its address is in use on some host.
    put_config(root, "web-1", ip=TAKEN, cluster="zz")
    assert store.free_ips(SUBNET, limit=3) == AFTER_TAKEN


def test_unreadable_config_keeps_its_last_good_ip(store: Store, root: Path) -> None:
    path = put_config(root, "web-1", ip=TAKEN)
    assert store.free_ips(SUBNET, limit=3) == AFTER_TAKEN
    path.write_bytes(b'{"name": "web-1", "ip": ')  # a Go write caught half way
    report = store.reconcile()
    assert report.unreadable == ["web-1"]
    assert store.free_ips(SUBNET, limit=3) == AFTER_TAKEN
    with pytest.raises(IPConflictError):
        store.create(VM("db-1", ip=TAKEN))


def test_config_never_readable_holds_nothing(store: Store, root: Path) -> None:
    """Decision: with no last good row there is no address to hold; it is reported."""
    put_config(root, "web-1", raw=b'{"name": "web-1", "ip": "' + TAKEN.encode())
    assert store.free_ips(SUBNET, limit=1) == [ip(SUBNET, 2)]
    assert store.free_ips(SUBNET, limit=2)[1] == TAKEN
    assert [p.kind for p in store.check()] == ["unreadable"]


def test_live_reservation_takes_its_ip(store: Store) -> None:
    assert store.allocate_ip("web-9", SUBNET) == ip(SUBNET, 2)
    assert store.free_ips(SUBNET, limit=3) == [ip(SUBNET, o) for o in (3, 4, 5)]


def test_conflicting_ip_is_taken(store: Store, root: Path) -> None:
    put_config(root, "web-1", ip=TAKEN)
    put_config(root, "db-1", ip=TAKEN)
    assert store.free_ips(SUBNET, limit=3) == AFTER_TAKEN


def test_members_in_other_subnets_do_not_matter(store: Store, root: Path) -> None:
    put_config(root, "web-1", ip="192.168.9.7")
    put_config(root, "web-2", ip="10.0.0.2")
    put_config(root, "web-3", ip=ip(SUBNET, 0))  # network, gateway and broadcast are
    put_config(root, "web-4", ip=ip(SUBNET, 1))  # never offered anyway
    put_config(root, "web-5", ip=ip(SUBNET, 255))
    assert store.free_ips(SUBNET) == oracle(SUBNET, set())


def test_removed_or_edited_member_frees_its_ip(store: Store, root: Path) -> None:
    put_config(root, "web-1", ip=ip(SUBNET, 2))
    path = put_config(root, "web-2", ip=ip(SUBNET, 3))
    assert store.free_ips(SUBNET, limit=1) == [ip(SUBNET, 4)]
    shutil.rmtree(root / "clusters" / "web" / "web-1")
    assert store.free_ips(SUBNET, limit=1) == [ip(SUBNET, 2)]
    put_config(root, "web-2", ip=ip(SUBNET, 2))  # hand edit, same size: the racy case
    assert path.read_bytes().count(b"192.168.5.2") == 1
    assert store.free_ips(SUBNET, limit=2) == [ip(SUBNET, 3), ip(SUBNET, 4)]


def test_configless_member_holds_nothing(store: Store, root: Path) -> None:
    (root / "clusters" / "web" / "web-1").mkdir(parents=True)
    store.ensure_dir("web-2")
    assert store.free_ips(SUBNET, limit=1) == [ip(SUBNET, 2)]


# -- the historical Go allocateIP tests (facts §5.6) --------------------------------------


def test_go_history_empty_store_gives_dot_2(store: Store) -> None:
    assert store.free_ips("192.168.5.0/24", limit=1) == ["192.168.5.2"]
    assert store.allocate_ip("n1", "192.168.5.0/24") == "192.168.5.2"


def test_go_history_member_at_dot_2_gives_dot_3(store: Store) -> None:
    assert store.create(VM("n1"), subnet="192.168.5.0/24").ip == "192.168.5.2"
    assert store.free_ips("192.168.5.0/24", limit=1) == ["192.168.5.3"]
    store.create(VM("other", ip="192.168.9.7"))
    assert store.free_ips("192.168.5.0/24", limit=1) == ["192.168.5.3"]
    assert store.allocate_ip("n2", "192.168.5.0/24") == "192.168.5.3"


def test_go_history_slash30_then_exhausted(store: Store, root: Path) -> None:
    assert store.create(VM("n1"), subnet="192.168.5.0/30").ip == "192.168.5.2"
    before = tree(root)
    with pytest.raises(SubnetExhaustedError) as info:
        store.create(VM("n2"), subnet="192.168.5.0/30")
    assert info.value.name == "n2"
    with pytest.raises(SubnetExhaustedError):
        store.allocate_ip("n3", "192.168.5.0/30")
    assert tree(root) == before  # no member dir, no cluster dir, no file
    assert not store.vm_dir("n2").exists()
    assert reservation_rows(root) == []
    assert store.list() == ["n1"]


def test_exhausted_by_reservations_alone(store: Store, root: Path) -> None:
    assert store.allocate_ip("a", "10.1.1.0/30") == "10.1.1.2"
    with pytest.raises(SubnetExhaustedError):
        store.allocate_ip("b", "10.1.1.0/30")
    assert store.allocate_ip("a", "10.1.1.0/30") == "10.1.1.2"  # idempotent when full
    assert reservation_rows(root) == [("a", "10.1.1.0/30", "10.1.1.2")]


@pytest.mark.parametrize("subnet", ["10.1.1.0/31", "10.1.1.0/32"])
def test_no_host_subnet_is_exhausted_at_once(store: Store, root: Path, subnet: str) -> None:
    with pytest.raises(SubnetExhaustedError):
        store.allocate_ip("a", subnet)
    with pytest.raises(SubnetExhaustedError):
        store.create(VM("a"), subnet=subnet)
    assert tree(root) == {}
    assert reservation_rows(root) == []


# -- allocate_ip --------------------------------------------------------------------------


def test_allocate_takes_the_lowest_free_address(store: Store, root: Path) -> None:
    for offset in (2, 3, 5):
        put_config(root, f"web-{offset}", ip=ip(SUBNET, offset))
    assert store.allocate_ip("db-1", SUBNET) == ip(SUBNET, 4)
    assert store.allocate_ip("db-2", SUBNET) == ip(SUBNET, 6)


def test_allocate_is_idempotent_per_name_and_subnet(store: Store, root: Path) -> None:
    first = store.allocate_ip("web-1", SUBNET)
    assert store.allocate_ip("web-1", SUBNET) == first
    assert store.allocate_ip("web-1", "192.168.5.77/24") == first  # same subnet, other spelling
    assert reservation_rows(root) == [("web-1", SUBNET, first)]


def test_allocate_in_another_subnet_is_another_reservation(store: Store, root: Path) -> None:
    a = store.allocate_ip("web-1", SUBNET)
    b = store.allocate_ip("web-1", "10.7.0.0/16")
    assert (a, b) == (ip(SUBNET, 2), "10.7.0.2")
    assert reservation_rows(root) == [
        ("web-1", "10.7.0.0/16", "10.7.0.2"),
        ("web-1", SUBNET, ip(SUBNET, 2)),
    ]


def test_overlapping_subnets_never_share_an_address(store: Store) -> None:
    a = store.allocate_ip("web-1", "10.7.0.0/16")
    b = store.allocate_ip("web-1", "10.7.0.0/24")
    c = store.allocate_ip("web-2", "10.7.0.0/24")
    assert len({a, b, c}) == 3


def test_reservation_is_not_free_for_others(store: Store, root: Path) -> None:
    assert store.allocate_ip("web-1", SUBNET) == ip(SUBNET, 2)
    assert ip(SUBNET, 2) not in store.free_ips(SUBNET)
    assert store.allocate_ip("web-2", SUBNET) == ip(SUBNET, 3)
    assert store.create(VM("web-3"), subnet=SUBNET).ip == ip(SUBNET, 4)
    before = tree(root)
    with pytest.raises(IPConflictError) as info:
        store.create(VM("db-1", ip=ip(SUBNET, 2)))
    assert "web-1" in str(info.value)
    assert tree(root) == before


def test_allocate_records_the_owner_process(store: Store, root: Path) -> None:
    store.allocate_ip("web-1", SUBNET)
    with closing(sqlite3.connect(index_path(root))) as conn:
        row = conn.execute("SELECT owner_pid, owner_boot, owner_start FROM reservations").fetchone()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    start = int(stat[stat.rfind(")") + 2 :].split()[19])
    assert row == (os.getpid(), boot, start)


def test_allocate_for_a_member_returns_its_configured_ip(store: Store, root: Path) -> None:
    """Decision: a member whose config already holds an address of the subnet gets it back."""
    store.create(VM("web-1", ip=ip(SUBNET, 7)))
    assert store.allocate_ip("web-1", SUBNET) == ip(SUBNET, 7)
    assert reservation_rows(root) == []


def test_create_with_subnet_turns_the_reservation_into_the_assignment(
    store: Store, root: Path
) -> None:
    reserved = store.allocate_ip("web-1", SUBNET)
    vm = store.create(VM("web-1"), subnet=SUBNET)
    assert vm.ip == reserved
    assert store.load("web-1").ip == reserved
    assert reservation_rows(root) == []
    assert store.who_has(reserved) == "web-1"
    assert ip(SUBNET, 2) not in store.free_ips(SUBNET)
    # A second create with a subnet and no prior reservation leaves no row either.
    assert store.create(VM("web-2"), subnet=SUBNET).ip == ip(SUBNET, 3)
    assert reservation_rows(root) == []


def test_create_with_the_reserved_ip_given_explicitly(store: Store, root: Path) -> None:
    reserved = store.allocate_ip("web-1", SUBNET)
    assert store.create(VM("web-1", ip=reserved)).ip == reserved
    assert reservation_rows(root) == []


def test_create_with_subnet_keeps_reservations_in_other_subnets(store: Store, root: Path) -> None:
    """Decision: only the reservation that became the config's ip is consumed."""
    other = store.allocate_ip("web-1", "10.7.0.0/24")
    assert store.create(VM("web-1"), subnet=SUBNET).ip == ip(SUBNET, 2)
    assert reservation_rows(root) == [("web-1", "10.7.0.0/24", other)]


def test_create_fills_mac_and_returns_what_was_written(store: Store) -> None:
    vm = store.create(VM("web-1", mac="AA:BB:CC:DD:EE:0F"), subnet=SUBNET)
    assert (vm.mac, vm.ip) == ("aa:bb:cc:dd:ee:0f", ip(SUBNET, 2))
    loaded = store.load("web-1")
    assert (loaded.mac, loaded.ip) == (vm.mac, vm.ip)
    assert store.create(VM("web-2"), subnet=SUBNET).mac == generate_mac("web-2")


# -- conflicts rejected by create and save -------------------------------------------------


@pytest.fixture
def two_members(store: Store) -> tuple[VM, VM]:
    a = store.create(VM("web-1", mac="aa:bb:cc:dd:ee:01"), subnet=SUBNET)
    b = store.create(VM("db-1", mac="aa:bb:cc:dd:ee:02"), subnet=SUBNET)
    return a, b


@pytest.mark.parametrize(
    ("vm", "error"),
    [
        pytest.param(VM("web-2", ip="192.168.5.2"), IPConflictError, id="ip"),
        pytest.param(VM("web-2", mac="aa:bb:cc:dd:ee:01"), MACConflictError, id="mac"),
        pytest.param(VM("web-2", mac="AA:BB:CC:DD:EE:01"), MACConflictError, id="mac-upper"),
        pytest.param(VM("web-2", mac="aA:Bb:cC:dD:eE:01"), MACConflictError, id="mac-mixed"),
        pytest.param(VM("new-1", ip="192.168.5.3"), IPConflictError, id="ip-new-cluster"),
        pytest.param(VM("web-1"), VMExistsError, id="name"),
    ],
)
def test_create_conflict_writes_nothing(
    store: Store, root: Path, two_members: tuple[VM, VM], vm: VM, error: type[FleetboxError]
) -> None:
    before = tree(root)
    with pytest.raises(error) as info:
        store.create(vm)
    assert info.value.name == vm.name
    assert tree(root) == before
    assert reservation_rows(root) == []


@pytest.mark.parametrize(
    ("vm", "error"),
    [
        pytest.param(VM("web-2", mac="aa:bb:cc:dd:ee:01"), MACConflictError, id="mac"),
        pytest.param(VM("web-2", mac="AA:BB:CC:DD:EE:02"), MACConflictError, id="mac-upper"),
        pytest.param(VM("web-1"), VMExistsError, id="name"),
    ],
)
def test_create_with_subnet_conflict_rolls_back_the_allocation(
    store: Store, root: Path, two_members: tuple[VM, VM], vm: VM, error: type[FleetboxError]
) -> None:
    before = tree(root)
    with pytest.raises(error):
        store.create(vm, subnet=SUBNET)
    assert tree(root) == before
    assert reservation_rows(root) == []
    assert store.free_ips(SUBNET, limit=1) == [ip(SUBNET, 4)]


def test_generated_mac_conflict_is_refused(store: Store, root: Path) -> None:
    store.create(VM("web-1", mac=generate_mac("db-1")))
    before = tree(root)
    with pytest.raises(MACConflictError):
        store.create(VM("db-1"))
    assert tree(root) == before


def test_mac_written_upper_case_on_disk_conflicts(store: Store, root: Path) -> None:
    put_config(root, "web-1", mac="AA:BB:CC:DD:EE:FF")
    with pytest.raises(MACConflictError):
        store.create(VM("db-1", mac="aa:bb:cc:dd:ee:ff"))
    assert store.who_has("aa:bb:cc:dd:ee:ff") == "web-1"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        pytest.param({"ip": "192.168.5.2"}, IPConflictError, id="ip"),
        pytest.param({"mac": "AA:BB:CC:DD:EE:01"}, MACConflictError, id="mac-upper"),
        pytest.param({"mac": "aa:bb:cc:dd:ee:01"}, MACConflictError, id="mac"),
    ],
)
def test_save_conflict_writes_nothing(
    store: Store,
    root: Path,
    two_members: tuple[VM, VM],
    change: dict[str, Any],
    error: type[FleetboxError],
) -> None:
    before = tree(root)
    with pytest.raises(error):
        store.save(replace(store.load("db-1"), **change))
    assert tree(root) == before
    assert store.load("db-1").ip == "192.168.5.3"


def test_save_to_an_address_reserved_by_another_name(store: Store, root: Path) -> None:
    store.create(VM("web-1"), subnet=SUBNET)
    reserved = store.allocate_ip("web-2", SUBNET)
    before = tree(root)
    with pytest.raises(IPConflictError):
        store.save(replace(store.load("web-1"), ip=reserved))
    assert tree(root) == before


def test_save_moving_to_a_free_address_frees_the_old_one(
    store: Store, two_members: tuple[VM, VM]
) -> None:
    store.save(replace(store.load("db-1"), ip=ip(SUBNET, 9)))
    assert store.free_ips(SUBNET, limit=2) == [ip(SUBNET, 3), ip(SUBNET, 4)]
    assert store.who_has(ip(SUBNET, 9)) == "db-1"
    assert store.who_has(ip(SUBNET, 3)) is None


def test_save_unchanged_is_not_a_conflict_with_itself(
    store: Store, two_members: tuple[VM, VM]
) -> None:
    vm = store.load("web-1")
    store.save(replace(vm, cpus=8, mac=vm.mac.upper()))
    assert store.load("web-1").mac == vm.mac


# -- malformed input: typed errors before anything is written ------------------------------

BAD_CIDRS = [
    pytest.param("10.0.0.0/33", id="prefix-33"),
    pytest.param("nonsense", id="nonsense"),
    pytest.param("", id="empty"),
    pytest.param("10.0.0.0", id="no-prefix"),
    pytest.param("10.0.0.0/", id="empty-prefix"),
    pytest.param("/24", id="no-address"),
    pytest.param("10.0.0.0/-1", id="negative-prefix"),
    pytest.param("300.0.0.0/24", id="octet-300"),
    pytest.param("10.0.0.010/24", id="leading-zero"),
    pytest.param("10.0.0/24", id="three-octets"),
    pytest.param("10.0.0.0/24/8", id="two-slashes"),
    pytest.param(" 10.0.0.0/24", id="space"),
    pytest.param("fd00::/64", id="ipv6"),
]

BAD_IPS = [
    pytest.param("300.1.1.1", id="octet-300"),
    pytest.param("10.0.0", id="three-octets"),
    pytest.param("10.0.0.010", id="leading-zero"),
    pytest.param("010.0.0.1", id="leading-zero-first"),
    pytest.param("10.0.0.1.2", id="five-octets"),
    pytest.param("10.0.0.1 ", id="trailing-space"),
    pytest.param("10.0.0.-1", id="negative"),
    pytest.param("10.0.0.0x1", id="hex"),
    pytest.param("10.0.0.\u0661", id="arabic-digit"),
    pytest.param("10.0.0.1/24", id="cidr"),
    pytest.param("::1", id="ipv6"),
]


@pytest.fixture
def settled(store: Store, root: Path) -> Store:
    """A store with one member and one reservation, to show nothing changes on bad input."""
    store.create(VM("web-1"), subnet=SUBNET)
    store.allocate_ip("db-1", SUBNET)
    return store


def assert_unchanged(root: Path, action: object, *args: object, **kwargs: object) -> None:
    before = tree(root), reservation_rows(root)
    with pytest.raises(InvalidValueError) as info:
        action(*args, **kwargs)  # type: ignore[operator]
    assert isinstance(info.value, ValueError)
    assert (tree(root), reservation_rows(root)) == before


@pytest.mark.parametrize("cidr", BAD_CIDRS)
def test_bad_cidr_is_refused_everywhere(settled: Store, root: Path, cidr: str) -> None:
    assert_unchanged(root, settled.free_ips, cidr)
    assert_unchanged(root, settled.allocate_ip, "web-2", cidr)
    assert_unchanged(root, settled.create, VM("web-2"), subnet=cidr)
    assert_unchanged(root, settled.create, VM("web-2", ip="10.0.0.2"), subnet=cidr)


@pytest.mark.parametrize("bad", BAD_IPS)
def test_bad_ip_is_refused_everywhere(settled: Store, root: Path, bad: str) -> None:
    assert_unchanged(root, settled.create, VM("web-2", ip=bad))
    assert_unchanged(root, settled.create, VM("web-2", ip=bad), subnet=SUBNET)
    assert_unchanged(root, settled.save, replace(settled.load("web-1"), ip=bad))
    assert_unchanged(root, settled.who_has, bad)


@pytest.mark.parametrize(
    "outside",
    [
        pytest.param("10.0.1.5", id="other-subnet"),
        pytest.param("192.168.5.0", id="network"),
        pytest.param("192.168.5.1", id="gateway"),
        pytest.param("192.168.5.255", id="broadcast"),
    ],
)
def test_ip_outside_the_requested_subnet_is_refused(
    settled: Store, root: Path, outside: str
) -> None:
    assert_unchanged(root, settled.create, VM("web-2", ip=outside), subnet=SUBNET)


def test_bad_input_on_a_fresh_root_creates_no_index(root: Path) -> None:
    with Store.open(root) as store:
        for action in (
            lambda: store.free_ips("10.0.0.0/33"),
            lambda: store.allocate_ip("a", "nonsense"),
            lambda: store.create(VM("a", ip="10.0.0.010")),
            lambda: store.who_has("300.1.1.1"),
        ):
            with pytest.raises(InvalidValueError):
                action()
    assert sorted(p.name for p in root.iterdir()) == ["clusters", "images", "run"]
    assert list((root / "clusters").iterdir()) == []


@pytest.mark.parametrize(
    "subnet",
    [
        pytest.param(None, id="none"),
        pytest.param(24, id="int"),
        pytest.param(b"10.0.0.0/24", id="bytes"),
    ],
)
def test_subnet_that_is_not_a_string_is_invalid(settled: Store, root: Path, subnet: object) -> None:
    assert_unchanged(root, settled.free_ips, subnet)
    assert_unchanged(root, settled.allocate_ip, "web-2", subnet)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\0b", "x" * 256])
def test_allocate_ip_refuses_a_bad_name(settled: Store, root: Path, name: str) -> None:
    before = tree(root), reservation_rows(root)
    with pytest.raises(InvalidNameError):
        settled.allocate_ip(name, SUBNET)
    assert (tree(root), reservation_rows(root)) == before


def test_create_into_a_configless_dir_allocates(store: Store, root: Path) -> None:
    store.ensure_dir("web-1")
    assert store.create(VM("web-1"), subnet=SUBNET).ip == ip(SUBNET, 2)
    assert reservation_rows(root) == []


def test_failed_create_leaves_an_existing_configless_dir(store: Store, root: Path) -> None:
    store.create(VM("db-1"), subnet=SUBNET)
    store.ensure_dir("web-1")
    before = tree(root)
    with pytest.raises(IPConflictError):
        store.create(VM("web-1", ip=ip(SUBNET, 2)))
    assert tree(root) == before
    assert store.list() == ["db-1", "web-1"]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("aa-bb-cc-dd-ee-ff", id="dashes"),
        pytest.param("aa:bb:cc:dd:ee", id="five-groups"),
        pytest.param("aa:bb:cc:dd:ee:f", id="short-group"),
        pytest.param("aa:bb:cc:dd:ee:gg", id="not-hex"),
    ],
)
def test_bad_mac_is_refused(settled: Store, root: Path, bad: str) -> None:
    assert_unchanged(root, settled.create, VM("web-2", mac=bad))
    assert_unchanged(root, settled.who_has, bad)


# -- conflicts found on disk -----------------------------------------------------------------


def test_cp_r_member_dir_is_a_conflict_reported_and_never_offered(store: Store, root: Path) -> None:
    vm = store.create(VM("web-1"), subnet=SUBNET)
    store.create(VM("web-3"), subnet=SUBNET)
    subprocess.run(["cp", "-r", str(store.vm_dir("web-1")), str(store.vm_dir("web-2"))], check=True)
    before = tree(root)

    report = store.reconcile()
    assert report.added == ["web-2"]
    assert report.conflicts == [
        Conflict("ip", vm.ip, ("web-1", "web-2")),
        Conflict("mac", vm.mac, ("web-1", "web-2")),
    ]
    problems = [(p.kind, p.members, p.value) for p in store.check()]
    assert ("conflict", ("web-1", "web-2"), vm.ip) in problems
    assert ("conflict", ("web-1", "web-2"), vm.mac) in problems
    assert all(vm.ip in str(p) for p in store.check() if p.value == vm.ip)

    assert vm.ip not in store.free_ips(SUBNET)
    assert store.free_ips(SUBNET, limit=1) == [ip(SUBNET, 4)]
    assert store.allocate_ip("web-4", SUBNET) == ip(SUBNET, 4)
    with pytest.raises(IPConflictError):
        store.create(VM("web-5", ip=vm.ip))
    assert store.who_has(vm.ip) in ("web-1", "web-2")
    # A conflict changes and deletes nothing on disk.
    assert store.list() == ["web-1", "web-2", "web-3"]
    assert store.reconcile(full=True).conflicts == report.conflicts
    assert tree(root) == before


def test_conflict_is_resolved_by_fixing_one_side(store: Store, root: Path) -> None:
    vm = store.create(VM("web-1"), subnet=SUBNET)
    subprocess.run(["cp", "-r", str(store.vm_dir("web-1")), str(store.vm_dir("web-2"))], check=True)
    assert len(store.reconcile().conflicts) == 2
    # Decision: while in conflict, saving either side with the shared values is refused.
    with pytest.raises(IPConflictError):
        store.save(replace(store.load("web-1"), cpus=4))
    # The copy's config still says "name": "web-1"; save() writes where vm.name points.
    copy = replace(store.load("web-2"), name="web-2", ip=ip(SUBNET, 3), mac=generate_mac("web-2"))
    store.save(copy)
    assert store.reconcile().conflicts == []
    assert [p for p in store.check() if p.kind == "conflict"] == []
    assert store.free_ips(SUBNET, limit=1) == [ip(SUBNET, 4)]
    store.save(replace(store.load("web-1"), cpus=4))
    assert store.who_has(vm.ip) == "web-1"


def test_conflict_with_a_stray_copy(store: Store, root: Path) -> None:
    vm = store.create(VM("web-1"), subnet=SUBNET)
    stray = root / "clusters" / "db" / "web-1"
    stray.parent.mkdir()
    subprocess.run(["cp", "-r", str(store.vm_dir("web-1")), str(stray)], check=True)
    conflicts = store.reconcile().conflicts
    assert [(c.kind, c.value) for c in conflicts] == [("ip", vm.ip), ("mac", vm.mac)]
    assert vm.ip not in store.free_ips(SUBNET)
    assert {p.kind for p in store.check()} == {"conflict", "stray"}


# -- who_has ---------------------------------------------------------------------------------


def test_who_has(store: Store) -> None:
    vm = store.create(VM("web-1", mac="aa:bb:cc:dd:ee:0a"), subnet=SUBNET)
    assert store.who_has(vm.ip) == "web-1"
    assert store.who_has("aa:bb:cc:dd:ee:0a") == "web-1"
    assert store.who_has("AA:BB:CC:DD:EE:0A") == "web-1"
    assert store.who_has(ip(SUBNET, 3)) is None
    assert store.who_has("aa:bb:cc:dd:ee:0b") is None


def test_who_has_a_reserved_ip_is_the_reserving_name(store: Store) -> None:
    """Documented: a live reservation answers with the name it was made for."""
    reserved = store.allocate_ip("web-7", SUBNET)
    assert store.who_has(reserved) == "web-7"


def test_who_has_after_delete_is_none(store: Store) -> None:
    vm = store.create(VM("web-1"), subnet=SUBNET)
    store.delete("web-1")
    assert store.who_has(vm.ip) is None
    assert store.who_has(vm.mac) is None
    assert store.free_ips(SUBNET, limit=1) == [vm.ip]


# -- reservations whose owner is gone (this process's leases, ended) -------------------------


def lease_files(root: Path) -> list[Path]:
    """The lease files (owners' lock files, in .owners, aside)."""
    return sorted(p for p in (root / "leases").iterdir() if p.name != ".owners")


def end_lease(root: Path, how: str) -> None:
    """The owner's lease dies: its lock released (as the owner's exit does), or its file
    removed by hand."""
    if how == "lock-released":
        drop_lease_locks()
    else:
        for lease in lease_files(root):
            lease.unlink()
        drop_lease_locks()


@pytest.mark.parametrize("how", ["lock-released", "file-removed"])
def test_reservation_of_a_dead_owner_is_released(store: Store, root: Path, how: str) -> None:
    reserved = store.allocate_ip("web-1", SUBNET)
    assert store.reconcile().released == []
    assert [p.name for p in lease_files(root)] == [reserved]
    end_lease(root, how)
    assert store.reconcile().released == ["web-1"]
    assert reservation_rows(root) == []
    assert lease_files(root) == []  # the dead file is removed too
    assert store.free_ips(SUBNET, limit=1) == [reserved]


def test_allocate_skips_a_reservation_overtaken_on_disk(store: Store, root: Path) -> None:
    assert store.allocate_ip("web-1", SUBNET) == ip(SUBNET, 2)
    put_config(root, "db-1", ip=ip(SUBNET, 2))  # written without asking us
    assert store.free_ips(SUBNET, limit=1) == [ip(SUBNET, 3)]
    assert store.who_has(ip(SUBNET, 2)) == "db-1"
    # The lowest free address, as §7 says; not one a member's config holds.
    assert store.allocate_ip("web-1", SUBNET) == ip(SUBNET, 3)


def test_create_skips_a_reservation_overtaken_on_disk(store: Store, root: Path) -> None:
    assert store.allocate_ip("web-1", SUBNET) == ip(SUBNET, 2)
    put_config(root, "db-1", ip=ip(SUBNET, 2))
    assert store.create(VM("web-1"), subnet=SUBNET).ip == ip(SUBNET, 3)
    assert reservation_rows(root) == []


def test_dead_reservation_is_released_before_allocating(store: Store, root: Path) -> None:
    store.allocate_ip("web-1", SUBNET)
    end_lease(root, "lock-released")
    assert store.allocate_ip("web-2", SUBNET) == ip(SUBNET, 2)
    assert reservation_rows(root) == [("web-2", SUBNET, ip(SUBNET, 2))]


def test_dead_reservation_is_no_conflict_for_create(store: Store, root: Path) -> None:
    reserved = store.allocate_ip("web-1", SUBNET)
    end_lease(root, "lock-released")
    assert store.create(VM("db-1", ip=reserved)).ip == reserved


def test_delete_releases_the_names_reservations(store: Store, root: Path) -> None:
    store.ensure_dir("web-1")
    store.allocate_ip("web-1", SUBNET)
    store.delete("web-1")
    assert reservation_rows(root) == []


# -- free_ips against a brute-force oracle -------------------------------------------------


@st.composite
def allocation_cases(draw: st.DrawFn) -> tuple[str, list[int], list[int], int, int | None]:
    """(subnet, offsets held by configs, offsets held twice, reservations, limit)."""
    prefix = draw(st.integers(20, 32))
    size = 1 << (32 - prefix)
    network = draw(st.integers(0, (1 << 32) - 1)) & ~(size - 1) & 0xFFFFFFFF
    subnet = f"{ipaddress.IPv4Address(network)}/{prefix}"
    # Mostly low offsets, so that small subnets fill up and gaps sit near the front;
    # -2..size+1 also puts members just outside the subnet and on network/gateway/broadcast.
    offset = st.one_of(st.integers(-2, min(size + 1, 20)), st.integers(-2, size + 1))
    offsets = draw(st.lists(offset, max_size=14, unique=True))
    offsets = [o for o in offsets if 0 <= network + o <= 0xFFFFFFFF]
    doubled = draw(st.lists(st.sampled_from(offsets), max_size=2, unique=True)) if offsets else []
    reservations = draw(st.integers(0, 3))
    limit = draw(st.one_of(st.none(), st.integers(0, 12)))
    return subnet, offsets, doubled, reservations, limit


@settings(
    max_examples=100 if STRESS else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=allocation_cases())
def test_free_ips_matches_brute_force(
    case: tuple[str, list[int], list[int], int, int | None],
) -> None:
    subnet, offsets, doubled, reservations, limit = case
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "root") as store:
        root = Path(tmp) / "root"
        taken: set[str] = set()
        for i, offset in enumerate(offsets):
            address = ip(subnet, offset)
            taken.add(address)
            if i % 3 == 0:
                store.create(VM(f"web-{i}", ip=address))  # through the Store
            elif i % 3 == 1:
                put_config(root, f"db-{i}", ip=address)  # as Go writes it
            else:
                put_config(root, f"db-{i}", ip=address, cluster="stray")
        for i, offset in enumerate(doubled):
            put_config(root, f"dup-{i}", ip=ip(subnet, offset))
        for i in range(reservations):
            expected = oracle(subnet, taken, 1)
            if not expected:
                with pytest.raises(SubnetExhaustedError):
                    store.allocate_ip(f"res-{i}", subnet)
                break
            assert store.allocate_ip(f"res-{i}", subnet) == expected[0]
            taken.add(expected[0])
        assert store.free_ips(subnet, limit=limit) == oracle(subnet, taken, limit)
        assert store.free_ips(subnet) == oracle(subnet, taken)
        assert list(store.iter_free_ips(subnet)) == oracle(subnet, taken)


# -- a big subnet ------------------------------------------------------------------------------


@pytest.fixture
def fast_root(tmp_path: Path) -> Iterator[Path]:
    """A root on tmpfs when there is one: 20,000 mkdirs on a busy disk cost more than the
    whole rest of this file, and what is measured here is the index, not the disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path / "fleetbox"
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="fleetbox-test-") as tmp:
        yield Path(tmp) / "fleetbox"


def write_many(cluster: Path, names_and_ips: Iterable[tuple[str, str]]) -> None:
    """Write Go-format configs fast: one encoded template, three fields swapped in."""
    template = encode_config(VM("NAME", mac="MAC", ip="IP", created_at=FIXED_TIME))
    cluster.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for name, address in names_and_ips:
        data = (
            template.replace(b'"NAME"', f'"{name}"'.encode())
            .replace(b'"MAC"', f'"{generate_mac(name)}"'.encode())
            .replace(b'"IP"', f'"{address}"'.encode())
        )
        member = f"{cluster}/{name}"
        os.mkdir(member)
        fd = os.open(f"{member}/config.json", flags, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


@pytest.mark.slow
def test_big_subnet_with_20000_members(fast_root: Path) -> None:
    """free_ips(limit=10) of a /16 with ~20,000 members is right (never timed here)."""
    root = fast_root
    subnet = "10.20.0.0/16"
    count = 20_000
    first = int(ipaddress.IPv4Address("10.20.0.2"))
    holes = {7, 1234, 15_000, count - 1}
    members = [
        (f"big-{i}", str(ipaddress.IPv4Address(first + i))) for i in range(count) if i not in holes
    ]
    write_many(root / "clusters" / "big", members)
    taken = {address for _, address in members}
    assert decode_config((root / "clusters/big/big-0/config.json").read_bytes()).ip == "10.20.0.2"
    # A few taken above the block, one of them twice.
    for i, offset in enumerate((count + 3, count + 5, count + 5)):
        address = str(ipaddress.IPv4Address(first + offset))
        put_config(root, f"top-{i}", ip=address)
        taken.add(address)
    expected = oracle(subnet, taken, 10)
    assert expected[:4] == [str(ipaddress.IPv4Address(first + h)) for h in sorted(holes)]

    with Store.open(root) as store:
        assert store.free_ips(subnet, limit=10) == expected
        assert store.allocate_ip("web-1", subnet) == expected[0]
        assert store.create(VM("web-2"), subnet=subnet).ip == expected[1]
        assert store.free_ips(subnet, limit=8) == expected[2:]
        doubled = str(ipaddress.IPv4Address(first + count + 5))
        assert store.reconcile().conflicts == [Conflict("ip", doubled, ("top-1", "top-2"))]
        assert len(store.list()) == count - len(holes) + 4
