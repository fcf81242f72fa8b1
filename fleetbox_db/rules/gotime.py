"""Go's ``time.Time`` JSON text (RFC 3339 with nanoseconds) read and written as Go does.

config.json's ``created_at`` is the one Go time we hold. Kept apart from rules.config so the
time rules, which are Go's parser's and not ours, can be read and tested without the config
records around them. Pure: no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

__all__ = ["GO_TIME_CANONICAL", "format_go_time", "parse_go_time"]

# Go's time.Parse fallback (taken when its fast RFC 3339 path fails) also accepts a one-digit
# hour, a comma before the fraction and offsets up to 24:60; Go reads such files, so we do too.
_GO_TIME: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{1,2}):([0-9]{2}):([0-9]{2})"
    r"(?:[.,]([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
# What Go writes; datetime.fromisoformat reads exactly these ten times faster than the above.
GO_TIME_CANONICAL: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_ZONES: dict[str, timezone] = {"Z": UTC}


def _zone(text: str) -> timezone:
    tz = _ZONES.get(text)
    if tz is None:
        hours, minutes = int(text[1:3]), int(text[4:6])
        if hours > 24 or minutes > 60:
            raise ValueError(f"offset {text} is out of range")
        total = hours * 60 + minutes
        if total >= 24 * 60:
            raise ValueError(f"offset {text} is beyond what Python's datetime can hold")
        tz = timezone(timedelta(minutes=-total if text[0] == "-" else total))
        _ZONES[text] = tz
    return tz


def parse_go_time(text: str) -> datetime:
    """Parse ``text`` as Go's ``time.Time`` JSON decoding does; ``ValueError`` if Go rejects it.

    Python keeps microseconds: digits past the sixth are dropped (the raw text keeps them).
    Year 0 and 24-hour offsets, which Go accepts, raise ``ValueError``: datetime cannot hold them.
    """
    if GO_TIME_CANONICAL.fullmatch(text) is not None:
        try:
            return datetime.fromisoformat(text)  # drops digits past the sixth, as we do below
        except ValueError:
            pass  # a day out of range, year 0: let the slow path name it
    match = _GO_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, _zone(zone)
        )
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid time: {exc}") from None


def format_go_time(dt: datetime) -> str:
    """Format ``dt`` as Go's RFC3339Nano; ``ValueError`` if naive or its offset has seconds."""
    offset = dt.utcoffset()
    if offset is None:
        raise ValueError(f"{dt!r} has no time zone; Go needs an offset")
    seconds = offset.days * 86400 + offset.seconds
    if offset.microseconds or seconds % 60:
        # Go would silently drop the seconds and name a different instant.
        raise ValueError(f"{dt!r} has an offset that is not whole minutes")
    text = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    )
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    if not seconds:
        return text + "Z"
    minutes = abs(seconds) // 60
    return f"{text}{'-' if seconds < 0 else '+'}{minutes // 60:02d}:{minutes % 60:02d}"
