"""Pure text in and out of the fleetbox-db command line: tables, `show` blocks, JSON
records, and the Go CLI's rule for reading --fixture.

No I/O and no Store: every function takes library records (parse_fixtures also the
caller's working directory and is_dir) and returns text or plain data, so the exact output
can be tested without a tree on disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import Any, Final

from fleetbox_db.errors import InvalidValueError
from fleetbox_db.records import (
    FIXTURE_FIELDS,
    VM,
    VM_FIELDS,
    Entry,
    Fixture,
    Key,
    MemberState,
)
from fleetbox_db.rules.config import created_at_text
from fleetbox_db.rules.layout import cluster_name, member_label

HEADERS: Final = ("NAME", "CLUSTER", "IP", "MAC", "CPUS", "MEMORY", "IMAGE", "AGE", "STATE")
CONFIG_KEYS: Final = VM_FIELDS[1:]  # the name is the entry's own
NONE: Final = "-"
#: What `set` may change, and how its text is read.
SETTABLE: Final = {
    "ip": str,
    "mac": str,
    "cpus": int,
    "memory_mb": int,
    "disk_mb": int,
    "image": str,
}


def display(text: str) -> str:
    """*text* safe for one terminal cell: control characters and undecodable bytes escaped.

    Names may hold a newline or bytes that are not UTF-8 (the Go tool creates what it is
    given); printed raw they would break the table or make stdout's encoder raise.
    """
    if text.isprintable():
        return text
    return repr(text)[1:-1]


def one_line(message: str) -> str:
    """*message* as one line of terminal text: line breaks joined with spaces, every other
    control character escaped (\\x1b, not ESC).

    Paths and names come from disk and may hold an escape sequence that, printed raw,
    would rewrite the operator's terminal.
    """
    joined = " ".join(message.splitlines())
    if joined.isprintable():
        return joined
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in joined)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def age(created: datetime, now: datetime) -> str:
    """How long ago *created* was, in the largest whole unit: 42s, 5m, 3h, 2d.

    Go's zero time (a config without created_at) has no meaningful age and gives "-";
    a time in the future (clock skew) gives 0s.
    """
    if created.year <= 1:
        return NONE
    try:
        seconds = max(0, int((now - created).total_seconds()))
    except OverflowError:
        return NONE
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def memory(mb: int) -> str:
    """Memory for the table: whole GiB as "4G", anything else in MiB as "1536M"."""
    if mb and mb % 1024 == 0:
        return f"{mb // 1024}G"
    return f"{mb}M"


def vm_record(vm: VM | None) -> dict[str, Any]:
    """The config keys of *vm* as JSON values (created_at as Go writes it); all None if no vm."""
    if vm is None:
        return dict.fromkeys(CONFIG_KEYS)
    record = {key: getattr(vm, key) for key in CONFIG_KEYS}
    record["created_at"] = created_at_text(vm)
    record["fixtures"] = [{key: getattr(f, key) for key in FIXTURE_FIELDS} for f in vm.fixtures]
    return record


def entry_record(entry: Entry) -> dict[str, Any]:
    """One member as `ls --json` and `show --json` print it: name, cluster, state, the
    reason an unreadable config cannot be used (else None), config."""
    head = {"name": entry.name, "cluster": entry.cluster, "state": entry.state}
    return head | {"reason": entry.reason} | vm_record(entry.vm)


def label(entry: Entry) -> str:
    """The member as `ls -q` prints it: its name, or cluster/name for a stray (the form
    show, set and rm take), escaped for one line."""
    return display(member_label(Key(entry.cluster, entry.name)))


def keep(entries: Iterable[Entry], clusters: Sequence[str], states: Sequence[str]) -> list[Entry]:
    """*entries* in any of *clusters* and any of *states* (an empty filter keeps all)."""
    return [
        e
        for e in entries
        if (not clusters or e.cluster in clusters) and (not states or e.state in states)
    ]


def parse_assignments(changes: Iterable[str]) -> dict[str, Any]:
    """`set`'s KEY=VALUE arguments as VM fields; ValueError says what is wrong (a usage
    error). The values themselves are checked by Store.save."""
    fields: dict[str, Any] = {}
    for change in changes:
        key, sep, value = change.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE, not {change!r}")
        kind = SETTABLE.get(key)
        if kind is None:
            raise ValueError(f"unknown key {key!r}: choose from {', '.join(SETTABLE)}")
        if kind is int:
            if not value.isascii() or not value.isdigit() or int(value) < 1:
                raise ValueError(f"{key} must be a whole number >= 1, not {value!r}")
            fields[key] = int(value)
        else:
            fields[key] = value
    return fields


def created_entry(vm: VM) -> Entry:
    """The Entry a member has right after create() wrote *vm*."""
    return Entry(vm.name, cluster_name(vm.name), MemberState.OK, vm)


def table_row(entry: Entry, now: datetime) -> tuple[str, ...]:
    vm = entry.vm
    head = (display(entry.name), display(entry.cluster))
    if vm is None:
        return (*head, *[NONE] * 6, entry.state)
    return (
        *head,
        display(vm.ip) or NONE,
        display(vm.mac) or NONE,
        str(vm.cpus),
        memory(vm.memory_mb),
        display(vm.image) or NONE,
        age(vm.created_at, now),
        entry.state,
    )


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def ls_table(entries: Iterable[Entry], now: datetime, headers: bool = True) -> str:
    """The `ls` table, header included unless not *headers*, in the order given."""
    rows = [table_row(entry, now) for entry in entries]
    if headers:
        rows.insert(0, HEADERS)
    return table(rows) if rows else ""


def show_text(entry: Entry) -> str:
    """One member as `show` prints it: one "key  value" line per field, fixtures last."""
    record = entry_record(entry)
    fixtures = record.pop("fixtures")
    if record["reason"] is None:  # only an unreadable member has one
        del record["reason"]
    lines = [f"{key:<12}{_value(value)}" for key, value in record.items()]
    if not fixtures:
        lines.append(f"{'fixtures':<12}{NONE}")
    for i, fixture in enumerate(fixtures or []):
        spec = f"{fixture['label']} {fixture['host_path']}:{fixture['guest_path']}"
        lines.append(f"{'fixtures' if i == 0 else '':<12}{display(spec)}")
    return "\n".join(lines)


def _value(value: object) -> str:
    if value is None or value == "":
        return NONE
    return display(str(value))


def json_array_lines(items: Iterator[str]) -> Iterator[str]:
    """to_json(list(items)), line by line, without holding the list."""
    first = next(items, None)
    if first is None:
        yield "[]"
        return
    previous = first
    yield "["
    for item in items:
        yield f"  {to_json(previous)},"
        previous = item
    yield f"  {to_json(previous)}"
    yield "]"


def chunks(lines: Iterator[str], size: int = 4096) -> Iterator[list[str]]:
    """*lines* in lists of *size*: one write per chunk instead of one per line."""
    while chunk := list(islice(lines, size)):
        yield chunk


def to_json_line(data: object) -> str:
    """JSON on one line (jsonl), ASCII only: newlines in names come out as \\n."""
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"))


def to_json(data: object) -> str:
    """JSON for stdout: 2-space indent, ASCII only, so any name survives any terminal."""
    return json.dumps(data, indent=2, ensure_ascii=True)


def parse_fixtures(specs: Iterable[str], cwd: str, is_dir: Callable[[str], bool]) -> list[Fixture]:
    """HOST:GUEST specs as the Go CLI reads them (its toStoreFixtures), checked in order.

    Split on the last colon; the guest path must be absolute and unique; the host path is
    made absolute against *cwd* and must satisfy *is_dir*. Labels are FBFIX<position>.
    Raises InvalidValueError, so nothing is written.
    """
    fixtures: list[Fixture] = []
    guests: set[str] = set()
    for i, spec in enumerate(specs):
        host, _, guest = spec.rpartition(":")
        problem = None
        if not host or not guest:
            problem = "expected HOST:GUEST, like ./data:/srv/data"
        elif not guest.startswith("/"):
            problem = f"guest path {guest!r} must be absolute"
        elif guest in guests:
            problem = f"duplicate guest path {guest!r}"
        else:
            host = os.path.normpath(os.path.join(cwd, host))
            if not is_dir(host):
                problem = f"host path {host!r} is not a directory"
        if problem is not None:
            raise InvalidValueError(f"invalid fixture {spec!r}: {problem}", value=spec)
        guests.add(guest)
        fixtures.append(Fixture(host, guest, f"FBFIX{i}"))
    return fixtures
