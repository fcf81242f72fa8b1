"""How a JSON string spelled U+FFFD, so that one Go 1.26 wrote is written back the same way.

Go reads an invalid UTF-8 byte in a string as U+FFFD. Writing a string, Go 1.26's
``encoding/json`` puts each invalid byte as the six characters ``\\ufffd`` (lowercase) and a
genuine U+FFFD raw; Go 1.27 (json/v2 underneath) writes both raw. Python's JSON reader keeps
neither spelling, so a Go 1.26 file, read and saved unchanged, would change its bytes. A
string that had the escape is read as a ``Spelled`` str, which remembers which of its U+FFFD
were escaped; every other string, and any new or changed value, is written raw, as Go 1.27
writes it. Other spellings read as U+FFFD (``\\uFFFD``, a lone surrogate escape) are not
Go's for an invalid byte and are written raw, as a Go re-save writes them.

rules.gojson reads strings through ``escapes`` and writes them through ``respell``. Pure: no
I/O, and nothing of ours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

__all__ = ["ESCAPE", "REPLACEMENT", "Spelled", "escapes", "respell"]

REPLACEMENT: Final = "\ufffd"
ESCAPE: Final = "\\ufffd"
"""How Go 1.26 writes an invalid byte of a string; the only spelling remembered."""

# One piece of a JSON string literal's body that can give a U+FFFD, in the order the reader
# meets them: an escaped surrogate pair (one character, never U+FFFD: the reader joins them),
# any other \u escape, any other escape (so an escaped backslash never starts a \u), and a
# U+FFFD or a surrogate written raw (the latter read as U+FFFD, as Go reads it).
_PIECE: Final = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|\\u([0-9a-fA-F]{4})"
    r"|\\."
    r"|[\ufffd\ud800-\udfff]"
)
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class Spelled(str):
    """A str read from JSON where some U+FFFD were the escape ``\\ufffd``.

    ``escaped`` has one flag per U+FFFD of the text, in order: True where it was escaped.
    Equal to, and hashing as, the plain str, so it changes no comparison (VM == VM ignores
    it, as it ignores created_at's text); any operation on it gives a plain str, which is
    written raw. Pickles and copies with its flags.
    """

    escaped: tuple[bool, ...]

    def __new__(cls, text: str, escaped: Iterable[bool]) -> Spelled:
        flags = tuple(bool(flag) for flag in escaped)
        if len(flags) != text.count(REPLACEMENT) or _SURROGATE.search(text) is not None:
            # A surrogate would be written as one more U+FFFD, and the flags would be off by one.
            raise ValueError(f"{len(flags)} flags for {text!r}: need one per U+FFFD")
        self = super().__new__(cls, text)
        self.escaped = flags
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.escaped))


def escapes(body: str) -> tuple[bool, ...]:
    """For each U+FFFD a JSON string literal's *body* (no quotes) reads as: was it ``\\ufffd``?

    *body* must be valid (the reader has read it): every backslash starts an escape.
    """
    flags: list[bool] = []
    for piece in _PIECE.finditer(body):
        hex_digits = piece.group(1)
        if hex_digits is None:
            if piece.group().startswith("\\"):
                continue  # a surrogate pair or a short escape
            flags.append(False)
        elif hex_digits == "fffd":
            flags.append(True)
        elif hex_digits.lower() == "fffd" or 0xD800 <= int(hex_digits, 16) <= 0xDFFF:
            flags.append(False)
    return tuple(flags)


def respell(quoted: str, escaped: tuple[bool, ...]) -> str:
    """*quoted*, a JSON literal with every U+FFFD raw, with the *escaped* ones as ``\\ufffd``."""
    pieces = quoted.split(REPLACEMENT)
    out = [pieces[0]]
    for flag, piece in zip(escaped, pieces[1:], strict=True):
        out.append(ESCAPE if flag else REPLACEMENT)
        out.append(piece)
    return "".join(out)
