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
    MemberState,
    Problem,
    ReconcileReport,
)
from fleetbox_db.rules.config import created_at_text
from fleetbox_db.rules.layout import cluster_name

HEADERS: Final = ("NAME", "CLUSTER", "IP", "MAC", "CPUS", "MEMORY", "IMAGE", "AGE", "STATE")
CONFIG_KEYS: Final = VM_FIELDS[1:]  # the name is the entry's own
NONE: Final = "-"
_CHANGES: Final = ("added", "updated", "removed", "released", "swept")


def display(text: str) -> str:
    """*text* safe for one terminal cell: control characters and undecodable bytes escaped.

    Names may hold a newline or bytes that are not UTF-8 (the Go tool creates what it is
    given); printed raw they would break the table or make stdout's encoder raise.
    """
    if text.isprintable():
        return text
    return repr(text)[1:-1]


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
    """One member as `ls --json` and `show --json` print it: name, cluster, state, config."""
    return {"name": entry.name, "cluster": entry.cluster, "state": entry.state} | vm_record(
        entry.vm
    )


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


def ls_table(entries: Iterable[Entry], now: datetime) -> str:
    """The `ls` table, header included, in the order given."""
    return table([HEADERS, *(table_row(entry, now) for entry in entries)])


def show_text(entry: Entry) -> str:
    """One member as `show` prints it: one "key  value" line per field, fixtures last."""
    record = entry_record(entry)
    fixtures = record.pop("fixtures")
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


def report_record(report: ReconcileReport, dry_run: bool) -> dict[str, Any]:
    """A reconcile report as plain JSON data."""
    return {
        "dry_run": dry_run,
        **{key: list(getattr(report, key)) for key in (*_CHANGES, "unreadable")},
        "conflicts": [
            {"kind": c.kind, "value": c.value, "members": list(c.members)} for c in report.conflicts
        ],
    }


def report_text(report: ReconcileReport, dry_run: bool) -> str:
    """The reconcile report: one line per kind of change, then what still needs a human."""
    lines = ["dry run: nothing written"] if dry_run else []
    for key in _CHANGES:
        names: list[str] = getattr(report, key)
        if names:
            lines.append(f"{key}: {', '.join(display(n) for n in names)}")
    if not report.changed:
        lines.append("no changes")
    if report.unreadable:
        lines.append(f"unreadable: {', '.join(display(n) for n in report.unreadable)}")
    lines.extend(f"conflict: {display(str(c))}" for c in report.conflicts)
    return "\n".join(lines)


def problem_record(problem: Problem) -> dict[str, Any]:
    return {
        "kind": problem.kind,
        "members": list(problem.members),
        "value": problem.value,
        "message": problem.message,
    }


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
