"""What a reconcile of one scan will do (Plan), and the lease drift it includes.

Reconciler.plan() makes a Plan without the write lock; apply() carries it out under it, or
on a reader's in-memory copy (overlay.py). Pure data and one pure function: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetbox_db.disk.leases import Lease
from fleetbox_db.disk.observe import Observation
from fleetbox_db.disk.scan import MemberDir, Scan
from fleetbox_db.index.members import StoredRow
from fleetbox_db.index.reservations import Reservation
from fleetbox_db.records import Key
from fleetbox_db.rules.ipam import EVERY_ADDRESS, Addresses

__all__ = ["Plan", "lease_drift"]


@dataclass
class Plan:
    """What plan() found: directories to read and write, rows to drop, reservations to free.

    The reads happen in apply(), under the write lock and in batches, so what is written is
    what disk holds then and a rebuild of 100,000 members never holds them all in memory.
    """

    scan: Scan
    full: bool
    reads: list[MemberDir]
    old: dict[tuple[str, str], StoredRow]  # by (cluster, name): a Key or a plain tuple
    removed: list[Key]
    dead: list[Reservation]  # rows whose lease is gone or no longer locked
    unmirrored: list[Lease]  # live leases without a row (an index rebuilt meanwhile)
    # The index version the plan was made against; apply() re-plans if another process
    # wrote in between, so "no row yet" still holds when it inserts.
    data_version: int = -1
    # Racy rows plan() already re-read to see whether they changed: not read twice.
    observed: dict[Key, Observation] = field(default_factory=dict)
    # The addresses whose dead and unmirrored leases were looked for (Reconciler.plan).
    leases: Addresses | None = EVERY_ADDRESS
    # Configs caught mid-write were read again (see Reconciler.plan); else left as recorded.
    contents: bool = True

    @property
    def empty(self) -> bool:
        """True when applying would write nothing: the caller may skip the write lock."""
        return not (self.reads or self.removed or self.dead or self.unmirrored)

    @property
    def leases_only(self) -> bool:
        """Only reservations would change: no member row is read, written or dropped."""
        return not (self.reads or self.removed) and bool(self.dead or self.unmirrored)


def lease_drift(
    rows: list[Reservation], live: list[Lease], within: Addresses = EVERY_ADDRESS
) -> tuple[list[Reservation], list[Lease]]:
    """(rows without a live lease, live leases without a row), of addresses *within*
    (*live*: all of those): what to release, what to mirror. A lease and its row agree on
    address, name and subnet."""
    if within != EVERY_ADDRESS:
        rows = [r for r in rows if within.holds(r.ip_int)]
    held = {(lease.ip, lease.name, lease.subnet) for lease in live}
    recorded = {(r.ip_int, r.name, r.subnet) for r in rows}
    dead = [r for r in rows if (r.ip_int, r.name, r.subnet) not in held]
    return dead, [lease for lease in live if (lease.ip, lease.name, lease.subnet) not in recorded]
