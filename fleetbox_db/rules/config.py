"""The config.json bytes of a VM, exactly as the Go tool reads and writes them.

Pure: no file I/O. The reference is Go's ``encoding/json`` (``MarshalIndent(vm, "", "  ")``) and
``time.Time``'s JSON form; a file written by Go, decoded and encoded unchanged, is byte-identical.
The records themselves are in fleetbox_db.records; Go's rules for any JSON value live in
gojson and for its time text in gotime; this module holds what is about a VM's file.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from fleetbox_db.errors import ConfigError, InvalidValueError
from fleetbox_db.records import FIXTURE_FIELDS, VM, VM_FIELDS, ZERO_TIME, Fixture, built_vm
from fleetbox_db.rules.gojson import EXACT as _EXACT
from fleetbox_db.rules.gojson import FAST as _FAST
from fleetbox_db.rules.gojson import GO_REPLACE as _GO_REPLACE
from fleetbox_db.rules.gojson import INT64_MAX as _INT64_MAX
from fleetbox_db.rules.gojson import INT64_MIN as _INT64_MIN
from fleetbox_db.rules.gojson import Bad as _Bad
from fleetbox_db.rules.gojson import Invalid as _Invalid
from fleetbox_db.rules.gojson import RawFloat, RawInt
from fleetbox_db.rules.gojson import canonical as _canonical
from fleetbox_db.rules.gojson import clean as _clean
from fleetbox_db.rules.gojson import loads as _loads
from fleetbox_db.rules.gojson import members_json as _members_json
from fleetbox_db.rules.gojson import quote as _quote
from fleetbox_db.rules.gojson import to_python as _to_python
from fleetbox_db.rules.gotime import GO_TIME_CANONICAL as _GO_TIME_CANONICAL
from fleetbox_db.rules.gotime import format_go_time, parse_go_time
from fleetbox_db.rules.spelling import ESCAPE as _ESCAPE

__all__ = [
    "MAX_CONFIG_BYTES",
    "created_at_text",
    "decode_config",
    "encode_config",
    "writable_config",
    "restore_created_at",
]

_TOP_KEYS: Final = frozenset(VM_FIELDS)
_STR_FIELDS: Final = frozenset(("name", "mac", "image", "ip"))
_FIXTURE_KEYS: Final = frozenset(FIXTURE_FIELDS)


class _Slow(Exception):
    """The fast path met something (unknown key, duplicate, bad type) the exact path must read."""


#: Configs are about 1 KB; a larger file is not one we or the Go tool wrote, and reading a
#: 4 GB sparse one would cost seconds and gigabytes on every listing. Nothing larger is
#: read (disk/files.py) or written.
MAX_CONFIG_BYTES: Final = 1 << 20


def restore_created_at(vm: VM, text: str) -> None:
    """Set ``vm.created_at`` from Go's text and remember the text; ``ValueError`` if invalid."""
    vm.created_at = parse_go_time(text)
    vm._created_at_raw = (text, vm.created_at)


def _created_text(vm: VM) -> str:
    dt = vm.created_at
    if not isinstance(dt, datetime):
        raise _Bad(f"created_at must be an aware datetime, not {type(dt).__name__}")
    raw = vm._created_at_raw
    # Compare wall clock and offset, never instants: mixed-zone comparison can overflow year 1/9999.
    if raw is not None and (
        raw[1] is dt
        or (
            raw[1].replace(tzinfo=None) == dt.replace(tzinfo=None)
            and raw[1].utcoffset() == dt.utcoffset()
        )
    ):
        return raw[0]
    try:
        return format_go_time(dt)
    except ValueError as exc:
        raise _Bad(f"created_at {exc}") from None


def created_at_text(vm: VM) -> str:
    """The ``created_at`` text encode_config writes: the text read if unchanged, else formatted.

    Raises ``InvalidValueError`` for a naive datetime or one whose offset is not whole minutes.
    """
    try:
        return _created_text(vm)
    except _Bad as exc:
        raise _invalid(vm, exc) from None


def _invalid(vm: VM, exc: _Bad) -> InvalidValueError:
    name = vm.name if isinstance(vm.name, str) else None
    return InvalidValueError(f"cannot write the config of VM {vm.name!r}: {exc}", name=name)


