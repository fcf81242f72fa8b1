"""JSON nested deeper than Python's recursion limit, read as deep as Go reads it.

Internal. Python's C scanner recurses once per array or object and gives up near
``sys.getrecursionlimit()`` (about 1000 levels, fewer when the caller is deep), while Go's
``encoding/json`` reads any text nested up to ``maxNestingDepth`` = 10000 levels (its scanner,
``pushParseState`` in encoding/json/scanner.go; the outermost value counts as level 1, so
10000 nested arrays read and 10001 fail with "exceeded max depth"). A config.json Go reads
must read here too, or its member would count as unreadable and its IP and MAC be handed out
again. Raising the recursion limit instead would change global state and can overflow the C
stack in a thread with a small one.

So fleetbox_db.rules.gojson falls back to ``decode`` when a ``json.JSONDecoder`` raises
RecursionError: it keeps its own stack of open containers and leaves every scalar (strings
to C's ``scanstring``, numbers and literals to the decoder's C scanner, with its hooks), so
the result, and the error for invalid text, are the ones the decoder gives. gojson also
reads here text whose strings it must see as written (rules.spelling), through a string
reader of its own. (Comparing and copying such values is fleetbox_db.records' business: VM
and Fixture hold them.) Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from _json import scanstring  # json's string reader in C, the one its C scanner uses
from collections.abc import Callable
from typing import Any, Final

__all__ = ["MAX_DEPTH", "TOO_DEEP", "decode"]

MAX_DEPTH: Final = 10000
"""Go's encoding/json maxNestingDepth: arrays and objects open at once, the outermost counting."""

TOO_DEEP: Final = f"nested too deeply, past Go's limit of {MAX_DEPTH} levels"
"""The reason given for text or a value nested past MAX_DEPTH."""

_WS: Final = re.compile(r"[ \t\n\r]*")  # JSON's blanks, as json.decoder.WHITESPACE

#: Reads the string literal whose body starts at an index: ``scanstring(text, at, strict)``.
StringReader = Callable[[str, int, bool], tuple[str, int]]


class _Open:
    """One array or object being read: its items so far (objects: key, value, key, value...)."""

    __slots__ = ("close", "items")

    def __init__(self, close: str) -> None:
        self.items: list[Any] = []
        self.close = close


def decode(decoder: json.JSONDecoder, text: str, read_string: StringReader = scanstring) -> Any:
    """What ``decoder.decode(text)`` returns, read without recursion.

    Every string, keys included, is read by *read_string* (which may return a str subclass).
    Raises ``json.JSONDecodeError`` for text that is not JSON, and for text nested more than
    MAX_DEPTH levels deep (at the bracket that opens level MAX_DEPTH + 1, as Go does), and
    whatever the decoder's hooks raise.
    """
    value, end = _value(decoder, text, _skip(text, 0), read_string)
    end = _skip(text, end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _skip(text: str, at: int) -> int:
    match = _WS.match(text, at)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _key(
    decoder: json.JSONDecoder, text: str, at: int, read_string: StringReader
) -> tuple[str, int]:
    """An object key at ``at`` and the index after its colon and the blanks that follow."""
    if text[at : at + 1] != '"':
        raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, at)
    key, at = read_string(text, at + 1, decoder.strict)
    at = _skip(text, at)
    if text[at : at + 1] != ":":
        raise json.JSONDecodeError("Expecting ':' delimiter", text, at)
    return key, _skip(text, at + 1)


def _finish(decoder: json.JSONDecoder, node: _Open) -> Any:
    if node.close == "]":
        return node.items
    items = node.items
    pairs = list(zip(items[::2], items[1::2], strict=True))
    if decoder.object_pairs_hook is not None:
        return decoder.object_pairs_hook(pairs)
    obj = dict(pairs)
    return obj if decoder.object_hook is None else decoder.object_hook(obj)


def _value(
    decoder: json.JSONDecoder, text: str, at: int, read_string: StringReader
) -> tuple[Any, int]:
    """The value starting at ``at`` (no blanks before it) and the index just after it."""
    stack: list[_Open] = []
    while True:
        char = text[at : at + 1]
        if char == "[" or char == "{":
            if len(stack) == MAX_DEPTH:
                raise json.JSONDecodeError(TOO_DEEP, text, at)
            node = _Open("]" if char == "[" else "}")
            at = _skip(text, at + 1)
            if text[at : at + 1] != node.close:
                stack.append(node)
                if char == "{":
                    key, at = _key(decoder, text, at, read_string)
                    node.items.append(key)
                continue  # read the first item
            value, at = _finish(decoder, node), at + 1
        elif char == '"':
            value, at = read_string(text, at + 1, decoder.strict)
        else:  # a number or literal: the decoder reads it, hooks and errors included
            value, at = decoder.raw_decode(text, at)
        # Hand the value to the containers it completes, until one expects another item.
        while stack:
            node = stack[-1]
            node.items.append(value)
            at = _skip(text, at)
            char = text[at : at + 1]
            if char == node.close:
                stack.pop()
                value, at = _finish(decoder, node), at + 1
                continue
            if char != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, at)
            at = _skip(text, at + 1)
            if node.close == "}":
                key, at = _key(decoder, text, at, read_string)
                node.items.append(key)
            break
        else:
            return value, at
