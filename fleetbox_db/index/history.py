"""The change history: events made from what a write transaction changed, and read back.

Triggers (migrations/versions/fleetbox_0006_history.py) stage every member row a statement
changes in history_touched, with its state before, and write reservation events directly.
Before the transaction commits, record() turns the staged rows into events, naming who
made them: ``disk`` for what a reconcile found (the Go tool, an editor, a crash), ours for a
Store write. So an event lands if and only if its change does (one transaction), is written
once (only the process holding the write lock writes), and a change a lock-free reader saw
is recorded by the next writer's reconcile: the triggers fire in the reader's private
in-memory copy too (index/overlay.py), which is dropped after its answer.
Nothing here runs on the no-change path: it is called only under the write lock.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fleetbox_db.errors import InvalidValueError
from fleetbox_db.index.names import BYTE_ORDER, Stored, name_of, stored
from fleetbox_db.records import EVENT_KINDS, Event
from fleetbox_db.rules.ipam import format_ipv4, parse_ipv4
from fleetbox_db.rules.layout import cluster_name, validate_cluster, validate_name

__all__ = [
    "DISK",
    "KINDS",
    "after_reconcile",
    "history_filters",
    "ours",
    "read",
    "record",
    "set_limit",
    "started",
]

#: Who made a change the index found on disk: unknown, so the place it was seen.
DISK: Final = "disk"
#: The fields an event compares, in the order it lists them.
FIELDS: Final = (
    "state", "ip", "mac", "cpus", "memory_mb", "disk_mb", "image", "created_at", "fixtures",
    "extra",
)  # fmt: skip
_UNREADABLE: Final = "unreadable"
KINDS: Final = EVENT_KINDS

#: Each staged row: its key, its state before (the triggers' snapshot) and now (the same
#: snapshot of the current row; NULL when it is gone), in one query however many changed.
_STAGED: Final = (
    "SELECT t.cluster, t.name, t.old, CASE WHEN m.id IS NOT NULL THEN json_object("
    "'state', m.state, 'config', m.config_name IS NOT NULL, 'ip', m.ip,"
    " 'ip_int', m.ip_int, 'mac', m.mac, 'mac_key', m.mac_key, 'cpus', m.cpus,"
    " 'memory_mb', m.memory_mb, 'disk_mb', m.disk_mb, 'image', m.image,"
    " 'created_at', m.created_at, 'extra', m.extra, 'fixtures', (SELECT json_group_array("
    "json_array(host_path, guest_path, label, extra)) FROM (SELECT * FROM fixtures"
    " WHERE member_id = m.id ORDER BY position))) END"
    " FROM history_touched t LEFT JOIN members m ON m.cluster = t.cluster AND m.name = t.name"
    " ORDER BY t.rowid"
)


def ours() -> str:
    """Who made a change this process wrote (read at each call: a fork has its own pid)."""
    return f"fleetbox_db (pid {os.getpid()})"


def after_reconcile(conn: sqlite3.Connection, reason: str | None = None) -> bool:
    """Record what the reconcile just applied as ``disk``; on an index whose history has not
    started (a new one, now filled from disk), start it, saying why (*reason*, else the
    one the index was created with). True when it started here. Under the write lock."""
    record(conn, DISK)
    row = conn.execute(
        "UPDATE history_meta SET recording = 1 WHERE id = 1 AND recording = 0 RETURNING reason"
    ).fetchone()
    if row is None:
        return False
    conn.execute(
        "INSERT INTO history (at_ns, kind, actor, detail) VALUES (?, 'history-started', ?, ?)",
        (time.time_ns(), ours(), reason or row[0]),
    )
    return True


def started(conn: sqlite3.Connection) -> bool:
    """Whether the index records history yet (a new one does not until it is filled)."""
    row = conn.execute("SELECT recording FROM history_meta WHERE id = 1").fetchone()
    return row is not None and bool(row[0])


def set_limit(conn: sqlite3.Connection, limit: int) -> None:
    """Keep the newest *limit* events from now on (trimmed at once). Under the write lock."""
    conn.execute("UPDATE history_meta SET max_events = ? WHERE id = 1", (limit,))
    _trim(conn)


def drop_staged_elsewhere(conn: sqlite3.Connection) -> None:
    """Forget member rows another program's edit staged (an operator's sqlite3 session):
    our write transactions empty history_touched before they commit, and a staged row left
    there failed every later upsert of that member (an upsert's conflict action overrides
    the trigger's OR IGNORE), answers and reconcile included. The edit makes no event."""
    conn.execute("DELETE FROM history_touched")


def record(conn: sqlite3.Connection, actor: str) -> None:
    """Turn the rows the open write transaction changed into events made by *actor*, and
    keep the newest max_events. Costs two empty lookups when nothing changed."""
    now = time.time_ns()
    staged = conn.execute(_STAGED).fetchall()
    # Reservation events the triggers wrote: rewritten in order below, with who and when.
    pending = conn.execute(
        "DELETE FROM history WHERE actor IS NULL RETURNING name, kind, fields, ip"
    ).fetchall()
    if not staged and not pending:
        return
    if staged:
        conn.execute("DELETE FROM history_touched")
    members = _member_events(conn, staged, now, actor) if staged else []
    reserved = [
        (now, _cluster_of(name), name, kind, actor, fields, ip, None)
        for name, kind, fields, ip in pending
    ]
    # An address is reserved before a config takes it, and released after.
    first = [e for e in reserved if e[3] == "ip-reserved"]
    last = [e for e in reserved if e[3] != "ip-reserved"]
    conn.executemany(
        "INSERT INTO history (at_ns, cluster, name, kind, actor, fields, ip, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [*first, *members, *last],
    )
    _trim(conn)


def _trim(conn: sqlite3.Connection) -> None:
    conn.execute(
        "DELETE FROM history WHERE id <= (SELECT max(id) FROM history)"
        " - (SELECT max_events FROM history_meta WHERE id = 1)"
    )


def _cluster_of(name: Stored) -> Stored:
    return stored(cluster_name(name_of(name)))


# -- from rows to events --------------------------------------------------------------


def _member_events(
    conn: sqlite3.Connection, staged: Sequence[Any], now: int, actor: str
) -> list[tuple[Any, ...]]:
    """One event per staged member whose state or config changed, then the conflicts that
    appeared or cleared among the addresses they held before or hold now."""
    events: list[tuple[Any, ...]] = []
    before: dict[tuple[Any, Any], dict[str, Any] | None] = {}
    after: dict[tuple[Any, Any], dict[str, Any] | None] = {}
    for cluster, name, old_json, new_json in staged:
        key = (cluster, name)
        old = None if old_json is None else json.loads(old_json)
        new = None if new_json is None else json.loads(new_json)
        before[key], after[key] = old, new
        event = _event(old, new)
        if event is not None:
            kind, fields = event
            ip = (new or {}).get("ip") or (old or {}).get("ip") or None
            encoded = json.dumps(fields)
            events.append((now, cluster, name, kind, actor, encoded, ip, None))
    for kind, column, value, holders, member in _conflict_changes(conn, before, after):
        shown = format_ipv4(value) if column == "ip_int" else value
        names = ", ".join(map(_readable, holders)) or "no member"
        claimed = "claimed by" if kind == "conflict-appeared" else "now claimed only by"
        detail = f"{'ip' if column == 'ip_int' else 'mac'} {shown} {claimed} {names}"
        ip = shown if column == "ip_int" else None
        events.append((now, member[0], member[1], kind, actor, None, ip, detail))
    return events


def _readable(name: Stored) -> str:
    """A name for a detail text: one that is not UTF-8 with its bytes escaped (\\xe9)."""
    return name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else name


def _event(
    old: dict[str, Any] | None, new: dict[str, Any] | None
) -> tuple[str, dict[str, list[Any]]] | None:
    """(kind, {field: [old, new]}) for a member row that went from *old* to *new* (None:
    no row), or None when nothing a user can see changed (the same values re-spelled)."""
    if old is None and new is None:
        return None
    fields = {
        f: [a, b]
        for f in FIELDS
        if (a := _shown(old, f)) != (b := _shown(new, f)) and not (a is None and b is None)
    }
    if old is None:
        return "created", fields
    if new is None:
        return "removed", fields
    was, now = old["state"] == _UNREADABLE, new["state"] == _UNREADABLE
    if now and not was:
        return "became-unreadable", fields
    if was and not now:
        return "readable-again", fields
    return ("changed", fields) if fields else None


def _shown(row: dict[str, Any] | None, field: str) -> Any:
    if row is None:
        return None
    value = row.get(field)
    if field == "fixtures":
        # [[host, guest, label, extra]] -> "host:guest" items, as `create --fixture` takes.
        items = json.loads(value) if isinstance(value, str) else (value or [])
        return [f"{h}:{g}" + (f" ({label})" if label else "") for h, g, label, _ in items] or None
    if field in ("ip", "mac") and value == "":
        return None  # Go's zero value: no address
    return value


def _conflict_changes(
    conn: sqlite3.Connection,
    before: dict[tuple[Any, Any], dict[str, Any] | None],
    after: dict[tuple[Any, Any], dict[str, Any] | None],
) -> Iterable[tuple[str, str, Any, list[Any], tuple[Any, Any]]]:
    """(kind, column, value, holders, member) for each address whose conflict (two or more
    members claiming it: rules.ipam.conflicts_among) appeared or cleared; *member* is a
    touched member that holds or held it."""
    for column in ("ip_int", "mac_key"):
        first: dict[Any, tuple[Any, Any]] = {}  # each address, and a touched member of it
        held_before: dict[Any, int] = {}  # how many touched members held it before
        for key in before:
            old, new = before[key], after[key]
            if old is not None and old.get(column) is not None:
                first.setdefault(old[column], key)
                held_before[old[column]] = held_before.get(old[column], 0) + 1
            if new is not None and new.get(column) is not None:
                first.setdefault(new[column], key)
        if not first:
            continue
        now: dict[Any, list[tuple[Any, Any]]] = {value: [] for value in first}
        # One query for every address: json_each() binds the list as one value.
        for value, c, n in conn.execute(
            f"SELECT {column}, cluster, name FROM members WHERE {column} IN"
            f" (SELECT value FROM json_each(?)) ORDER BY {BYTE_ORDER}",
            (json.dumps(list(first)),),
        ):
            now[value].append((c, n))
        for value, member in first.items():
            holders = now[value]
            untouched = sum(1 for h in holders if h not in before)
            count_before, count_now = untouched + held_before.get(value, 0), len(holders)
            if count_before < 2 <= count_now:
                yield "conflict-appeared", column, value, [n for _, n in holders], member
            elif count_now < 2 <= count_before:
                yield "conflict-cleared", column, value, [n for _, n in holders], member


# -- reading ----------------------------------------------------------------------------


def history_filters(
    member: str | None,
    since: datetime | timedelta | None,
    kinds: Iterable[str] | None,
    limit: int | None,
    ip: str | None,
) -> dict[str, Any]:
    """Store.history()'s arguments checked, as read()'s keywords. Raises InvalidValueError,
    InvalidNameError."""
    cluster = name = None
    if member is not None:
        if "/" in member:
            cluster, _, name = member.partition("/")
            validate_cluster(cluster)
        name = validate_name(member if name is None else name)
    since_ns = None
    if isinstance(since, timedelta):
        since = datetime.now(UTC) - since
    if isinstance(since, datetime):
        if since.tzinfo is None:
            raise InvalidValueError(f"since must be an aware datetime, not {since!r}")
        since_ns = int(since.timestamp() * 1e9)
    elif since is not None:
        raise InvalidValueError(f"since must be a datetime or timedelta, not {since!r}")
    chosen = None if kinds is None else [str(k) for k in kinds]
    unknown = sorted(set(chosen or ()) - set(KINDS))
    if unknown:
        raise InvalidValueError(
            f"unknown event kind {unknown[0]!r}; choose from {', '.join(KINDS)}", value=unknown[0]
        )
    if limit is not None and (type(limit) is not int or limit < 0):
        raise InvalidValueError(f"limit must be a non-negative integer or None, not {limit!r}")
    address = None if ip is None else format_ipv4(parse_ipv4(ip))
    return {
        "cluster": cluster,
        "name": name,
        "since_ns": since_ns,
        "kinds": chosen,
        "ip": address,
        "limit": limit,
    }


def read(
    conn: sqlite3.Connection,
    *,
    cluster: str | None,
    name: str | None,
    since_ns: int | None,
    kinds: Sequence[str] | None,
    ip: str | None,
    limit: int | None,
) -> list[Event]:
    """The newest *limit* events matching every filter given, oldest first."""
    where: list[str] = []
    params: list[Any] = []
    if name is not None:
        where.append("name = ?")
        params.append(stored(name))
    if cluster is not None:
        where.append("cluster = ?")
        params.append(stored(cluster))
    if since_ns is not None:
        where.append("at_ns >= ?")
        params.append(since_ns)
    if kinds:
        where.append(f"kind IN ({', '.join('?' * len(kinds))})")
        params.extend(kinds)
    if ip is not None:
        # The member held it after the event, or let go of it in the event.
        where.append("(ip = ? OR json_extract(fields, '$.ip[0]') = ?)")
        params += [ip, ip]
    sql = "SELECT id, at_ns, cluster, name, kind, actor, fields, ip, detail FROM history"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    rows = conn.execute(sql, params).fetchall()
    return [_as_event(r) for r in reversed(rows)]


def _as_event(r: Sequence[Any]) -> Event:
    event_id, at_ns, cluster, name, kind, actor, fields, ip, detail = r
    changes = {f: (v[0], v[1]) for f, v in json.loads(fields).items()} if fields else {}
    if kind in ("ip-reserved", "reservation-released"):
        changes = {}  # their fields hold the subnet, shown in detail
        detail = detail or f"{ip} in {json.loads(fields)['subnet']}"
    return Event(
        id=event_id,
        at=datetime.fromtimestamp(at_ns / 1e9, UTC),
        cluster=None if cluster is None else name_of(cluster),
        name=None if name is None else name_of(name),
        kind=kind,
        who=actor or "",
        fields=changes,
        ip=ip,
        detail=detail,
    )
