"""Pure IPv4 subnet math, free-address search, Go-compatible MACs, and the conflict rule.

Addresses are plain ints so they compare as addresses, never as strings: ``10.0.0.010``
is refused rather than read as ``10.0.0.8`` or ``10.0.0.10``. The index answers the same
questions in SQL (fleetbox_db.index.answers); the functions here are what it must agree with.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import chain, islice
from typing import Final, NamedTuple

from fleetbox_db.errors import InvalidValueError
from fleetbox_db.records import VM, Conflict, Entry, MemberState
from fleetbox_db.rules.layout import name_bytes

__all__ = [
    "EVERY_ADDRESS",
    "Addresses",
    "Subnet",
    "addresses",
    "conflicts_among",
    "marked",
    "format_ipv4",
    "free_ranges",
    "generate_mac",
    "ip_key",
    "ip_or_mac",
    "mac_key",
    "normalize_mac",
    "optional_subnet",
    "parse_ipv4",
    "parse_subnet",
    "required_subnet",
]

MAX_IPV4: Final = 0xFFFFFFFF
MAC_PREFIX: Final = b"fleetbox:"

_DIGITS: Final = frozenset("0123456789")
# An explicit class, not \d: \d also matches non-ASCII digits.
_MAC_RE: Final = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")


def _decimal(part: str, maximum: int) -> int | None:
    """Parse a strict decimal (ASCII digits, no sign, no leading zero) up to ``maximum``."""
    if not part or len(part) > len(str(maximum)) or not all(ch in _DIGITS for ch in part):
        return None
    if len(part) > 1 and part[0] == "0":
        return None
    value = int(part)
    return value if value <= maximum else None


_OCTET: Final = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: Four 0-255 octets, ASCII digits, no leading zeros: one fullmatch is 3x faster than
#: splitting and checking each part, and parse_ipv4 runs once per config on a rebuild.
_IPV4_RE: Final = re.compile(r"\.".join([_OCTET] * 4))


def _ipv4_or_none(text: object) -> int | None:
    """The strict dotted-quad parse behind parse_ipv4; None instead of raising."""
    if not isinstance(text, str):
        return None
    match = _IPV4_RE.fullmatch(text)
    if match is None:
        return None
    a, b, c, d = match.groups()
    return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)


def parse_ipv4(text: str) -> int:
    """Parse a strict dotted-quad IPv4 address to an int.

    Exactly four decimal parts 0-255, ASCII digits only, no leading zeros, no whitespace.
    Leading zeros are refused because other tools read them as octal. Raises
    InvalidValueError naming the input.
    """
    value = _ipv4_or_none(text)
    if value is None:
        raise InvalidValueError(
            f"invalid IPv4 address {text!r}: expected four decimal numbers 0-255 joined by "
            "'.', without leading zeros or spaces, like 192.168.0.2",
            value=text if isinstance(text, str) else repr(text),
        )
    return value


def format_ipv4(value: int) -> str:
    """Format an int as a dotted quad; raises InvalidValueError outside 0..2**32-1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_IPV4:
        raise InvalidValueError(
            f"invalid IPv4 address value {value!r}: expected an int from 0 to {MAX_IPV4}",
            value=repr(value),
        )
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def _mask(prefix: int) -> int:
    return (MAX_IPV4 << (32 - prefix)) & MAX_IPV4


class Addresses(NamedTuple):
    """The addresses *first* to *last* (inclusive): those an answer shows, whose leases it
    compares with the index (who_has: one; free_ips: a subnet's)."""

    first: int
    last: int

    def holds(self, ip: int) -> bool:
        return self.first <= ip <= self.last


EVERY_ADDRESS: Final = Addresses(0, MAX_IPV4)


