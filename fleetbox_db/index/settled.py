"""The digest of a scan found equal to the index, so a new process can trust it unread.

A new Store's first answer compares its scan of disk with every row of the index: at
10,000 members, reading those rows was a fifth of the call. A reader that found them
equal (no racy row) records the scan's digest beside member_seq's value then
(fleetbox_0010). Any change to a member row moves that value, so a later scan whose digest
matches while the value has not moved shows exactly what the rows say, and the scan
itself can stand in for them.

Only scans whose every entry is exact take part: the index keeps no stat error text
(recorded.py compares those entries loosely), and a number too large for the digest's
fixed width gives no digest at all.

member_seq also says when what changed since a change number can be merged into rows read
at it (mergeable, REMOVED_SINCE): the recorded scan and the VM cache both do so.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterable, Sequence
from itertools import chain
from operator import itemgetter
from typing import Final

from fleetbox_db.disk.scan import MemberDir

try:  # the C module hashlib wraps; hashlib imports OpenSSL's too, 3 ms of every `ls`
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

__all__ = ["MERGED_ANYWAY", "REMOVED_SINCE", "digest", "mergeable", "record", "recorded"]

#: Bumped whenever what the digest covers changes, so an old digest never matches.
_FORMAT: Final = 1


def digest(members: Sequence[MemberDir], granularity_ns: int, schema: int) -> bytes | None:
    """A digest of *members* (their names, signatures and order) for the index at *schema*
    read with *granularity_ns*; None when some entry carries an error text or a number
    outside 64 bits."""
    header = struct.pack("<qqqq", _FORMAT, granularity_ns, schema, len(members))
    found = blake2b(header, digest_size=16)
    if not members:
        return found.digest()
    # Column by column through C (map, join, struct): zip(*members) made an iterator per
    # member and array() took the ints one by one, 55 of 62 ms at 100,000 members.
    if list(map(_ERROR, members)).count(None) != len(members):
        return None
    for column in (_CLUSTER, _NAME):
        # NUL cannot occur in a file name: it separates them unambiguously.
        found.update("\0".join(map(column, members)).encode("utf-8", "surrogatepass"))
        found.update(b"\1")
    signatures = list(map(_SIGNATURE, members))
    if None in signatures:  # configless members: where they are, then the others'
        where = [i for i, signature in enumerate(signatures) if signature is None]
        found.update(_int64s(where))
        found.update(b"\1")
        signatures = [s for s in signatures if s is not None]
    try:
        found.update(_int64s(chain.from_iterable(signatures), 4 * len(signatures)))
    except struct.error:  # a number outside 64 bits
        return None
    return found.digest()


_CLUSTER: Final = itemgetter(0)
_NAME: Final = itemgetter(1)
_SIGNATURE: Final = itemgetter(2)
_ERROR: Final = itemgetter(3)


def _int64s(values: Iterable[int], count: int | None = None) -> bytes:
    """*values* as signed 64-bit integers in native byte order, as array('q') lays them out
    (the digest's bytes since its first format); struct.error beyond 64 bits."""
    if count is None:
        values = list(values)
        count = len(values)
    return struct.pack(f"={count}q", *values)


def recorded(conn: sqlite3.Connection) -> tuple[int, int, int, int | None, bytes | None]:
    """(member_seq's value, kept_removals, reservations, the value a digest was recorded
    at, that digest)."""
    row = conn.execute(
        "SELECT value, kept_removals, reservations, settled_seq, settled_digest"
        " FROM member_seq WHERE id = 1"
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2]), row[3], row[4]


def record(conn: sqlite3.Connection, seq: int, found: bytes) -> bool:
    """Record *found* as the digest of the index at change number *seq*, inside the
    caller's write transaction; False when the index has moved past *seq* meanwhile."""
    cursor = conn.execute(
        "UPDATE member_seq SET settled_seq = ?, settled_digest = ? WHERE id = 1 AND value = ?",
        (seq, found, seq),
    )
    return cursor.rowcount == 1


#: The keys removed since a change number (member_removals keeps the newest kept_removals).
REMOVED_SINCE: Final = "SELECT cluster, name FROM member_removals WHERE seq > ?"
#: Changes merged however few rows there are (an eighth of a small index is a handful).
MERGED_ANYWAY: Final = 64


def mergeable(since: int, seq: int, kept: int, rows: int) -> bool:
    """Whether what changed from change number *since* to *seq* can be merged into *rows*
    rows loaded at *since*, rather than all of them read again: past kept_removals numbers
    some removals are gone; past an eighth of the rows one ordered read is cheaper."""
    return since <= seq and seq - since <= min(kept, max(MERGED_ANYWAY, rows // 8))
