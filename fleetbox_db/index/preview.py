"""What the index would say after a reconcile, worked out without writing it.

``reconcile --dry-run`` reports unreadable members and conflicts as a real run would leave
them; this module computes both from the index's rows and fresh observations. Pure: the
caller reads the rows.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleetbox_db.disk.observe import Observation
from fleetbox_db.records import VM, Conflict, Entry, Key, MemberState
from fleetbox_db.rules.ipam import conflicts_among
from fleetbox_db.rules.layout import name_bytes

__all__ = ["outcome"]


def outcome(
    rows: Iterable[Entry],
    removed: Iterable[Key],
    observed: Iterable[Observation],
) -> tuple[list[str], list[Conflict]]:
    """Unreadable member names and conflicts once *observed* is written and *removed* dropped.

    *rows* are the index's members as recorded before the change.
    """
    after: dict[Key, tuple[str, VM | None]] = {
        Key(e.cluster, e.name): (e.state, e.vm) for e in rows
    }
    for key in removed:
        after.pop(key, None)
    for obs in observed:
        last = after.get(obs.key, ("", None))[1]
        kept = last if obs.keeps_last_config else None
        after[obs.key] = (obs.state, obs.vm if obs.vm is not None else kept)
    ordered = sorted(after.items(), key=lambda item: _byte_order(item[0]))
    unreadable = [key.name for key, (state, _) in ordered if state == MemberState.UNREADABLE]
    return unreadable, conflicts_among((key.name, vm) for key, (_, vm) in ordered if vm)


def _byte_order(key: Key) -> tuple[bytes, bytes]:
    """Go's List() order, which code-point order matches only for names that are UTF-8."""
    return name_bytes(key.cluster), name_bytes(key.name)
