"""Member directory names as the index's columns hold them, and back. Pure: no I/O.

A name is TEXT when it is valid UTF-8 and a BLOB of its raw bytes otherwise: Go's mkdir (or
a user's) can make such names, the scan returns them with surrogate escapes, and sqlite3
cannot bind those as TEXT. As BLOBs they stay unique and hold their IP and MAC like any
other member's.
"""

from __future__ import annotations

from typing import Final

from fleetbox_db.records import Key
from fleetbox_db.rules.layout import name_bytes

__all__ = ["BYTE_ORDER", "Stored", "key_of", "name_of", "stored", "stored_key"]

_new: Final = tuple.__new__

#: A directory name as a column holds it: TEXT, or BLOB for a name that is not UTF-8.
Stored = str | bytes


def stored(name: str) -> Stored:
    """A directory name as the index keeps it: TEXT, or its raw bytes when not valid UTF-8."""
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name_bytes(name)
    return name


def stored_key(key: Key) -> tuple[Stored, Stored]:
    return stored(key[0]), stored(key[1])


def name_of(value: Stored) -> str:
    """Inverse of stored()."""
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


def key_of(cluster: Stored, name: Stored) -> Key:
    # tuple.__new__: Key's generated constructor costs ~3x, and whole tables pass here.
    return _new(Key, (name_of(cluster), name_of(name)))


#: ORDER BY terms for Go's List() order (bytes) whatever the column types: a BLOB would sort
#: after every TEXT value. For queries returning few rows; see members.go_order() for tables.
BYTE_ORDER: Final = "CAST(cluster AS BLOB), CAST(name AS BLOB)"
