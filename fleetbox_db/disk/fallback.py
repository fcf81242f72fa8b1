"""Answers computed from disk alone, for when the index cannot be used.

Slower than the index (every config is parsed) but always right: this is what the library
falls back to when the index is read-only, at a newer schema, or locked for too long.
DiskAnswers asks the same questions as index.answers.IndexAnswers, so the Store picks
one or the other in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fleetbox_db.disk.observe import Clock, Observation, observe
from fleetbox_db.disk.scan import Scan
from fleetbox_db.records import VM, Entry, Key, MemberState
from fleetbox_db.rules.ipam import Subnet, conflicts_among, free_ranges, ip_key, mac_key, marked
from fleetbox_db.rules.layout import member_label

__all__ = ["DiskAnswers"]


class DiskAnswers:
    """The Store's questions answered from one scan, each config read when asked."""

    def __init__(self, clusters_dir: Path | str, scan: Scan, clock: Clock) -> None:
        self.clusters_dir = clusters_dir
        self.scan = scan
        self.clock = clock

    def _observed(self) -> Iterator[Observation]:
        for member in self.scan.members:
            yield observe(self.clusters_dir, member, self.clock)

    def _parsed(self) -> Iterator[tuple[str, VM, MemberState]]:
        """(name, config, state) of every member whose config parses now, strays included."""
        for key, vm, state in self._parsed_keys():
            yield key.name, vm, state

    def _parsed_keys(self) -> Iterator[tuple[Key, VM, MemberState]]:
        for obs in self._observed():
            if obs.vm is not None:
                yield obs.key, obs.vm, obs.state

    def vms(self) -> list[VM]:
        return [vm for _, vm, state in self._parsed() if state == MemberState.OK]

    def member_names(self, cluster: str) -> list[str]:
        return [m.name for m in self.scan.members if m.cluster == cluster]

    def entries(self, cluster: str | None = None) -> list[Entry]:
        found = [
            Entry(o.key.name, o.key.cluster, o.state, o.vm, _reason(o)) for o in self._observed()
        ]
        claims = ((e.name, e.vm) for e in found if e.vm is not None)
        found = marked(found, conflicts_among(claims))
        return [e for e in found if cluster is None or e.cluster == cluster]

    def named(self, name: str) -> list[Entry]:
        return [e for e in self.entries() if e.name == name]

    def free_ranges(self, net: Subnet, limit: int | None) -> list[tuple[int, int]]:
        """The free runs of *net*'s hosts, inclusive, as rules.ipam.free_ranges gives them."""
        taken = (ip_key(vm.ip) for _, vm, _ in self._parsed())
        return free_ranges(net, (ip for ip in taken if ip is not None))

    def who_has(self, ip: int | None, mac: str | None) -> str | None:
        found = self.holders(ip, mac)
        return found[0].rpartition("/")[2] if found else None

    def holders(self, ip: int | None, mac: str | None) -> list[str]:
        """Every member whose config claims the address (reservations live in the index
        alone, so none is named here)."""
        return [
            member_label(key)
            for key, vm, _ in self._parsed_keys()
            if (ip is not None and ip_key(vm.ip) == ip)
            or (mac is not None and mac_key(vm.mac) == mac)
        ]


def _reason(obs: Observation) -> str | None:
    """Entry.reason: only an unreadable member's (as the index gives it; a stray's state
    says stray whatever its config holds)."""
    return obs.reason if obs.state == MemberState.UNREADABLE else None
