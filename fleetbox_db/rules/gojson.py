"""JSON values read and written as Go's ``encoding/json`` does, which Python's ``json`` does not.

rules.config builds config.json from these pieces; the index stores ``extra`` values with
encode_json_value and reads them back with decode_json_value. Kept apart because these are
Go's rules for any JSON value (``MarshalIndent`` layout,
HTML-safe escapes, U+FFFD for bad UTF-8 and lone surrogates, numbers kept as written,
case-insensitive keys), not anything about a VM. A string that spelled U+FFFD as Go 1.26's
``\\ufffd`` is read as a rules.spelling.Spelled str and written back the same way. Pure: no I/O.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from _json import scanstring  # json's string reader in C, the one its C scanner uses
from collections.abc import Iterator
from json.encoder import encode_basestring
from typing import Any, Final

from fleetbox_db.errors import InvalidValueError
from fleetbox_db.rules import deepjson
from fleetbox_db.rules.deepjson import MAX_DEPTH, TOO_DEEP
from fleetbox_db.rules.spelling import ESCAPE, Spelled, escapes, respell

__all__ = [
    "Bad",
    "EXACT",
    "FAST",
    "GO_REPLACE",
    "INT64_MAX",
    "INT64_MIN",
    "Invalid",
    "RawFloat",
    "RawInt",
    "canonical",
    "clean",
    "decode_json_value",
    "encode_json_value",
    "loads",
    "members_json",
    "quote",
    "to_python",
]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_JSON_INT: Final = re.compile(r"-?(?:0|[1-9][0-9]*)")
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_HTML_UNSAFE: Final = re.compile("[<>&\u2028\u2029]")
_HTML_ESCAPES: Final = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
GO_REPLACE: Final = "fleetbox_db.go_replace"
"""The ``bytes.decode`` error handler that reads invalid UTF-8 as Go does."""


class RawFloat(float):
    """A JSON number with a fraction or exponent from an unknown key, kept with its literal text.

    Python would write ``1.0e2`` back as ``100.0`` and ``1e400`` as ``inf``; keeping the text
    writes it back as read. An integer too long for ``int()`` (4300 digits) is kept this way too.
    """

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> RawFloat:
        if _JSON_NUMBER.fullmatch(text) is None:
            raise ValueError(f"{text!r} is not a JSON number")
        self = super().__new__(cls, text)
        self.text = text
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.text,))


class RawInt(int):
    """A JSON integer whose text ``str(int)`` would not give back (``-0``), kept verbatim."""

    text: str

    def __new__(cls, text: str) -> RawInt:
        if _JSON_INT.fullmatch(text) is None:
            raise ValueError(f"{text!r} is not a JSON integer")
        self = super().__new__(cls, text)
        self.text = text
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.text,))


class Invalid(Exception):
    """Why JSON text cannot be read; decode_config and decode_json_value wrap it in their errors."""


class Bad(Exception):
    """Why a caller's value cannot be written; the public functions wrap it in InvalidValueError."""


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    # Go replaces each invalid byte with U+FFFD; Python's "replace" folds a truncated sequence
    # into one, so `\xe2\x82` would read differently from Go.
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "\ufffd" * (exc.end - exc.start), exc.end


codecs.register_error(GO_REPLACE, _go_replace)


def _reject_constant(name: str) -> Any:
    raise Invalid(f"is not valid JSON ({name} is not a JSON value)")


def _parse_int(text: str) -> int | RawFloat:
    try:
        value = int(text)
    except ValueError:  # past sys.get_int_max_str_digits()
        return RawFloat(text)
    return RawInt(text) if text == "-0" else value


# Objects come back as tuples of pairs so duplicates and key order are visible and an empty object
# () differs from an empty array []. The fast decoder has no per-number hook: numbers in unknown
# keys send a file to the exact decoder, which keeps their text.
FAST: Final = json.JSONDecoder(object_pairs_hook=tuple, parse_constant=_reject_constant)
EXACT: Final = json.JSONDecoder(
    object_pairs_hook=tuple,
    parse_float=RawFloat,
    parse_int=_parse_int,
    parse_constant=_reject_constant,
)


