"""Subnet math, the free-address reference and Go-compatible MACs."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetbox_db.errors import InvalidNameError, InvalidValueError
from fleetbox_db.rules.ipam import (
    Subnet,
    addresses,
    format_ipv4,
    free_ranges,
    generate_mac,
    normalize_mac,
    parse_ipv4,
    parse_subnet,
)

# --- parse_ipv4 / format_ipv4 ------------------------------------------------------------

VALID_IPS = [
    ("0.0.0.0", 0),
    ("10.0.0.8", 0x0A000008),
    ("10.0.0.10", 0x0A00000A),
    ("192.168.0.2", 0xC0A80002),
    ("255.255.255.255", 0xFFFFFFFF),
    ("1.20.100.200", 0x011464C8),
]


@pytest.mark.parametrize(("text", "value"), [pytest.param(t, v, id=t) for t, v in VALID_IPS])
def test_parse_ipv4_valid(text: str, value: int) -> None:
    assert parse_ipv4(text) == value
    assert format_ipv4(value) == text


INVALID_IPS = [
    pytest.param("300.1.1.1", id="octet-over-255"),
    pytest.param("256.0.0.0", id="octet-256"),
    pytest.param("10.0.0", id="three-parts"),
    pytest.param("1.2.3.4.5", id="five-parts"),
    pytest.param("10.0.0.010", id="leading-zero-octal-trap"),
    pytest.param("01.2.3.4", id="leading-zero-first"),
    pytest.param("1.2.3.00", id="double-zero"),
    pytest.param("1.2.3.0001", id="long-zero-padded"),
    pytest.param(" 1.2.3.4", id="leading-space"),
    pytest.param("1.2.3.4 ", id="trailing-space"),
    pytest.param("1.2.3.4\n", id="trailing-newline"),
    pytest.param("1. 2.3.4", id="inner-space"),
    pytest.param("\u0661.2.3.4", id="arabic-indic-digit"),
    pytest.param("\uff11.2.3.4", id="fullwidth-digit"),
    pytest.param("", id="empty"),
    pytest.param("+1.2.3.4", id="plus-sign"),
    pytest.param("-1.2.3.4", id="minus-sign"),
    pytest.param("1..3.4", id="empty-part"),
    pytest.param("1.2.3.", id="trailing-dot"),
    pytest.param("1_0.2.3.4", id="underscore"),
    pytest.param("0x0a.0.0.1", id="hex"),
    pytest.param("167772161", id="single-integer"),
    pytest.param("10.0.0.0/24", id="cidr"),
    pytest.param("::1", id="ipv6"),
]


@pytest.mark.parametrize("text", INVALID_IPS)
def test_parse_ipv4_invalid(text: str) -> None:
    with pytest.raises(InvalidValueError, match="expected four decimal numbers") as info:
        parse_ipv4(text)
    assert info.value.value == text


def test_parse_ipv4_non_str() -> None:
    with pytest.raises(InvalidValueError):
        parse_ipv4(167772161)  # type: ignore[arg-type]


@given(st.integers(0, 2**32 - 1))
def test_ipv4_round_trip_matches_stdlib(value: int) -> None:
    text = format_ipv4(value)
    assert text == str(ipaddress.IPv4Address(value))
    assert parse_ipv4(text) == value


@pytest.mark.parametrize("value", [-1, 2**32, True, 1.0, "1"])
def test_format_ipv4_out_of_range(value: object) -> None:
    with pytest.raises(InvalidValueError):
        format_ipv4(value)  # type: ignore[arg-type]


# --- Subnet / parse_subnet ---------------------------------------------------------------


def ip(text: str) -> int:
    return parse_ipv4(text)


def free_hosts(subnet: Subnet, taken: list[int], limit: int | None = None) -> list[int]:
    """What Store.free_ips makes of the free ranges: the addresses, at most *limit*."""
    return list(addresses(free_ranges(subnet, taken), limit))


def test_subnet_slash_24() -> None:
    s = parse_subnet("192.168.5.0/24")
    assert s == Subnet(ip("192.168.5.0"), 24)
    assert s.text == str(s) == "192.168.5.0/24"
    assert s.first_host == ip("192.168.5.2")
    assert s.last_host == ip("192.168.5.254")
    assert s.broadcast == ip("192.168.5.255")
    assert s.size_hosts == 253
    assert ip("192.168.5.0") in s
    assert ip("192.168.5.255") in s
    assert ip("192.168.6.0") not in s
    assert ip("192.168.4.255") not in s
    assert not s.is_host(ip("192.168.5.1"))  # the gateway
    assert not s.is_host(s.broadcast)
    assert s.is_host(ip("192.168.5.2"))
    assert s.is_host(ip("192.168.5.254"))


@pytest.mark.parametrize(
    ("text", "canonical", "netmask", "hosts"),
    [
        pytest.param(
            "192.168.5.0/30",
            "192.168.5.0/30",
            "255.255.255.252",
            ["192.168.5.2"],
            id="slash30-one-host",
        ),
        pytest.param("192.168.5.0/31", "192.168.5.0/31", "255.255.255.254", [], id="slash31"),
        pytest.param("192.168.5.9/32", "192.168.5.9/32", "255.255.255.255", [], id="slash32"),
        pytest.param(
            "192.168.5.7/24", "192.168.5.0/24", "255.255.255.0", None, id="host-bits-normalised"
        ),
        pytest.param("10.1.2.3/8", "10.0.0.0/8", "255.0.0.0", None, id="slash8"),
        pytest.param("1.2.3.4/0", "0.0.0.0/0", "0.0.0.0", None, id="slash0"),
        pytest.param("0.0.0.0/0", "0.0.0.0/0", "0.0.0.0", None, id="slash0-canonical"),
        pytest.param(
            "10.0.0.0/29",
            "10.0.0.0/29",
            "255.255.255.248",
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"],
            id="slash29",
        ),
    ],
)
def test_parse_subnet_valid(
    text: str, canonical: str, netmask: str, hosts: list[str] | None
) -> None:
    subnet = parse_subnet(text)
    assert subnet.text == canonical
    assert str(ipaddress.IPv4Network(subnet.text).netmask) == netmask
    net = ipaddress.IPv4Network(text, strict=False)
    assert subnet.network == int(net.network_address)
    assert subnet.broadcast == int(net.broadcast_address)
    if hosts is not None:
        assert [format_ipv4(h) for h in free_hosts(subnet, [])] == hosts
        assert subnet.size_hosts == len(hosts)


def test_slash0_sizes() -> None:
    subnet = parse_subnet("0.0.0.0/0")
    assert subnet.size_hosts == 2**32 - 3
    assert free_hosts(subnet, [2, 4], limit=3) == [3, 5, 6]


INVALID_SUBNETS = [
    pytest.param("10.0.0.0/33", id="prefix-33"),
    pytest.param("10.0.0.0/100", id="prefix-100"),
    pytest.param("nonsense", id="nonsense"),
    pytest.param("10.0.0.0", id="no-prefix"),
    pytest.param("10.0.0.0/", id="empty-prefix"),
    pytest.param("/24", id="no-address"),
    pytest.param("", id="empty"),
    pytest.param("10.0.0.0/024", id="prefix-leading-zero"),
    pytest.param("10.0.0.0/00", id="prefix-double-zero"),
    pytest.param("10.0.0.0/-1", id="prefix-negative"),
    pytest.param("10.0.0.0/+8", id="prefix-plus"),
    pytest.param("10.0.0.0/\u0662\u0664", id="prefix-unicode-digits"),
    pytest.param("10.0.0.0/24 ", id="trailing-space"),
    pytest.param(" 10.0.0.0/24", id="leading-space"),
    pytest.param("10.0.0.0/24/24", id="two-slashes"),
    pytest.param("10.0.0.010/24", id="address-leading-zero"),
    pytest.param("300.0.0.0/8", id="address-out-of-range"),
    pytest.param("10.0.0.0/255.255.255.0", id="netmask-form"),
]


@pytest.mark.parametrize("text", INVALID_SUBNETS)
def test_parse_subnet_invalid(text: str) -> None:
    with pytest.raises(InvalidValueError, match="invalid subnet") as info:
        parse_subnet(text)
    assert info.value.value == text


@pytest.mark.parametrize(
    ("network", "prefix"),
    [
        pytest.param(ip("10.0.0.1"), 24, id="host-bits"),
        pytest.param(0, 33, id="prefix-too-long"),
        pytest.param(0, -1, id="prefix-negative"),
        pytest.param(2**32, 0, id="network-too-big"),
        pytest.param(-1, 0, id="network-negative"),
    ],
)
def test_subnet_constructor_is_strict(network: int, prefix: int) -> None:
    with pytest.raises(InvalidValueError):
        Subnet(network, prefix)


def test_subnet_contains_refuses_strings() -> None:
    with pytest.raises(TypeError):
        assert "10.0.0.5" in parse_subnet("10.0.0.0/24")  # type: ignore[operator]


# --- free addresses --------------------------------------------------------------------------


def test_free_hosts_go_allocator_cases() -> None:
    """The historical ipalloc_test.go cases, expressed on the pure helper."""
    subnet = parse_subnet("192.168.5.0/24")
    assert free_hosts(subnet, [], limit=1) == [ip("192.168.5.2")]
    assert free_hosts(subnet, [ip("192.168.5.2")], limit=1) == [ip("192.168.5.3")]
    other = [ip("192.168.5.2"), ip("192.168.9.7")]
    assert free_hosts(subnet, other, limit=1) == [ip("192.168.5.3")]
    small = parse_subnet("192.168.5.0/30")
    assert free_hosts(small, []) == [ip("192.168.5.2")]
    assert free_hosts(small, [ip("192.168.5.2")]) == []


def test_free_hosts_limit_edges() -> None:
    subnet = parse_subnet("10.0.0.0/24")
    assert free_hosts(subnet, [], limit=0) == []
    assert len(free_hosts(subnet, [])) == 253
    assert len(free_hosts(subnet, [], limit=1000)) == 253


def test_free_hosts_ignores_gateway_broadcast_and_duplicates() -> None:
    subnet = parse_subnet("10.0.0.0/29")
    taken = [subnet.network, subnet.network + 1, subnet.broadcast, ip("10.0.0.3"), ip("10.0.0.3")]
    assert free_hosts(subnet, taken) == [ip(f"10.0.0.{i}") for i in (2, 4, 5, 6)]


def test_free_hosts_does_not_walk_the_subnet() -> None:
    """A /8 with many taken addresses answers a limit=3 query from the gaps."""
    subnet = parse_subnet("10.0.0.0/8")
    taken = range(subnet.first_host, subnet.first_host + 100_000)
    first_free = subnet.first_host + 100_000
    assert free_hosts(subnet, taken, limit=3) == [first_free, first_free + 1, first_free + 2]
    # Only the last host is free; taken arrives as a one-shot generator.
    small = parse_subnet("10.0.0.0/16")
    everything_but_last = (a for a in range(small.first_host, small.last_host))
    assert free_hosts(small, everything_but_last, limit=2) == [small.last_host]


def oracle(subnet: Subnet, taken: set[int], limit: int | None) -> list[int]:
    free = [a for a in range(subnet.first_host, subnet.last_host + 1) if a not in taken]
    return free if limit is None else free[:limit]


@st.composite
def subnet_and_taken(draw: st.DrawFn) -> tuple[Subnet, list[int], int | None]:
    prefix = draw(st.integers(20, 32))
    address = draw(st.integers(0, 2**32 - 1))
    network = address & ((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF)
    subnet = Subnet(network, prefix)
    low, high = subnet.network - 3, subnet.broadcast + 3  # a little outside, too
    taken = draw(
        st.one_of(
            st.lists(st.integers(low, high), max_size=60),
            # Dense runs, so long stretches of taken addresses are exercised.
            st.builds(
                lambda start, length: list(range(start, start + length)),
                st.integers(low, high),
                st.integers(0, 300),
            ),
        )
    )
    limit = draw(st.one_of(st.none(), st.integers(0, 40)))
    return subnet, taken, limit


@given(subnet_and_taken())
def test_free_hosts_matches_brute_force(case: tuple[Subnet, list[int], int | None]) -> None:
    subnet, taken, limit = case
    assert free_hosts(subnet, taken, limit) == oracle(subnet, set(taken), limit)


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_subnet_math_matches_stdlib(address: int, prefix: int) -> None:
    text = f"{format_ipv4(address)}/{prefix}"
    subnet = parse_subnet(text)
    net = ipaddress.IPv4Network(text, strict=False)
    assert subnet.text == str(net)
    assert subnet.prefix == net.prefixlen
    assert subnet.broadcast == int(net.broadcast_address)
    assert address in subnet
    assert subnet.size_hosts == max(0, net.num_addresses - 3)
    assert parse_subnet(subnet.text) == subnet


# --- MACs --------------------------------------------------------------------------------

MAC_VECTORS = [
    ("dev", "12:8b:86:ed:f3:bc"),
    ("web-1", "c2:e2:65:d7:2f:93"),
    ("web-2", "52:c4:d8:6c:d9:e6"),
    ("test-vm", "fe:61:43:cb:f2:a3"),
    ("default", "be:ff:c8:93:35:54"),
    ("node", "9e:33:88:eb:23:fc"),
]


@pytest.mark.parametrize(("name", "mac"), [pytest.param(n, m, id=n) for n, m in MAC_VECTORS])
def test_generate_mac_vectors(name: str, mac: str) -> None:
    assert generate_mac(name) == mac


@given(st.text())
def test_generate_mac_is_unicast_locally_administered(name: str) -> None:
    mac = generate_mac(name)
    assert normalize_mac(mac) == mac
    first = int(mac[:2], 16)
    assert first & 0x01 == 0
    assert first & 0x02 == 0x02


def test_generate_mac_rejects_unencodable_name() -> None:
    with pytest.raises(InvalidNameError):
        generate_mac("\ud800")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("aa:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:ff", id="lower"),
        pytest.param("AA:BB:CC:DD:EE:FF", "aa:bb:cc:dd:ee:ff", id="upper"),
        pytest.param("52:54:00:0a:Bc:9F", "52:54:00:0a:bc:9f", id="mixed"),
        pytest.param("00:00:00:00:00:00", "00:00:00:00:00:00", id="zero"),
    ],
)
def test_normalize_mac_valid(text: str, expected: str) -> None:
    assert normalize_mac(text) == expected


INVALID_MACS = [
    pytest.param("", id="empty"),
    pytest.param("aa:bb:cc:dd:ee", id="five-groups"),
    pytest.param("aa:bb:cc:dd:ee:ff:00", id="seven-groups"),
    pytest.param("aa-bb-cc-dd-ee-ff", id="dashes"),
    pytest.param("aabb.ccdd.eeff", id="cisco-dots"),
    pytest.param("aabbccddeeff", id="bare-hex"),
    pytest.param("a:bb:cc:dd:ee:ff", id="one-digit-group"),
    pytest.param("aaa:bb:cc:dd:ee:ff", id="three-digit-group"),
    pytest.param("gg:bb:cc:dd:ee:ff", id="non-hex"),
    pytest.param(" aa:bb:cc:dd:ee:ff", id="leading-space"),
    pytest.param("aa:bb:cc:dd:ee:ff\n", id="trailing-newline"),
    pytest.param("aa:bb:cc:dd:ee:\uff46\uff46", id="fullwidth-hex"),
    pytest.param("aa:bb:cc:dd:ee:\u0661\u0662", id="arabic-indic-digits"),
]


@pytest.mark.parametrize("text", INVALID_MACS)
def test_normalize_mac_invalid(text: str) -> None:
    with pytest.raises(InvalidValueError, match="invalid MAC address") as info:
        normalize_mac(text)
    assert info.value.value == text
