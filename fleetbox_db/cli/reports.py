"""Pure text and JSON for `reconcile` and `check`: counts first, then at most *limit* items
of each kind, so a store of 20,000 members never prints 20,000 lines or one 200 KB line.
JSON always carries everything."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from fleetbox_db.cli.text import display, one_line
from fleetbox_db.records import Problem, ReconcileReport
from fleetbox_db.rules.layout import cluster_name

__all__ = ["check_text", "problem_record", "report_record", "report_text"]

_CHANGES: Final = ("added", "updated", "removed", "released", "swept")
#: The counts line of reconcile: (label, report attribute).
_COUNTS: Final = (
    ("added", "added"),
    ("changed", "updated"),
    ("removed", "removed"),
    ("unreadable", "unreadable"),
    ("conflicts", "conflicts"),
    ("strays", "strays"),
)
#: The order check's summary counts problem kinds in.
_KINDS: Final = ("conflict", "unreadable", "stray", "index", "drift")


def report_record(report: ReconcileReport, dry_run: bool) -> dict[str, Any]:
    """A reconcile report as plain JSON data, every item included."""
    return {
        "dry_run": dry_run,
        **{key: list(getattr(report, key)) for key in (*_CHANGES, "unreadable")},
        "reasons": dict(report.reasons),
        "conflicts": [
            {"kind": c.kind, "value": c.value, "members": list(c.members)} for c in report.conflicts
        ],
        "strays": list(report.strays),
    }


def report_text(report: ReconcileReport, dry_run: bool, limit: int | None) -> str:
    """The reconcile report: a counts line, one line per kind of change naming at most
    *limit* members, then one line per thing a person must fix (at most *limit* each)."""
    lines = ["dry run: nothing written"] if dry_run else []
    lines.append(", ".join(f"{label} {len(getattr(report, key))}" for label, key in _COUNTS))
    for key in _CHANGES:
        names: list[str] = getattr(report, key)
        if names:
            shown = ", ".join(display(n) for n in names[:limit])
            lines.append(f"{key}: {shown}{_more(len(names), limit, ' ')}")
    unreadable = [
        f"unreadable: {display(n)}" + (f": {one_line(r)}" if (r := report.reasons.get(n)) else "")
        for n in report.unreadable
    ]
    conflicts = [f"conflict: {one_line(str(c))}" for c in report.conflicts]
    strays = [
        f"stray: {display(s)} belongs under clusters/{display(cluster_name(s.partition('/')[2]))}/;"
        f" move it there, or remove it with `fleetbox-db rm {display(s)}`"
        for s in report.strays
    ]
    for kind, items in (("unreadable", unreadable), ("conflicts", conflicts), ("strays", strays)):
        lines.extend(items[:limit])
        if limit is not None and len(items) > limit:
            lines.append(f"... and {len(items) - limit} more {kind} (--limit 0 shows all)")
    return "\n".join(lines)


def _more(total: int, limit: int | None, sep: str) -> str:
    if limit is None or total <= limit:
        return ""
    return f"{sep}... and {total - limit} more"


def problem_record(problem: Problem) -> dict[str, Any]:
    return {
        "kind": problem.kind,
        "members": list(problem.members),
        "value": problem.value,
        "message": problem.message,
        "reason": problem.reason,
        "needs_a_person": problem.needs_a_person,
    }


def check_text(problems: Sequence[Problem], limit: int | None) -> str:
    """check's output: "no problems", or a summary of counts by kind, then at most *limit*
    problems, one per line, and how many more there are."""
    if not problems:
        return "no problems"
    counts = Counter(p.kind for p in problems)
    summary = ", ".join(f"{kind} {counts[kind]}" for kind in _KINDS if counts[kind])
    lines = [f"problems: {len(problems)} ({summary})"]
    lines.extend(one_line(p.message) for p in problems[:limit])
    if limit is not None and len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more (--limit 0 shows all, --json too)")
    return "\n".join(lines)