def loads(decoder: json.JSONDecoder, text: str) -> Any:
    """``decoder.decode(text)``, also for text nested past Python's recursion limit (to Go's).

    A string that spells a U+FFFD as ``\\ufffd`` comes back as a Spelled str (cleaned).
    Raises ``json.JSONDecodeError`` for text that is not JSON or is nested more than Go's
    10000 levels, and whatever the decoder's hooks raise.
    """
    if ESCAPE in text:
        # Python's scanner keeps no spelling; only this reader sees each string's text. A
        # Go 1.26 file with an invalid byte is rare, so the slower reader costs little.
        return deepjson.decode(decoder, text, _read_string)
    try:
        return decoder.decode(text)
    except RecursionError:
        # The C scanner recurses per level; only text this deep pays for the slower parser.
        return deepjson.decode(decoder, text)


def _read_string(text: str, at: int, strict: bool) -> tuple[str, int]:
    """``scanstring``, giving a Spelled str for a literal that spells a U+FFFD as ``\\ufffd``."""
    value, end = scanstring(text, at, strict)
    if text.find(ESCAPE, at, end) != -1:
        flags = escapes(text[at : end - 1])
        if any(flags):
            return Spelled(clean(value), flags), end
    return value, end


def clean(text: str) -> str:
    """Replace lone surrogates (from ``\\ud800`` escapes or Python strs) with U+FFFD, as Go does.

    A Spelled str is clean already (and a new str would forget its spelling).
    """
    return text if text.isascii() or type(text) is Spelled else _SURROGATE.sub("\ufffd", text)


def quote(text: str) -> str:
    """``text`` as a JSON string literal, escaped as Go escapes it.

    U+FFFD is written raw, as Go 1.27 writes it, except where a Spelled str read ``\\ufffd``.
    """
    # encode_basestring is json.dumps(ensure_ascii=False)'s C escaper; it differs from Go only
    # in leaving <, >, &, U+2028 and U+2029 raw.
    quoted = encode_basestring(clean(text))
    if _HTML_UNSAFE.search(quoted) is not None:
        quoted = quoted.translate(_HTML_ESCAPES)
    if type(text) is Spelled:
        quoted = respell(quoted, text.escaped)
    return quoted


