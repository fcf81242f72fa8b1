"""Insert many member rows without running the members insert triggers once per row.

SQLite runs a trigger's program for every inserted row, even when its WHEN is false: the
two AFTER INSERT triggers on members (member_seq_insert, history_member_insert) cost about
7 µs a row each, three quarters of a 10,000-member cold build's inserts (issue 15). So a
large insert drops them inside its write transaction, does what they would have done in one
statement each, and creates them again from their own SQL before the transaction ends:
other connections never see the schema without them, and a rollback restores them.

Whenever the members table has an insert trigger this module does not know (a later
revision added one), it declines and the caller inserts row by row.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["BULK_ROWS", "insert_triggers_dropped"]

#: From this many rows a drop and re-create (two schema changes, a few hundred µs) pays off.
BULK_ROWS: Final = 256

#: The insert triggers whose work this module does itself (migration fleetbox_0006 and 0007).
_KNOWN: Final = frozenset({"member_seq_insert", "history_member_insert"})
_INSERT_TRIGGER: Final = re.compile(r"\bINSERT\s+ON\b", re.IGNORECASE)


@contextmanager
def insert_triggers_dropped(
    conn: sqlite3.Connection, keys: list[tuple[object, object]]
) -> Iterator[int | None]:
    """Yield the first change number the caller stamps its rows with (then one each, in
    *keys*' order), with the insert triggers dropped; None when they cannot be (insert with
    the triggers, row by row). Afterwards: member_seq counts the rows and, when history is
    recording, *keys* are staged in history_touched, as the triggers would have done.
    The caller holds the write transaction."""
    triggers = dict(
        conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'members'"
        ).fetchall()
    )
    inserting = {name for name, sql in triggers.items() if _INSERT_TRIGGER.search(sql)}
    if inserting != _KNOWN:
        yield None
        return
    for name in sorted(inserting):
        conn.execute(f"DROP TRIGGER {name}")
    try:
        first = int(conn.execute("SELECT value FROM member_seq WHERE id = 1").fetchone()[0])
        # Counted before the insert: should it fail part-way, a number is skipped, never
        # handed out twice (recorded.py merges rows by number).
        conn.execute("UPDATE member_seq SET value = value + ? WHERE id = 1", (len(keys),))
        yield first + 1
        if conn.execute("SELECT recording FROM history_meta WHERE id = 1").fetchone()[0]:
            conn.executemany(
                "INSERT OR IGNORE INTO history_touched (cluster, name, old) VALUES (?, ?, NULL)",
                keys,
            )
    finally:  # the schema is whole again whatever happened: the caller may still commit
        for name in sorted(inserting):
            conn.execute(triggers[name])
