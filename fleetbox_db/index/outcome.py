"""What apply() does with each observation it reads: the row it writes and the line of the
report it adds; and, for a dry run, the report a real run would give.

The reconcile decides which members to read (index/reconcile.py); this module only turns
one observation, and the row it replaces, into writes and report entries.
"""

from __future__ import annotations

import sqlite3

from fleetbox_db.disk.observe import Observation
from fleetbox_db.index import members
from fleetbox_db.index import preview as previewed
from fleetbox_db.index.answers import all_members
from fleetbox_db.index.members import StoredRow
from fleetbox_db.index.plan import Plan
from fleetbox_db.index.racy import is_racy, read_settled
from fleetbox_db.records import MemberState, ReconcileReport
from fleetbox_db.rules.layout import is_stray, member_label

__all__ = ["classify", "preview", "record"]


def record(
    conn: sqlite3.Connection, obs: Observation, old: StoredRow | None, granularity_ns: int
) -> None:
    """Write what *obs* read over its row *old* (None: a new row; apply() inserts most of
    those in bulk)."""
    if old is not None and old.holds(obs):
        if obs.signature == old.signature:
            # Same bytes under the same signature: only a racy row that is now
            # settled has anything to record.
            if is_racy(old, granularity_ns) and read_settled(obs, granularity_ns):
                members.set_verified(conn, obs.key, obs.verified_ns)
            return
        # Same bytes, new signature (chmod, touch, a copy over it): record the new
        # signature, or the scan would differ from the index on every list().
        members.put_member(conn, obs, keep_config=True)
        return
    members.put_member(conn, obs)
    if not obs.keeps_last_config:
        members.clear_config(conn, obs.key)


def classify(report: ReconcileReport, obs: Observation, old: StoredRow | None) -> None:
    if old is None:
        report.added.append(obs.key.name)
    elif not old.holds(obs):
        report.updated.append(obs.key.name)
    if obs.state == MemberState.UNREADABLE:
        report.unreadable.append(obs.key.name)
        if obs.reason is not None:
            report.reasons[obs.key.name] = obs.reason


def preview(
    conn: sqlite3.Connection, report: ReconcileReport, plan: Plan, kept: list[Observation]
) -> None:
    """Complete a dry run's *report* as a real run would leave the index: unreadable
    members, conflicts, their reasons and the strays, from the rows and *kept* (what the
    dry run read)."""
    rows = all_members(conn)
    report.unreadable, report.conflicts = previewed.outcome(rows, plan.removed, kept)
    # What this run read wins over what the rows remember.
    reasons = {e.name: e.reason for e in rows if e.reason is not None} | report.reasons
    report.reasons = {n: reasons[n] for n in report.unreadable if n in reasons}
    report.strays = [member_label(m.key) for m in plan.scan.members if is_stray(m.cluster, m.name)]
