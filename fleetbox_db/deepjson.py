"""JSON nested deeper than Python's recursion limit: read it (as deep as Go), compare, copy.

Internal. Python's C scanner recurses once per array or object and gives up near
``sys.getrecursionlimit()`` (about 1000 levels, fewer when the caller is deep), while Go's
``encoding/json`` reads any text nested up to ``maxNestingDepth`` = 10000 levels (its scanner,
``pushParseState`` in encoding/json/scanner.go; the outermost value counts as level 1, so
10000 nested arrays read and 10001 fail with "exceeded max depth"). A config.json Go reads
must read here too, or its member would count as unreadable and its IP and MAC be handed out
again. Raising the recursion limit instead would change global state and can overflow the C
stack in a thread with a small one.

So fleetbox_db.gojson falls back to ``decode`` when a ``json.JSONDecoder`` raises
RecursionError: it keeps its own stack of open containers and leaves every scalar (strings,
numbers, literals, with the decoder's hooks) to the decoder's C scanner, so the result, and
the error for invalid text, are the ones the decoder gives. VM and Fixture compare and copy
their ``extra`` with ``equal`` and ``copy_record``, as ``==`` and ``copy.deepcopy`` recurse too.
Pure: no I/O.
"""

from __future__ import annotations

import copy
import json
import re
from _json import scanstring  # json's string reader in C, the one its C scanner uses
from collections.abc import Iterator
from typing import Any, Final, TypeVar

__all__ = ["MAX_DEPTH", "TOO_DEEP", "copy_record", "decode", "deep_copy", "equal"]

MAX_DEPTH: Final = 10000
"""Go's encoding/json maxNestingDepth: arrays and objects open at once, the outermost counting."""

TOO_DEEP: Final = f"nested too deeply, past Go's limit of {MAX_DEPTH} levels"
"""The reason given for text or a value nested past MAX_DEPTH."""

_WS: Final = re.compile(r"[ \t\n\r]*")  # JSON's blanks, as json.decoder.WHITESPACE
_Record = TypeVar("_Record")


class _Open:
    """One array or object being read: its items so far (objects: key, value, key, value...)."""

    __slots__ = ("close", "items")

    def __init__(self, close: str) -> None:
        self.items: list[Any] = []
        self.close = close


def decode(decoder: json.JSONDecoder, text: str) -> Any:
    """What ``decoder.decode(text)`` returns, read without recursion.

    Raises ``json.JSONDecodeError`` for text that is not JSON, and for text nested more than
    MAX_DEPTH levels deep (at the bracket that opens level MAX_DEPTH + 1, as Go does), and
    whatever the decoder's hooks raise.
    """
    value, end = _value(decoder, text, _skip(text, 0))
    end = _skip(text, end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _skip(text: str, at: int) -> int:
    match = _WS.match(text, at)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _key(decoder: json.JSONDecoder, text: str, at: int) -> tuple[str, int]:
    """An object key at ``at`` and the index after its colon and the blanks that follow."""
    if text[at : at + 1] != '"':
        raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, at)
    key, at = scanstring(text, at + 1, decoder.strict)
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


def _value(decoder: json.JSONDecoder, text: str, at: int) -> tuple[Any, int]:
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
                    key, at = _key(decoder, text, at)
                    node.items.append(key)
                continue  # read the first item
            value, at = _finish(decoder, node), at + 1
        else:  # a string, number or literal: the decoder reads it, hooks and errors included
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
                key, at = _key(decoder, text, at)
                node.items.append(key)
            break
        else:
            return value, at


def equal(a: Any, b: Any) -> bool:
    """``a == b`` for JSON values, also nested past the recursion limit (Python's == recurses)."""
    try:
        return bool(a == b)
    except RecursionError:
        pass
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if x is y:  # as Python's list and dict comparisons do, so [nan] == [nan] holds here too
            continue
        if type(x) is list and type(y) is list:
            if len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif type(x) is dict and type(y) is dict:
            if x.keys() != y.keys():
                return False
            pending.extend((item, y[key]) for key, item in x.items())
        elif x != y:
            return False
    return True


def deep_copy(value: Any, memo: dict[int, Any]) -> Any:
    """``copy.deepcopy(value, memo)`` for JSON values, also nested past the recursion limit.

    Lists and dicts are copied here, anything else by ``copy.deepcopy``; a list or dict found
    twice is copied once, as deepcopy does.
    """
    if type(value) is not list and type(value) is not dict:
        return copy.deepcopy(value, memo)
    if id(value) in memo:
        return memo[id(value)]
    top: Any = type(value)()
    memo[id(value)] = top
    # The copies being filled, each with the items of its original not yet copied.
    stack: list[tuple[Iterator[Any], Any]] = [(_items(value), top)]
    while stack:
        items, into = stack[-1]
        for key, item in items:
            if type(item) is not list and type(item) is not dict:
                _put(into, key, copy.deepcopy(item, memo))
            elif id(item) in memo:
                _put(into, key, memo[id(item)])
            else:
                memo[id(item)] = child = type(item)()
                _put(into, key, child)
                stack.append((_items(item), child))
                break  # fill the new copy first
        else:
            stack.pop()
    return top


def copy_record(record: _Record, memo: dict[int, Any]) -> _Record:
    """``copy.deepcopy`` of an object whose attributes (in ``__dict__``) may hold deep JSON values.

    Meant as the ``__deepcopy__`` of a dataclass: a shallow copy, then each attribute deep_copy'd.
    """
    clone = copy.copy(record)
    memo[id(record)] = clone
    vars(clone).update((key, deep_copy(value, memo)) for key, value in vars(record).items())
    return clone


def _items(value: list[Any] | dict[Any, Any]) -> Iterator[tuple[Any, Any]]:
    return iter(value.items()) if type(value) is dict else enumerate(value)


def _put(into: list[Any] | dict[Any, Any], key: Any, item: Any) -> None:
    if isinstance(into, dict):
        into[key] = item
    else:
        into.append(item)
