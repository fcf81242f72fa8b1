"""The index and disk alone answer every question the same way.

Store._ask picks IndexAnswers (SQL over a reconciled index) or DiskAnswers (every config
read now) in one place; both implement the conflict rule (rules.ipam.conflicts_among, in
SQL for the index) and every other question. On random trees written as the Go tool
writes them - strays, unreadable and configless members, shared and case-folded MACs,
shared IPs - the two must agree exactly.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from helpers import later, put
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetbox_db import Store, cluster_name
from fleetbox_db.disk.fallback import DiskAnswers
from fleetbox_db.disk.scan import scan
from fleetbox_db.index.answers import free_ranges as index_free_ranges
from fleetbox_db.rules.ipam import (
    addresses,
    conflicts_among,
    format_ipv4,
    ip_or_mac,
    parse_subnet,
)
from fleetbox_db.rules.ipam import free_ranges as pure_free_ranges

NAMES = ["web-1", "web-2", "db-1", "db", "cache-10"]
IPS = ["", "10.0.0.2", "10.0.0.3", "10.0.0.010", "nonsense"]
MACS = ["", "02:00:00:00:00:01", "02:00:00:00:00:0A", "02:00:00:00:00:0a"]

member = st.tuples(
    st.sampled_from(NAMES),
    st.sampled_from(IPS),
    st.sampled_from(MACS),
    st.sampled_from(["own", "stray", "unreadable", "unreadable-stray", "configless"]),
)


def build(root: Path, members: list[tuple[str, str, str, str]]) -> None:
    for name, ip, mac, how in members:
        if how == "configless":
            (root / "clusters" / cluster_name(name) / name).mkdir(parents=True, exist_ok=True)
        elif how == "unreadable":
            put(root, name, data=b"{")
        elif how == "unreadable-stray":
            put(root, name, data=b'{"cpus": "2"}', cluster="strays")
        else:
            put(root, name, ip, mac, cluster="strays" if how == "stray" else None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(member, max_size=8))
def test_index_and_disk_answer_alike(members: list[tuple[str, str, str, str]]) -> None:
    top = Path(tempfile.mkdtemp())
    try:
        root = top / "fleetbox"
        build(root, members)
        with Store.open(root, clock=later) as store:
            disk = DiskAnswers(store.clusters_dir, scan(store.clusters_dir), time.time_ns)
            net = parse_subnet("10.0.0.0/29")
            assert store.list() == [m.name for m in disk.scan.members]
            assert store.vms() == disk.vms()
            assert store.entries() == disk.entries()
            assert store.entries("web") == disk.entries("web")
            assert store.members("web") == disk.member_names("web")
            free = [format_ipv4(i) for i in addresses(disk.free_ranges(net, None))]
            assert store.free_ips(net.text) == free
            for value in ("10.0.0.2", "10.0.0.3", "02:00:00:00:00:0a", "02:00:00:00:00:01"):
                assert store.who_has(value) == disk.who_has(*ip_or_mac(value)), value
                assert store.holders(value) == disk.holders(*ip_or_mac(value)), value
            # The SQL conflict rule is the pure one over every readable config, strays too.
            claims = [(e.name, e.vm) for e in disk.entries() if e.vm is not None]
            assert store.reconcile().conflicts == conflicts_among(claims)
    finally:
        shutil.rmtree(top)


#: Offsets from a subnet's start (its network address): its first hosts, and from its end.
NEAR_START = st.integers(-2, 5)
NEAR_END = st.integers(-4, 2).map(lambda d: ("end", d))
OFFSETS = st.lists(NEAR_START | NEAR_END | st.integers(0, 260), max_size=30)


@settings(max_examples=400, deadline=None)
@given(
    prefix=st.integers(24, 32),
    members_at=OFFSETS,
    reserved_at=OFFSETS.map(lambda xs: xs[:10]),
    limit=st.none() | st.integers(-1, 12),
)
def test_free_ranges_in_sql_are_the_pure_rule(
    prefix: int,
    members_at: list[int | tuple[str, int]],
    reserved_at: list[int | tuple[str, int]],
    limit: int | None,
) -> None:
    """The index's gaps (the limited query finds gap starts with the ip_int indexes, each
    end with one lookup) are rules.ipam's over the same addresses: duplicates, addresses
    outside the subnet, the gateway and both ends taken or not."""
    net = parse_subnet(f"10.0.0.0/{prefix}")

    def address(at: int | tuple[str, int]) -> int:
        return net.broadcast + at[1] if isinstance(at, tuple) else net.network + at

    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("CREATE TABLE members (id INTEGER PRIMARY KEY, ip_int INTEGER)")
        conn.execute("CREATE TABLE reservations (id INTEGER PRIMARY KEY, ip_int INTEGER)")
        conn.execute("CREATE INDEX m_ip ON members (ip_int)")
        conn.execute("CREATE INDEX r_ip ON reservations (ip_int)")
        conn.executemany(
            "INSERT INTO members (ip_int) VALUES (?)", [(address(a),) for a in members_at]
        )
        conn.executemany(
            "INSERT INTO reservations (ip_int) VALUES (?)", [(address(a),) for a in reserved_at]
        )
        conn.execute("INSERT INTO members (ip_int) VALUES (NULL)")  # a member without an IP
        expected = pure_free_ranges(net, [address(a) for a in members_at + reserved_at])
        found = index_free_ranges(conn, net, limit)
    if limit is None:
        assert found == expected
    else:
        assert found == expected[: max(limit, 0)]
