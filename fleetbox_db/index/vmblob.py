"""Every 'ok' member's VM record saved in the index as marshal chunks (fleetbox_0011).

A new process's first vms() read every row and its fixtures and parsed each created_at:
at 10,000 members about as long as the scan. Decoding the same records from a few chunks
takes about half that. The chunks are saved at one member_seq value, which every change to
a member row moves, so they are used only while the rows are exactly as they were; and only
for a settled index (settled.py), so a store under constant change never rewrites them.

Each chunk is a checksum, then a marshal of (format, chunk count, records): a torn, edited or
foreign chunk fails one of them and the rows are read instead. Chunks bound the memory a
100,000-member store needs to encode or decode them.
"""

from __future__ import annotations

import marshal
import sqlite3
import zlib
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Final

__all__ = ["CHUNK", "Unusable", "decode", "encode", "save", "saved"]

#: Records per chunk.
CHUNK: Final = 4096
#: Bumped whenever a record's layout changes: older chunks are then not used.
_FORMAT: Final = 1
_MARSHAL_VERSION: Final = 4
_SUM: Final = 4  # checksum bytes: a CRC-32 of the rest, to catch a torn or damaged chunk

Flat = tuple[Any, ...]  # one record, as rows.py's columns hold it (vmcache.flat_record)


def encode(records: Iterable[Flat], count: int) -> Iterator[bytes]:
    """The chunks holding *records* (*count* of them), in order, each made when asked for:
    at 100,000 members all of them at once were 20 MB more at the peak of a vms()."""
    chunks = max(1, -(-count // CHUNK))
    it = iter(records)
    for _ in range(chunks):
        body = marshal.dumps((_FORMAT, chunks, list(islice(it, CHUNK))), _MARSHAL_VERSION)
        yield zlib.crc32(body).to_bytes(_SUM, "little") + body


def decode(chunk: bytes, chunks: int) -> list[Flat] | None:
    """The records of one of *chunks* chunks; None when it is not one this code wrote."""
    body = memoryview(chunk)[_SUM:]
    if zlib.crc32(body).to_bytes(_SUM, "little") != chunk[:_SUM]:
        return None
    try:
        found = marshal.loads(body)
    except (EOFError, ValueError, TypeError):
        return None
    if not (type(found) is tuple and len(found) == 3 and found[:2] == (_FORMAT, chunks)):
        return None
    records = found[2]
    return records if type(records) is list else None


def saved(conn: sqlite3.Connection, seq: int) -> Iterable[list[Flat]] | None:
    """The saved records at member_seq value *seq*, a chunk at a time (the caller's read
    transaction open throughout); None when none are saved at *seq*. A chunk that fails
    its checks raises Unusable from the iteration."""
    count = conn.execute("SELECT count(*), min(seq), max(seq) FROM vm_records").fetchone()
    if count[0] == 0 or count[1] != seq or count[2] != seq:
        return None
    return _chunks(conn, int(count[0]))


class Unusable(Exception):
    """A saved chunk is not one this code wrote: read the rows instead."""


def _chunks(conn: sqlite3.Connection, chunks: int) -> Iterable[list[Flat]]:
    for number in range(chunks):
        row = conn.execute("SELECT blob FROM vm_records WHERE id = ?", (number,)).fetchone()
        records = None if row is None or type(row[0]) is not bytes else decode(row[0], chunks)
        if records is None:
            raise Unusable(number)
        yield records


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
