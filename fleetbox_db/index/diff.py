"""Which members a scan shows differently from the recorded scan, in Go's List() order.

Both lists are in that order and, under load, differ in a handful of places (a Go tool
re-saving configs, a create beside 10,000 members). Walking them side by side, runs of
equal entries are skipped in C (``map(ne)`` under ``compress``, restarted at each difference
by setting two list iterators' positions), so only the differences cost Python; a dict of
every key (the general diff) costs as much as the scan's own tuples. The walk relies on
Python's str order being the lists' order, which holds for UTF-8 names only: a name that is
not, or many differences, take the general diff.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import compress, count
from operator import itemgetter, ne
from typing import Final

from fleetbox_db.disk.scan import MemberDir
from fleetbox_db.index.recorded import RecordedScan

__all__ = ["Touched", "differences"]

#: Past this many differences the walk stops and the general diff runs: by then most of
#: the table differs (a copied tree, a restore), and the dict is as cheap.
_WALKED: Final = 2048

#: (the scan's member, the recorded entry for its key or None when it has none)
Touched = tuple[MemberDir, MemberDir | None]
_key: Final = itemgetter(0, 1)


def differences(
    members: list[MemberDir], recorded: RecordedScan, full: bool = False
) -> tuple[list[Touched], list[tuple[str, str]]]:
    """(the scan's members that are new, changed or racy, each with its recorded entry;
    the recorded keys the scan does not show), both in the scan's order. *full*: every
    member is touched."""
    if not (full or recorded.raw):
        walked = _walk(members, recorded.entries)
        if walked is not None:
            touched, gone = walked
            return _with_racy(touched, gone, recorded), gone
    return _by_key(members, recorded, full)


def _by_key(
    members: list[MemberDir], recorded: RecordedScan, full: bool
) -> tuple[list[Touched], list[tuple[str, str]]]:
    remaining = dict(recorded.by_key)
    racy = recorded.racy
    touched: list[Touched] = []
    for member in members:
        key = (member[0], member[1])
        entry = remaining.pop(key, None)
        if entry is None or full or entry != member or key in racy:
            touched.append((member, entry))
    return touched, list(remaining)


def _walk(
    members: list[MemberDir], entries: list[MemberDir]
) -> tuple[list[Touched], list[tuple[str, str]]] | None:
    """The differences of two lists in str order, or None if they cannot be told so."""
    touched: list[Touched] = []
    gone: list[tuple[str, str]] = []
    i = j = 0
    while True:
        unequal = compress(count(), map(ne, _from(members, i), _from(entries, j)))
        skip = next(unequal, None)
        if skip is None:  # equal up to the end of the shorter list
            step = min(len(members) - i, len(entries) - j)
            i, j = i + step, j + step
            break
        i, j = i + skip, j + skip
        member, entry = members[i], entries[j]
        mine, theirs = _key(member), _key(entry)
        if not (_plain(mine) and _plain(theirs)):
            return None
        if mine == theirs:
            touched.append((member, entry))
            i, j = i + 1, j + 1
        elif mine < theirs:
            touched.append((member, None))
            i += 1
        else:
            gone.append(theirs)
            j += 1
        if len(touched) + len(gone) > _WALKED:
            return None
    new = members[i:]
    if not all(_plain(_key(m)) for m in new):
        return None
    touched += [(m, None) for m in new]
    gone += [_key(e) for e in entries[j:]]
    return touched, gone


def _from(items: list[MemberDir], start: int) -> Iterator[MemberDir]:
    """An iterator over *items* from *start*: set there, not skipped to as islice would (each
    difference restarts the walk, and skipping 10,000 entries 100 times was a list's cost)."""
    it = iter(items)
    it.__setstate__(start)  # type: ignore[attr-defined]
    return it


def _with_racy(
    touched: list[Touched], gone: list[tuple[str, str]], recorded: RecordedScan
) -> list[Touched]:
    """*touched* with the racy rows the scan shows unchanged, in key (= scan) order."""
    if not recorded.racy:
        return touched
    seen = {_key(member) for member, _ in touched}
    seen.update(gone)
    entries = recorded.entries
    extra: list[Touched] = []
    for key in recorded.racy:
        if key in seen:
            continue
        entry = entries[bisect_left(entries, key, key=_key)]  # unchanged: the scan's equal
        extra.append((entry, entry))
    return sorted(touched + extra, key=lambda pair: _key(pair[0])) if extra else touched


def _plain(key: tuple[str, str]) -> bool:
    """Both names are str that UTF-8 encodes (no surrogate escapes): str order is Go's."""
    cluster, name = key
    if not (isinstance(cluster, str) and isinstance(name, str)):
        return False
    joined = cluster + name
    if joined.isascii():
        return True
    try:
        joined.encode()
    except UnicodeEncodeError:
        return False
    return True
