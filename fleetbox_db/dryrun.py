"""What the index would say after a reconcile, worked out without writing it.

``reconcile --dry-run`` and check() report unreadable members and conflicts as a real run
would leave them; this module computes both from rows and fresh observations. Pure: the
caller reads the rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from fleetbox_db.config import VM
from fleetbox_db.dbnames import Key
from fleetbox_db.ipam import format_ipv4
from fleetbox_db.paths import name_bytes
from fleetbox_db.queries import Conflict
from fleetbox_db.rows import ip_key, mac_key

#: (key, state, config read now or None, whether the row keeps its last good config)
Observed = tuple[Key, str, VM | None, bool]


def outcome(
    rows: Iterable[tuple[str, str, str, VM | None]],
    removed: Iterable[Key],
    observed: Iterable[Observed],
) -> tuple[list[str], list[Conflict]]:
    """Unreadable member names and conflicts once *observed* is written and *removed* dropped.

    *rows* are the index's (cluster, name, state, last good config) before the change.
    """
    after = {(c, n): (state, vm) for c, n, state, vm in rows}
    for key in removed:
        after.pop(key, None)
    for key, state, vm, keeps_last in observed:
        last = after.get(key, ("", None))[1]
        after[key] = (state, vm if vm is not None else (last if keeps_last else None))
    ordered = sorted(after.items(), key=lambda item: _byte_order(item[0]))
    unreadable = [key[1] for key, (state, _) in ordered if state == "unreadable"]
    return unreadable, conflicts_among((key[1], vm) for key, (_, vm) in ordered if vm)


def conflicts_among(configs: Iterable[tuple[str, VM]]) -> list[Conflict]:
    """Every IP, then every MAC, that more than one (member name, config) claims, by value.

    Grouped as the index groups them: IPs as addresses, MACs case-insensitively.
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


def _byte_order(key: Key) -> tuple[bytes, bytes]:
    """Go's List() order, which code-point order matches only for names that are UTF-8."""
    return name_bytes(key[0]), name_bytes(key[1])
