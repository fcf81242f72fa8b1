"""Every 'ok' member's VM record saved in the index as marshal chunks (fleetbox_0011).

A new process's first vms() read every row and its fixtures and parsed each created_at:
at 10,000 members about as long as the scan. The same records are saved in a few chunks at
one member_seq value, which every change to a member row moves, so they are used only while
the rows are exactly as they were; and only for a settled index (settled.py), so a store
under constant change never rewrites them.

Each chunk is a checksum, then a marshal of (format, chunk count, record count, row ids,
values), the last two marshals of their own: a torn, edited or foreign chunk fails the
checksum or the format and the rows are read instead, while its records are decoded only
when one of them is first needed (lazyvm.py). Chunks bound the memory a 100,000-member store
needs to encode or decode them.
"""

from __future__ import annotations

import marshal
import sqlite3
import zlib
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Final, NamedTuple

__all__ = ["CHUNK", "Chunk", "Unusable", "decode", "encode", "save", "saved"]

#: Records per chunk.
CHUNK: Final = 4096
#: Bumped whenever a record's layout changes: older chunks are then not used.
_FORMAT: Final = 2
_MARSHAL_VERSION: Final = 4
_SUM: Final = 4  # checksum bytes: a CRC-32 of the rest, to catch a torn or damaged chunk

RowId = tuple[int, str | None]  # (row id, digest): what a record is valid for
Values = tuple[Any, ...]  # one record's values, as rows.py's columns hold them (vmcache.py)


def encode(rows: Iterable[RowId], values: Iterable[Values], count: int) -> Iterator[bytes]:
    """The chunks holding *count* records (their *rows* and *values*), in order, each made
    when asked for: at 100,000 members all of them at once were 20 MB more at the peak of a
    vms()."""
    chunks = max(1, -(-count // CHUNK))
    rows, values = iter(rows), iter(values)
    for _ in range(chunks):
        ids, made = list(islice(rows, CHUNK)), list(islice(values, CHUNK))
        parts = (_FORMAT, chunks, len(ids), _dumps(ids), _dumps(made))
        body = _dumps(parts)
        yield zlib.crc32(body).to_bytes(_SUM, "little") + body


class Chunk(NamedTuple):
    """One checked chunk; its row ids and values are decoded when asked for."""

    size: int  # records in it
    rows_blob: bytes
    values_blob: bytes

    def rows(self) -> list[RowId]:
        """Raises Unusable when they are not *size* (row id, digest) pairs."""
        rows = _loads(self.rows_blob, self.size)
        if not all(type(row) is tuple and len(row) == 2 for row in rows):
            raise Unusable("row ids")
        return rows

    def values(self) -> list[Values]:
        """Raises Unusable when they are not *size* tuples (each record's shape is checked
        where it is unpacked)."""
        values = _loads(self.values_blob, self.size)
        if not all(type(record) is tuple for record in values):
            raise Unusable("values")
        return values


def decode(chunk: bytes, chunks: int) -> Chunk | None:
    """One of *chunks* chunks, checked; None when it is not one this code wrote."""
    body = memoryview(chunk)[_SUM:]
    if zlib.crc32(body).to_bytes(_SUM, "little") != chunk[:_SUM]:
        return None
    try:
        found = marshal.loads(body)
    except (EOFError, ValueError, TypeError):
        return None
    if not (type(found) is tuple and len(found) == 5 and found[:2] == (_FORMAT, chunks)):
        return None
    _, _, count, rows, values = found
    if type(count) is not int or type(rows) is not bytes or type(values) is not bytes:
        return None
    return Chunk(count, rows, values)


def _dumps(value: Any) -> bytes:
    return marshal.dumps(value, _MARSHAL_VERSION)


def _loads(blob: bytes, count: int) -> list[Any]:
    try:
        found = marshal.loads(blob)
    except (EOFError, ValueError, TypeError):
        raise Unusable("not a marshal") from None
    if type(found) is not list or len(found) != count:
        raise Unusable("not a list of the chunk's records")
    return found


def saved(conn: sqlite3.Connection, seq: int) -> list[Chunk] | None:
    """The chunks saved at member_seq value *seq*; None when none are saved at *seq* or one
    fails its checks (the caller's read transaction open throughout)."""
    count = conn.execute("SELECT count(*), min(seq), max(seq) FROM vm_records").fetchone()
    if count[0] == 0 or count[1] != seq or count[2] != seq:
        return None
    chunks = int(count[0])
    found: list[Chunk] = []
    for number, blob in conn.execute("SELECT id, blob FROM vm_records ORDER BY id"):
        chunk = decode(blob, chunks) if number == len(found) and type(blob) is bytes else None
        if chunk is None:
            return None
        found.append(chunk)
    return found


class Unusable(Exception):
    """A saved chunk's records are not as this code writes them."""


def save(conn: sqlite3.Connection, seq: int, chunks: Iterable[bytes]) -> bool:
    """Replace the saved chunks with *chunks*, the records at member_seq value *seq*, inside
    the caller's write transaction; False (nothing written, *chunks* not made) when the
    index has moved past *seq* or is not settled there."""
    row = conn.execute("SELECT value, settled_seq FROM member_seq WHERE id = 1").fetchone()
    if row[0] != seq or row[1] != seq:
        return False
    conn.execute("DELETE FROM vm_records")
    conn.executemany(
        "INSERT INTO vm_records (id, seq, blob) VALUES (?, ?, ?)",
        ((number, seq, chunk) for number, chunk in enumerate(chunks)),
    )
    return True