def _scalar_json(value: Any) -> str | None:
    """Go's JSON for a value that is not an array or object; None for a list or dict."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, RawInt | RawFloat):
        return value.text
    if isinstance(value, int):
        try:
            return int.__repr__(value)
        except ValueError:
            raise Bad(f"integer with {value.bit_length()} bits is too long to write") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Bad(f"{value!r} is not a JSON number")
        return float.__repr__(value)
    if isinstance(value, list | dict):
        return None
    raise Bad(f"{type(value).__name__} ({value!r}) is not a JSON value")


def _key_json(key: Any) -> str:
    if not isinstance(key, str):
        raise Bad(f"key {key!r} is not a str")
    return quote(key)


def _value_json(value: Any, indent: str, compact: bool = False) -> str:
    """Go-style indented JSON for one value whose first line starts after ``indent``.

    ``indent`` also says how deep the value sits (two spaces a level, as MarshalIndent writes):
    a value nested past Go's limit in all (deepjson.MAX_DEPTH) raises ``Bad``, as Go could not
    read it back. ``compact``: one line, no blanks. Iterative, so a value nested deeper than
    Python's recursion limit is written too.
    """
    text = _scalar_json(value)
    if text is not None:
        return text
    depth = len(indent) // 2  # arrays and objects open around value
    colon, step = (":", "") if compact else (": ", "  ")
    out: list[str] = []
    # The lists and dicts being written: their items not yet written, whether a dict, and what
    # starts their lines (a line break and their indent).
    stack: list[tuple[Iterator[Any], bool, str]] = []
    child: Any = value  # a list or dict to open, once the loop comes round
    brk, sep = ("" if compact else "\n" + indent), ""
    while True:
        if child is not None:
            if depth + len(stack) >= MAX_DEPTH:  # an empty [] or {} is a level too
                raise Bad(f"value {TOO_DEEP}")
            is_dict = isinstance(child, dict)
            if not child:
                out.append("{}" if is_dict else "[]")
            else:
                out.append("{" if is_dict else "[")
                stack.append((iter(child.items()) if is_dict else iter(child), is_dict, brk))
                sep = ""
            child = None
        if not stack:
            return "".join(out)
        items, is_dict, outer = stack[-1]
        inner = outer + step
        for entry in items:
            if is_dict:
                key, item = entry
                out.append(sep + inner + _key_json(key) + colon)
            else:
                item = entry
                out.append(sep + inner)
            sep = ","
            text = _scalar_json(item)
            if text is None:
                child, brk = item, inner
                break
            out.append(text)
        else:
            stack.pop()
            out.append(outer + ("}" if is_dict else "]"))
            sep = ","


def members_json(extra: Any, indent: str, known: frozenset[str] | None) -> list[str]:
    """One ``"key": value`` line per item; ``Bad`` if a key would read back as one of ``known``."""
    if not isinstance(extra, dict):
        raise Bad(f"extra must be a dict, not {type(extra).__name__}")
    lines = []
    for key, value in extra.items():
        if not isinstance(key, str):
            raise Bad(f"key {key!r} is not a str")
        if known is not None and canonical(key, known) is not None:
            # Go would read it back as the known field, so it would not round-trip.
            raise Bad(f"extra key {key!r} names a known field")
        lines.append(f"{indent}{quote(key)}: {_value_json(value, indent)}")
    return lines


def encode_json_value(value: Any, *, compact: bool = False) -> str:
    """Go-style indented JSON for one value, numbers read by decode_json_value written as read.

    ``compact`` writes it on one line without blanks, for storage rather than for people: the
    indented text of a value nested N levels deep grows as N squared (200 MB at Go's limit of
    10000 levels), the compact text as N.
    Raises ``InvalidValueError`` for a value that is not JSON (NaN, a tuple, a non-str key...) or
    that Go could not read back, nested more than 10000 levels deep.
    """
    try:
        return _value_json(value, "", compact)
    except Bad as exc:
        raise InvalidValueError(f"cannot encode {exc}") from None


def to_python(value: Any) -> Any:
    """Turn the pairs decoders' output into plain dicts and lists, surrogates replaced.

    Iterative: a value is as deep as Go reads (10000 levels), past Python's recursion limit.
    """
    kind = type(value)
    if kind is str:
        return clean(value)
    if kind is not tuple and kind is not list:
        return value
    top: dict[str, Any] | list[Any] = {} if kind is tuple else []
    child: dict[str, Any] | list[Any]
    # The containers being filled: the items of the source not yet converted, the container,
    # and whether it is a dict.
    stack: list[tuple[Iterator[Any], Any, bool]] = [(iter(value), top, kind is tuple)]
    while stack:
        items, into, is_dict = stack[-1]
        if is_dict:
            for key, item in items:
                kind = type(item)
                if kind is tuple or kind is list:
                    # Placed now, filled next: a later duplicate key still replaces it in place.
                    into[clean(key)] = child = {} if kind is tuple else []
                    stack.append((iter(item), child, kind is tuple))
                    break
                into[clean(key)] = clean(item) if kind is str else item
            else:
                stack.pop()
        else:
            append = into.append
            for item in items:
                kind = type(item)
                if kind is tuple or kind is list:
                    append(child := {} if kind is tuple else [])
                    stack.append((iter(item), child, kind is tuple))
                    break
                append(clean(item) if kind is str else item)
            else:
                stack.pop()
    return top


def decode_json_value(text: str) -> Any:
    """Inverse of encode_json_value: numbers that Python would rewrite come back as RawFloat/RawInt.

    Raises ``ValueError`` for text that is not JSON or that Go would not read, nested more than
    10000 levels deep.
    """
    try:
        return to_python(loads(EXACT, text))
    except Invalid as exc:
        raise ValueError(f"text {exc}") from None


def canonical(key: str, known: frozenset[str]) -> str | None:
    """The known key that ``key`` selects under Go's case-insensitive match, or None.

    ``known`` must be lowercase ASCII. Go folds with Unicode simple folding; the only non-ASCII
    runes that fold onto ASCII letters are U+017F (long s, folds to s) and U+212A (Kelvin sign,
    folds to k).
    """
    if key in known:
        return key
    if not key.isascii():
        key = key.replace("\u017f", "s").replace("\u212a", "k")
        if not key.isascii():
            return None
    key = key.lower()
    return key if key in known else None