@dataclass(frozen=True, slots=True)
class Subnet:
    """An IPv4 network: ``network`` (an int with no host bits) and ``prefix`` (0-32).

    Host addresses run from ``network + 2`` to ``broadcast - 1``; ``network + 1`` is the
    gateway, as in the Go tool. For ``/31`` and ``/32`` that range is empty
    (``first_host > last_host``).
    The constructor is strict (host bits set raise InvalidValueError); use
    :func:`parse_subnet` to accept and normalise text.
    """

    network: int
    prefix: int

    def __post_init__(self) -> None:
        prefix_ok = (
            isinstance(self.prefix, int)
            and not isinstance(self.prefix, bool)
            and 0 <= self.prefix <= 32
        )
        network_ok = (
            isinstance(self.network, int)
            and not isinstance(self.network, bool)
            and 0 <= self.network <= MAX_IPV4
        )
        if not (prefix_ok and network_ok) or self.network & ~_mask(self.prefix):
            raise InvalidValueError(
                f"invalid subnet network={self.network!r} prefix={self.prefix!r}: expected "
                "an IPv4 int with no host bits set and a prefix from 0 to 32",
                value=f"{self.network!r}/{self.prefix!r}",
            )

    def __str__(self) -> str:
        return self.text

    @property
    def text(self) -> str:
        """Canonical CIDR text, e.g. ``192.168.5.0/24``."""
        return f"{format_ipv4(self.network)}/{self.prefix}"

    @property
    def broadcast(self) -> int:
        return self.network | (~_mask(self.prefix) & MAX_IPV4)

    @property
    def addresses(self) -> Addresses:
        """network..broadcast."""
        return Addresses(self.network, self.broadcast)

    @property
    def first_host(self) -> int:
        return self.network + 2

    @property
    def last_host(self) -> int:
        return self.broadcast - 1

    @property
    def size_hosts(self) -> int:
        """How many addresses can be handed out: 1 for ``/30``, 0 for ``/31`` and ``/32``."""
        return max(0, self.last_host - self.first_host + 1)

    def __contains__(self, ip: int) -> bool:
        """True when ``ip`` lies anywhere in network..broadcast (gateway included).

        Raises TypeError for a non-int, so ``"10.0.0.5" in subnet`` fails loudly instead
        of quietly answering False.
        """
        if isinstance(ip, bool) or not isinstance(ip, int):
            raise TypeError(f"Subnet membership takes an int address; got {ip!r}")
        return self.network <= ip <= self.broadcast

    def is_host(self, ip: int) -> bool:
        """True when ``ip`` may be handed to a member (first_host..last_host)."""
        return self.first_host <= ip <= self.last_host


def parse_subnet(text: str) -> Subnet:
    """Parse ``a.b.c.d/p`` (prefix 0-32, no leading zeros) into a Subnet.

    Host bits are accepted and cleared, as Go's ``net.ParseCIDR`` does for its network:
    ``192.168.5.7/24`` gives ``192.168.5.0/24``. Raises InvalidValueError otherwise.
    """
    if isinstance(text, str):
        address, sep, prefix_text = text.partition("/")
        prefix = _decimal(prefix_text, 32) if sep else None
        ip = _ipv4_or_none(address)
        if prefix is not None and ip is not None:
            return Subnet(ip & _mask(prefix), prefix)
    raise InvalidValueError(
        f"invalid subnet {text!r}: expected an IPv4 CIDR like 192.168.5.0/24 "
        "(a dotted-quad address, '/', and a prefix length from 0 to 32)",
        value=text if isinstance(text, str) else repr(text),
    )


def free_ranges(subnet: Subnet, taken: Iterable[int]) -> list[tuple[int, int]]:
    """The runs (first, last, inclusive) of ``subnet``'s hosts not in ``taken``, ascending."""
    first, last = subnet.first_host, subnet.last_host
    gaps: list[tuple[int, int]] = []
    cursor = first
    for ip in sorted({ip for ip in taken if first <= ip <= last}):
        if ip > cursor:  # everything from the cursor up to this taken address is free
            gaps.append((cursor, ip - 1))
        cursor = ip + 1
    if cursor <= last:
        gaps.append((cursor, last))
    return gaps


def addresses(ranges: Iterable[tuple[int, int]], limit: int | None = None) -> Iterator[int]:
    """The addresses of inclusive *ranges*, in order, at most *limit*: produced one at a
    time, so a /8's sixteen million are never held at once."""
    return islice(chain.from_iterable(range(a, b + 1) for a, b in ranges), limit)


