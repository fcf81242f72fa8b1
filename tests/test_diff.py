"""The side-by-side walk of a scan and the recorded scan finds what the general diff finds."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetbox_db.disk.scan import MemberDir, Signature
from fleetbox_db.index import diff
from fleetbox_db.index.recorded import RecordedScan
from fleetbox_db.records import Key

# Names from a few letters, one non-ASCII letter and a surrogate escape (a name that is not
# UTF-8, as os.fsdecode gives it): enough to collide, reorder and break str order.
NAMES = st.text(alphabet="ab-1é\udc80\udcff", min_size=1, max_size=3)
KEYS = st.sets(st.tuples(NAMES, NAMES), max_size=30)


def go_order(key: tuple[str, str]) -> tuple[bytes, bytes]:
    return os.fsencode(key[0]), os.fsencode(key[1])


def member(key: tuple[str, str], version: int) -> MemberDir:
    return MemberDir(key[0], key[1], Signature(1, 2, version, version), None)


def recorded(entries: list[MemberDir], racy: set[Key]) -> RecordedScan:
    raw = any(not diff._plain((e[0], e[1])) for e in entries)
    return RecordedScan(None, 0, entries, racy, [], 0, 0, 0, raw, False, 0)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(
    before=KEYS,
    added=KEYS,
    data=st.data(),
)
def test_the_walk_equals_the_general_diff(
    before: set[tuple[str, str]], added: set[tuple[str, str]], data: st.DataObject
) -> None:
    kept = data.draw(st.sets(st.sampled_from(sorted(before)))) if before else set()
    changed = data.draw(st.sets(st.sampled_from(sorted(kept)))) if kept else set()
    racy = data.draw(st.sets(st.sampled_from(sorted(before)))) if before else set()
    # The index orders rows as SQL does: str order, or byte order when a name is raw.
    raw = any(not diff._plain(k) for k in before)
    entries = [member(k, 0) for k in sorted(before, key=go_order if raw else None)]
    now = sorted(kept | added, key=go_order)  # the scan: Go's order, bytes
    members = [member(k, 1 if k in changed else 0) for k in now]
    found = recorded(entries, {Key(*k) for k in racy})
    walked = diff.differences(members, found)
    general = diff._by_key(members, found, False)
    assert walked == general
    touched, gone = walked
    assert {diff._key(m) for m, e in touched if e is None} == (kept | added) - before
    assert set(gone) == before - kept - added