def _str_json(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{where} must be a str, not {type(value).__name__} ({value!r})")
    return _quote(value)


def _int_json(value: Any, where: str) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Bad(f"{where} must be an int, not {type(value).__name__} ({value!r})")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Bad(f"{where} is {value}, outside the 64-bit range Go reads")
    return int.__repr__(value)


def _fixture_json(fixture: Any, where: str) -> str:
    if not isinstance(fixture, Fixture):
        raise _Bad(f"{where} must be a Fixture, not {type(fixture).__name__}")
    lines = [
        '      "host_path": ' + _str_json(fixture.host_path, where + ".host_path"),
        '      "guest_path": ' + _str_json(fixture.guest_path, where + ".guest_path"),
        '      "label": ' + _str_json(fixture.label, where + ".label"),
        *_members_json(fixture.extra, "      ", _FIXTURE_KEYS),
    ]
    return "    {\n" + ",\n".join(lines) + "\n    }"


def _vm_json(vm: VM) -> str:
    lines = [
        '{\n  "name": ' + _str_json(vm.name, "name"),
        '  "mac": ' + _str_json(vm.mac, "mac"),
        '  "cpus": ' + _int_json(vm.cpus, "cpus"),
        '  "memory_mb": ' + _int_json(vm.memory_mb, "memory_mb"),
        '  "disk_mb": ' + _int_json(vm.disk_mb, "disk_mb"),
        '  "image": ' + _str_json(vm.image, "image"),
        '  "created_at": "' + _created_text(vm) + '"',
    ]
    if not isinstance(vm.fixtures, list):
        raise _Bad(f"fixtures must be a list, not {type(vm.fixtures).__name__}")
    if vm.fixtures:
        items = [_fixture_json(f, f"fixtures[{i}]") for i, f in enumerate(vm.fixtures)]
        lines.append('  "fixtures": [\n' + ",\n".join(items) + "\n  ]")
    ip = _str_json(vm.ip, "ip")
    if ip != '""':
        lines.append('  "ip": ' + ip)
    lines.extend(_members_json(vm.extra, "  ", _TOP_KEYS))
    return ",\n".join(lines) + "\n}"


def encode_config(vm: VM) -> bytes:
    """The bytes Go's ``MarshalIndent(vm, "", "  ")`` writes, then ``extra``; no trailing newline.

    Raises ``InvalidValueError`` naming the VM for a value Go could not hold or read back: a
    non-str string field, a bool or non-int or out-of-int64 integer, a naive ``created_at`` or one
    whose offset is not whole minutes, a fixture that is not a ``Fixture``, an ``extra`` key that
    names a known field (in any case), or an ``extra`` value that is not JSON (NaN, a tuple...).
    """
    try:
        return _vm_json(vm).encode("utf-8")
    except _Bad as exc:
        raise _invalid(vm, exc) from None


def writable_config(vm: VM) -> bytes:
    """encode_config(vm), refused (InvalidValueError) over MAX_CONFIG_BYTES: no listing
    would read such a file back, so a write must not make one."""
    data = encode_config(vm)
    if len(data) > MAX_CONFIG_BYTES:
        raise InvalidValueError(
            f"config of vm {vm.name!r} would be {len(data)} bytes, over the "
            f"{MAX_CONFIG_BYTES} byte limit for a config (configs are about 1 KB): keep "
            "fixtures and extra keys small",
            name=vm.name,
        )
    return data


def _short(value: Any) -> str:
    text = value.text if isinstance(value, RawInt | RawFloat) else str(value)
    return text if len(text) <= 40 else text[:20] + "..." + text[-10:]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({_short(value)})"
    if isinstance(value, str):  # also a Spelled one
        return "a string"
    kinds: dict[type, str] = {tuple: "an object", list: "an array"}
    return kinds.get(type(value), "null")


def _wrong(where: str, expected: str, value: Any) -> _Invalid:
    return _Invalid(f'has a wrong type for "{where}": expected {expected}, got {_kind(value)}')


def _read_int(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if _INT64_MIN <= value <= _INT64_MAX:
            return int(value)
        raise _Invalid(f'has "{where}" = {_short(value)}, outside the 64-bit integer range')
    raise _wrong(where, "an integer", value)


def _read_str(value: Any, where: str) -> str:
    if isinstance(value, str):  # a Spelled str (rules.spelling) comes this way
        return _clean(value)
    raise _wrong(where, "a string", value)


def _read_fixture(value: Any, where: str) -> Fixture:
    fixture = Fixture("", "", "")
    if value is None:  # Go: null leaves the zero element
        return fixture
    if type(value) is not tuple:
        raise _wrong(where, "an object", value)
    for key, item in value:
        name = _canonical(key, _FIXTURE_KEYS)
        if name is None:
            fixture.extra[_clean(key)] = _to_python(item)
        elif item is not None:
            setattr(fixture, name, _read_str(item, f"{where}.{name}"))
    return fixture


def _set_field(vm: VM, name: str, value: Any) -> None:
    if name in _STR_FIELDS:
        setattr(vm, name, _read_str(value, name))
    elif name == "created_at":
        if not isinstance(value, str):
            raise _wrong(name, "an RFC 3339 time string", value)
        try:
            restore_created_at(vm, value)
        except ValueError as exc:
            raise _Invalid(f"has an invalid created_at: {exc}") from None
    elif name == "fixtures":
        if type(value) is not list:
            raise _wrong(name, "an array", value)
        vm.fixtures = [_read_fixture(item, f"fixtures[{i}]") for i, item in enumerate(value)]
    else:
        setattr(vm, name, _read_int(value, name))


def _exact_vm(pairs: Any) -> VM:
    """Decode with Go's rules key by key: folded keys, duplicates, nulls and all."""
    if type(pairs) is not tuple:
        raise _Invalid(f"does not hold a JSON object (it holds {_kind(pairs)})")
    vm = VM("", "", 0, 0, 0, "", ZERO_TIME)
    for key, value in pairs:
        name = _canonical(key, _TOP_KEYS)
        if name is None:
            vm.extra[_clean(key)] = _to_python(value)
        elif value is not None:
            _set_field(vm, name, value)
        elif name == "fixtures":
            vm.fixtures = []
        # Go: null leaves any other field as an earlier duplicate set it.
    return vm


def _known_once(pairs: Any, known: frozenset[str]) -> dict[str, Any]:
    """A decoded JSON object as a dict, when each of its keys is in *known* and appears once
    (exactly as written: case-folded or duplicate keys need the exact path); else _Slow."""
    if type(pairs) is not tuple:
        raise _Slow
    fields = dict(pairs)
    if len(fields) != len(pairs) or not fields.keys() <= known:
        raise _Slow
    return fields


_new: Final = object.__new__


def _fast_fixtures(value: Any, plain: bool) -> list[Fixture]:
    if value is None:
        return []
    if type(value) is not list:
        raise _Slow
    fixtures = []
    for item in value:
        get = _known_once(item, _FIXTURE_KEYS).get
        host, guest, label = get("host_path", ""), get("guest_path", ""), get("label", "")
        if not type(host) is type(guest) is type(label) is str:
            raise _Slow
        if not plain:
            host, guest, label = _clean(host), _clean(guest), _clean(label)
        # What Fixture(host, guest, label) makes, without its dataclass __init__ (a third
        # of a decode): test_decode_fast.py compares the two objects' __dict__.
        fixture = _new(Fixture)
        fixture.__dict__ = {"host_path": host, "guest_path": guest, "label": label, "extra": {}}
        fixtures.append(fixture)
    return fixtures


def _fast_vm(pairs: Any, plain: bool) -> VM:
    """Decode the common shape (known keys once each, right types, no nulls) or raise _Slow.

    ``plain`` says the text has no ``\\u`` escape, so no string can hold a lone surrogate.
    Never given text with a ``\\ufffd`` escape: its spelling is the exact reader's to keep.
    """
    get = _known_once(pairs, _TOP_KEYS).get
    name, mac, image, ip = get("name", ""), get("mac", ""), get("image", ""), get("ip", "")
    cpus, memory_mb, disk_mb = get("cpus", 0), get("memory_mb", 0), get("disk_mb", 0)
    if not (
        type(name) is type(mac) is type(image) is type(ip) is str
        and type(cpus) is type(memory_mb) is type(disk_mb) is int
        and _INT64_MIN <= cpus <= _INT64_MAX
        and _INT64_MIN <= memory_mb <= _INT64_MAX
        and _INT64_MIN <= disk_mb <= _INT64_MAX
    ):
        raise _Slow
    if not plain:
        name, mac, image, ip = _clean(name), _clean(mac), _clean(image), _clean(ip)
    raw = get("created_at")
    if raw is None:
        created, remembered = ZERO_TIME, None
    elif type(raw) is str and _GO_TIME_CANONICAL.fullmatch(raw) is not None:
        created = datetime.fromisoformat(raw)  # ValueError (day out of range) -> exact path
        remembered = (raw, created)
    else:
        raise _Slow
    fixtures = _fast_fixtures(get("fixtures"), plain)
    vm = built_vm(name, mac, cpus, memory_mb, disk_mb, image, created, fixtures, ip, {})
    if remembered is not None:  # VM(...) leaves it to the class default (None) otherwise
        vm._created_at_raw = remembered
    return vm


def _decode(data: bytes) -> VM:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", _GO_REPLACE)
    plain = "\\u" not in text
    try:
        # A Go 1.26 file may spell U+FFFD as \ufffd: only the exact reader keeps the spelling.
        if plain or _ESCAPE not in text:
            try:
                return _fast_vm(_FAST.decode(text), plain)
            except json.JSONDecodeError:
                raise
            # ValueError: an integer too long for int(), a bad date. RecursionError: nested
            # deeper than the C decoder goes, which the exact path reads as deep as Go does.
            except (_Slow, ValueError, RecursionError):
                pass
        return _exact_vm(_loads(_EXACT, text))
    except json.JSONDecodeError as exc:
        where, reason = f"line {exc.lineno} column {exc.colno}", exc.msg
        if text.startswith("\ufeff"):
            reason = "a UTF-8 byte order mark, which Go rejects"
        raise _Invalid(f"is not valid JSON ({where}: {reason})") from None


def decode_config(data: bytes, path: Path | str | None = None) -> VM:
    """Parse config.json bytes as Go's ``json.Unmarshal`` into its VM struct would.

    Lenient like Go: missing keys and ``null`` give zero values (``""``, ``0``, no fixtures,
    ZERO_TIME); a ``null`` fixture is an empty Fixture; invalid UTF-8 reads as U+FFFD per byte
    and lone ``\\ud800`` escapes as U+FFFD; a string that spelled a U+FFFD as Go 1.26's
    ``\\ufffd`` is a rules.spelling.Spelled str, which encode_config writes back the same way.
    A key matching a known key only case-insensitively (Go's Unicode folding: U+017F matches
    s) fills that field and is written back under its canonical name, as Go's own save does.
    Duplicate keys: the last non-null one wins, as in Go (a repeated ``fixtures`` replaces
    the earlier list whole; Go merges them element-wise).

    Raises ``ConfigError`` naming ``path`` for anything else, and never another exception: not
    JSON (also NaN, a BOM, nested more than 10000 levels deep, Go's limit), not an object, a
    wrong type for a known key, an integer outside int64, or a ``created_at`` Go would reject
    (also ``""``). Text nested deeper than Python's recursion limit reads as Go reads it.
    """
    try:
        return _decode(data)
    except _Invalid as exc:
        # Made in another function: an error held in a local of this frame, which its
        # traceback holds, is a reference cycle keeping every caller's frame (a reader's
        # whole scan) alive until the collector runs; beside a Go-style writer that is
        # every torn read.
        raise _config_error(str(exc), path) from None


def _config_error(why: str, path: Path | str | None) -> ConfigError:
    where = "config.json" if path is None else f"config.json at {path}"
    member = (Path(path).parent.name or None) if path is not None else None
    error = ConfigError(f"{where} {why}; fix or remove the file", name=member, path=path)
    error.reason = _reason(why)
    return error


def _reason(text: str) -> str:
    """An _Invalid message as a reason on its own: 'has a wrong type for ...' -> 'wrong type
    for ...', 'is not valid JSON (...)' -> 'not valid JSON (...)'."""
    for prefix in ("has a ", "has ", "is "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text
