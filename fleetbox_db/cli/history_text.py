"""Pure formatting for `fleetbox-db log` and `fleetbox-db sql`: events and query rows as a
table, JSON, JSON lines or CSV. No I/O.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fleetbox_db.cli.text import display, table
from fleetbox_db.errors import InvalidValueError
from fleetbox_db.records import Event, QueryResult

__all__ = [
    "event_line_fields",
    "event_record",
    "events_table",
    "parse_since",
    "result_csv",
    "result_records",
    "result_table",
    "rows_jsonl",
]

EVENT_HEADERS: Final = ("TIME", "MEMBER", "EVENT", "WHO", "WHAT")
_AGE: Final = re.compile(r"(\d+)([smhdw])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Fields a created or removed event summarises (the rest are in --json).
_SUMMARY: Final = ("ip", "mac", "state")


def parse_since(value: str, now: datetime) -> datetime:
    """`--since`: an age (90s, 15m, 2h, 3d, 1w, or several: 1h30m) before *now*, or an ISO
    8601 date or time (UTC unless it names an offset). Raises InvalidValueError."""
    text = value.strip()
    parts = _AGE.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return now - timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValueError(
            f"--since {value!r} is neither an age (like 2h, 30m, 1d) nor an ISO 8601 date or "
            "time (like 2026-11-30 or 2026-11-30T08:00)",
            value=value,
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _at(event: Event) -> str:
    return event.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_record(event: Event) -> dict[str, Any]:
    """One event as `log --json` prints it."""
    return {
        "id": event.id,
        "at": _at(event),
        "cluster": event.cluster,
        "name": event.name,
        "kind": event.kind,
        "who": event.who,
        "fields": {key: list(pair) for key, pair in event.fields.items()},
        "ip": event.ip,
        "detail": event.detail,
    }


def event_line_fields(event: Event) -> tuple[str, ...]:
    """One event as a row of the `log` table."""
    member = "-" if event.name is None else display(event.name)
    at = event.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return (at, member, event.kind, display(event.who), display(_what(event)))


def _what(event: Event) -> str:
    if event.kind in ("created", "removed"):
        side = 1 if event.kind == "created" else 0
        shown = [
            f"{key} {_value(event.fields[key][side])}" for key in _SUMMARY if key in event.fields
        ]
        if event.kind == "created" and event.fields.get("state", (None, "ok"))[1] == "ok":
            shown = [s for s in shown if not s.startswith("state ")]
        return ", ".join(shown) or (event.detail or "")
    if event.fields:
        changes = ", ".join(
            f"{key} {_value(old)} -> {_value(new)}" for key, (old, new) in event.fields.items()
        )
        return changes if event.detail is None else f"{changes}; {event.detail}"
    return event.detail or ""


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def events_table(events: Sequence[Event]) -> str:
    """The `log` table, oldest first; a line saying so when there are none."""
    if not events:
        return "no events"
    return table([EVENT_HEADERS, *(event_line_fields(e) for e in events)])


# -- query results --------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    """A value JSON and CSV can hold: a BLOB (a name that is not UTF-8) as text, escaped."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


def result_records(result: QueryResult) -> list[dict[str, Any]]:
    """Rows as objects keyed by column name (a repeated name keeps its last value)."""
    return [{c: _cell(v) for c, v in zip(result.columns, row, strict=True)} for row in result.rows]


def rows_jsonl(records: Sequence[dict[str, Any]]) -> str:
    """One compact JSON object per line (ASCII only)."""
    return "\n".join(json.dumps(r, ensure_ascii=True, separators=(",", ":")) for r in records)


def result_csv(result: QueryResult, *, header: bool = True) -> str:
    """RFC 4180 CSV with a header row; NULL is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(result.columns)
    writer.writerows([["" if v is None else _cell(v) for v in row] for row in result.rows])
    return out.getvalue().removesuffix("\n")


def result_table(result: QueryResult) -> str:
    """Columns two spaces apart under their names; NULL shows as NULL."""
    cells = [
        tuple("NULL" if v is None else display(str(_cell(v))) for v in row) for row in result.rows
    ]
    return table([tuple(display(c) for c in result.columns), *cells])
