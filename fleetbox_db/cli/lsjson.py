"""`ls --json` written directly: the text ``to_json([entry_record(e) for e in entries])``
gives, byte for byte, without the pure-Python encoder.

``json.dumps(..., indent=2)`` walks every value in Python (an indent turns off its C
encoder): at 10,000 members it was most of the command. Every record has one shape, so each
is written from a template, its strings through the C escaper that json.dumps itself uses.
A record with a value of another type than that shape expects is handed to to_json, so the
output never depends on which path wrote it (tests/test_lsjson.py compares the two).
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from json.encoder import encode_basestring_ascii as _quote
from typing import Final

from fleetbox_db.cli.text import entry_record, to_json
from fleetbox_db.records import VM, Entry, Fixture
from fleetbox_db.rules.config import created_at_text

__all__ = ["entries_json"]

_NO_CONFIG: Final = "".join(
    f',\n    "{key}": null'
    for key in ("mac", "cpus", "memory_mb", "disk_mb", "image", "created_at", "fixtures", "ip")
)


_KEYS: Final = ("name", "cluster", "state", "reason", "mac", "cpus", "memory_mb", "disk_mb",
                "image", "created_at", "fixtures", "ip")  # fmt: skip
_FIXTURE_KEYS: Final = ("host_path", "guest_path", "label")


def _same_shape() -> bool:
    """Whether entry_record still makes the records this module writes: when a change
    there adds or moves a key, every entry takes the generic path (slower, never wrong)."""
    try:
        full = entry_record(Entry("n", "c", "ok", VM("n", fixtures=[Fixture("h", "g", "l")])))
        empty = entry_record(Entry("n", "c", "configless", None))
    except Exception:  # a record that cannot even be built this way: not ours to write
        return False
    return (
        tuple(full) == _KEYS
        and tuple(empty) == _KEYS
        and [tuple(f) for f in full["fixtures"]] == [_FIXTURE_KEYS]
    )


_SHAPE: Final = _same_shape()


def entries_json(entries: Sequence[Entry]) -> str:
    """``to_json([entry_record(e) for e in entries])``, without a trailing newline."""
    if not entries:
        return "[]"
    return "[\n" + ",\n".join(map(_entry if _SHAPE else _generic, entries)) + "\n]"


def _entry(entry: Entry) -> str:
    name, cluster, state, vm = entry.name, entry.cluster, entry.state, entry.vm
    reason = entry.reason
    if not (isinstance(name, str) and isinstance(cluster, str) and isinstance(state, str)):
        return _generic(entry)
    if not (reason is None or isinstance(reason, str)):
        return _generic(entry)
    head = f'  {{\n    "name": {_quote(name)},\n    "cluster": {_quote(cluster)},\n'
    head += f'    "state": {_quote(state)},\n'
    head += f'    "reason": {"null" if reason is None else _quote(reason)}'
    if vm is None:
        return head + _NO_CONFIG + "\n  }"
    mac, cpus, memory_mb, disk_mb, image, ip, fixtures = (
        vm.mac, vm.cpus, vm.memory_mb, vm.disk_mb, vm.image, vm.ip, vm.fixtures,
    )  # fmt: skip
    if not (
        isinstance(mac, str)
        and isinstance(image, str)
        and isinstance(ip, str)
        and type(cpus) is int
        and type(memory_mb) is int
        and type(disk_mb) is int
        and type(fixtures) is list
        and all(map(_plain_fixture, fixtures))
    ):
        return _generic(entry)
    if fixtures:
        items = ",\n".join(
            f'      {{\n        "host_path": {_quote(f.host_path)},\n'
            f'        "guest_path": {_quote(f.guest_path)},\n'
            f'        "label": {_quote(f.label)}\n      }}'
            for f in fixtures
        )
        fixtures_text = f"[\n{items}\n    ]"
    else:
        fixtures_text = "[]"
    return (
        f'{head},\n    "mac": {_quote(mac)},\n    "cpus": {int.__repr__(cpus)},\n'
        f'    "memory_mb": {int.__repr__(memory_mb)},\n'
        f'    "disk_mb": {int.__repr__(disk_mb)},\n    "image": {_quote(image)},\n'
        f'    "created_at": {_quote(created_at_text(vm))},\n'
        f'    "fixtures": {fixtures_text},\n    "ip": {_quote(ip)}\n  }}'
    )


def _plain_fixture(fixture: Fixture) -> bool:
    return (
        isinstance(fixture, Fixture)
        and isinstance(fixture.host_path, str)
        and isinstance(fixture.guest_path, str)
        and isinstance(fixture.label, str)
    )


def _generic(entry: Entry) -> str:
    """The record as to_json writes it, indented as an element of the array."""
    return "\n".join("  " + line for line in to_json(entry_record(entry)).splitlines())
