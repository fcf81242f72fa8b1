"""When a read of a config can be trusted to tell two writes apart: git's racy-index rule.

A rewrite inside one timestamp tick keeps the same stat signature, so a row read less than
one granularity after its file's last change (the later of mtime and ctime: mtime can be
set back) stays "racy" and is read again until a later read proves it settled. Pure
functions of a row, a read and the granularity; the Reconciler decides with them what a
plan may skip and what apply() writes.
"""

from __future__ import annotations

from fleetbox_db.disk.observe import Observation
from fleetbox_db.index.members import StoredRow

__all__ = ["is_racy", "needs_no_write", "read_settled", "write_later"]


def is_racy(row: StoredRow, granularity_ns: int) -> bool:
    """The row was last read within a tick of its file's change."""
    if row.changed_ns is None or row.verified_ns is None:
        return False
    return row.changed_ns + granularity_ns > row.verified_ns


def read_settled(obs: Observation, granularity_ns: int) -> bool:
    """The read happened more than one timestamp tick after the file last changed."""
    sig = obs.signature
    if sig is None:
        return False
    return max(sig.mtime_ns, sig.ctime_ns) + granularity_ns <= obs.verified_ns


def write_later(row: StoredRow, obs: Observation, granularity_ns: int) -> bool:
    """Same bytes under a new signature, read within one tick of the file's change: no
    answer changes, and recording the signature now would not spare the next read (the
    row would be racy). Written once the file has settled, by whoever plans then."""
    return row.holds(obs) and obs.signature is not None and not read_settled(obs, granularity_ns)


def needs_no_write(row: StoredRow, obs: Observation, granularity_ns: int) -> bool:
    """Writing *obs* would change nothing: same bytes, same signature, nothing settled."""
    if not row.holds(obs) or row.signature != obs.signature:
        return False
    return not (is_racy(row, granularity_ns) and read_settled(obs, granularity_ns))