def generate_mac(name: str) -> str:
    """Return the Go tool's deterministic MAC for a member name (``GenerateMAC``).

    First 6 bytes of SHA-256 of ``fleetbox:<name>``, with byte 0 made unicast (bit 0
    cleared) and locally administered (bit 1 set); lowercase ``aa:bb:cc:dd:ee:ff``.
    The name is not validated, as in Go; a lone surrogate raises InvalidNameError.
    """
    import hashlib  # here, not at the top: see disk/observe.py

    digest = bytearray(hashlib.sha256(MAC_PREFIX + name_bytes(name)).digest()[:6])
    digest[0] = (digest[0] & ~0x01) | 0x02
    return ":".join(f"{byte:02x}" for byte in digest)


def normalize_mac(text: str) -> str:
    """Return a MAC in the canonical lowercase form; MACs compare case-insensitively.

    Accepts exactly six two-hex-digit groups separated by ``:``; raises
    InvalidValueError for anything else (dashes, dots, missing zeros, whitespace).
    """
    if isinstance(text, str) and _MAC_RE.fullmatch(text):
        return text.lower()
    raise InvalidValueError(
        f"invalid MAC address {text!r}: expected six two-digit hex groups joined by ':', "
        "like 52:54:00:12:34:56",
        value=text if isinstance(text, str) else repr(text),
    )


def optional_subnet(text: str | None) -> Subnet | None:
    """parse_subnet for an optional argument; InvalidValueError for anything but str or None."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidValueError(f"subnet must be a CIDR string like 10.0.0.0/24, not {text!r}")
    return parse_subnet(text)


def required_subnet(text: str) -> Subnet:
    net = optional_subnet(text)
    if net is None:
        raise InvalidValueError("a subnet is required, as a CIDR string like 10.0.0.0/24")
    return net


def ip_or_mac(value: str) -> tuple[int | None, str | None]:
    """(address, None) or (None, normalized MAC) for a who_has() argument."""
    if not isinstance(value, str):
        raise InvalidValueError(f"expected an IPv4 address or a MAC, not {value!r}")
    if value.count(":") == 5:
        return None, normalize_mac(value)
    if value and all(ch in "0123456789." for ch in value):  # meant as an address
        return parse_ipv4(value), None
    raise InvalidValueError(
        f"{value!r} is not an IPv4 address or a MAC address (like 10.0.0.2 or c2:e2:65:d7:2f:93)",
        value=value,
    )


def ip_key(ip: str) -> int | None:
    """The address a config's ``ip`` claims, or None when it holds no valid IPv4 address."""
    return _ipv4_or_none(ip) if ip else None


def mac_key(mac: str) -> str | None:
    """The MAC a config's ``mac`` claims, compared case-insensitively; None when empty."""
    return mac.lower() if mac else None


def conflicts_among(configs: Iterable[tuple[str, VM]]) -> list[Conflict]:
    """Every IP, then every MAC, that more than one (member name, config) claims, by value.

    The conflict rule: IPs compared as addresses (ip_key), MACs case-insensitively
    (mac_key). The index's SQL form of it is tested against this one.
    """
    by_ip: dict[int, list[str]] = defaultdict(list)
    by_mac: dict[str, list[str]] = defaultdict(list)
    for name, vm in configs:
        ip, mac = ip_key(vm.ip), mac_key(vm.mac)
        if ip is not None:
            by_ip[ip].append(name)
        if mac is not None:
            by_mac[mac].append(name)
    found = [Conflict("ip", format_ipv4(v), tuple(n)) for v, n in sorted(by_ip.items())]
    found += [Conflict("mac", v, tuple(n)) for v, n in sorted(by_mac.items())]
    return [c for c in found if len(c.members) > 1]


def marked(entries: Iterable[Entry], conflicts: Iterable[Conflict]) -> list[Entry]:
    """*entries* with every ok member that a conflict names shown as ``conflict``."""
    clashing = {name for conflict in conflicts for name in conflict.members}
    return [
        replace(e, state=MemberState.CONFLICT)
        if e.state == MemberState.OK and e.name in clashing
        else e
        for e in entries
    ]
